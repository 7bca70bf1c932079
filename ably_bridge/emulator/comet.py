"""The comet (HTTP long-polling) realtime transport: ``/comet/...`` routes and their session.

Clients that cannot open a WebSocket (ably-js's ``comet`` / ``xhr_polling``
transports) carry the same ProtocolMessages over plain HTTP, always as JSON:

* ``GET /comet/connect?<the WebSocket's query>`` authenticates, creates or
  resumes the connection (RTN2, RTN15) and answers with a JSON array holding
  CONNECTED (or the ERROR that refused it, with that error's HTTP status);
* ``GET /comet/<connectionKey>/recv`` waits until the server has something for
  the client, then answers with every ProtocolMessage queued so far as a JSON
  array (a line ending in ``\\n``, which streaming readers split on); with
  nothing to say before the poll interval ends, 204;
* ``POST /comet/<connectionKey>/send`` takes a JSON array of ProtocolMessages,
  handled exactly as WebSocket frames are; replies go out through ``recv``;
* ``/comet/<connectionKey>/close`` is a CLOSE (CLOSED comes through ``recv``),
  ``/comet/<connectionKey>/disconnect`` drops the transport and keeps the
  connection resumable.

Every request after ``connect`` carries credentials besides the connection
key, as ably-js sends them: a key or token of the connection's app that is
valid now (40101 when missing or of another app; 40142 / 40141 for an expired
or revoked token).

:class:`CometSession` is a :class:`~ably_bridge.emulator.realtime.Session`
whose frames go into a queue instead of a socket, so the protocol, resume
and every fault (delay, stall, disconnect, drop, refusals) behave as on the
WebSocket. A transport nobody polls for ``EmulatorConfig.comet_idle_ms`` is
treated as lost, like a dead socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from aiohttp import web

from ably_bridge.emulator import actions as p
from ably_bridge.emulator import auth, codec
from ably_bridge.emulator.context import RUNTIME, Runtime
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.outbox import Outbox
from ably_bridge.emulator.realtime import Session
from ably_bridge.errors import AblyException
from ably_bridge.transports.wsframes import OPCODE_TEXT, FrameReader

log = logging.getLogger(__name__)


class _Pipe:
    """Where the session's Outbox writes: frames turned back into JSON texts, queued."""

    def __init__(self) -> None:
        self._reader = FrameReader()
        self.items: list[str] = []
        self.closed = False
        self.ready = asyncio.Event()

    def write(self, data: bytes) -> None:
        for opcode, payload in self._reader.feed(data):
            if opcode == OPCODE_TEXT:  # pings have no comet equivalent
                self.items.append(payload.decode("utf-8"))
        if self.items:
            self.ready.set()

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return sum(len(i) for i in self.items)

    def take(self) -> list[str]:
        items, self.items = self.items, []
        self.ready.clear()
        return items


class CometSession(Session):
    """A realtime session whose transport is a series of HTTP requests."""

    def __init__(self, runtime: Runtime, request: web.Request) -> None:
        super().__init__(runtime, request, cast(web.WebSocketResponse, None))
        self.fmt = "json"  # comet is JSON only
        self.heartbeats = True  # no pings over HTTP: HEARTBEAT messages instead
        self.pipe = _Pipe()
        self.out = Outbox(
            lambda: self.pipe,
            runtime.hub.flusher,
            self.state.clock,
            self.state.schedule,
            self._start_close,
            self.abort,
        )
        self.ending = False  # the last frames are queued; the session ends once they are read
        self.finished = False
        self.key: str | None = None
        self.poll: web.Request | None = None  # the recv waiting for frames
        self._idle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"CometSession(conn={self.conn!r})"

    # -- transport hooks of Session ----------------------------------------------
    def gone(self) -> bool:
        return self.pipe.closed or self.finished

    def _start_close(self) -> None:
        self.ending = True
        self.close_started.set()
        self.pipe.ready.set()

    def abort(self) -> None:
        """A network failure: the pending recv's socket is cut and the session ends."""
        if self.finished:
            return
        self.pipe.closed = True
        self.pipe.ready.set()
        poll = self.poll
        if poll is not None and poll.transport is not None:
            poll.transport.abort()
        asyncio.get_running_loop().create_task(self.finish())

    async def _end_transport(self) -> None:
        self.pipe.closed = True

    async def finish(self) -> None:
        """End the session once: forget its key, and clean up as a closed socket would."""
        if self.finished:
            return
        self.finished = True
        if self._idle is not None:
            self._idle.cancel()
        if self.key is not None and self.runtime.hub.comet.get(self.key) is self:
            del self.runtime.hub.comet[self.key]
        await self._cleanup()

    # -- idle watchdog -------------------------------------------------------------
    def touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        limit = self.state.config.comet_idle_ms / 1000.0
        self._idle = asyncio.get_running_loop().call_later(limit, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if self.poll is None and not self.finished:
            log.info("comet transport of %r idle: treated as lost", self.conn)
            self.abort()
        else:
            self.touch()

    # -- HTTP side -------------------------------------------------------------------
    def reply(self, items: list[str], status: int = 200) -> web.Response:
        if not items:
            return web.Response(status=204)
        body = "[" + ",".join(items) + "]\n"
        return web.Response(text=body, status=status, content_type=codec.JSON_TYPE)

    async def wait_items(self, request: web.Request, timeout: float) -> list[str]:
        """Frames for one recv: what is queued, else the first to arrive within ``timeout``.

        A newer recv replaces a waiting one, which then answers empty: a client
        polls once at a time, so the older request was abandoned and frames
        given to it would be lost.
        """
        self.poll = request
        self.pipe.ready.set()  # an older recv wakes up and gives way
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while self.poll is request and not self.pipe.closed:
                self.out.flush()
                if self.pipe.items or self.ending:
                    return self.pipe.take()
                self.pipe.ready.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.pipe.ready.wait(), remaining)
            return []
        finally:
            if self.poll is request:
                self.poll = None
            self.touch()


def _session(request: web.Request) -> CometSession:
    runtime = request.app[RUNTIME]
    session = runtime.hub.comet.get(request.match_info["key"])
    if not isinstance(session, CometSession) or session.finished or session.conn is None:
        raise error(80008, "unknown or expired comet connection", 400)
    # Each follow-up request carries the client's credentials as well as the
    # connection key (ably-js sends its authParams on every one, and the new
    # token's after an AUTH): they must be valid now and of the connection's
    # app, so a leaked connection key alone drives nothing.
    creds = auth.from_rest_request(
        runtime.state, request.headers.get("Authorization"), request.query, None, runtime.tls
    )
    if creds.app.app_id != session.conn.app_id:
        raise error(40101, "the credentials are not those of this comet connection", 401)
    return session


async def connect(request: web.Request) -> web.StreamResponse:
    """``/comet/connect``: CONNECTED (or the refusal) as the first array of frames."""
    runtime = request.app[RUNTIME]
    session = CometSession(runtime, request)
    ok = await session._connect()
    session.out.flush()
    items = session.pipe.take()
    if not ok or session.ending:
        status = 200
        first = codec.decode(items[0], "json") if items else {}
        if isinstance(first, dict) and isinstance(first.get("error"), dict):
            status = int(first["error"].get("statusCode") or 400)
        await session.finish()
        return session.reply(items, status)
    assert session.conn is not None
    session.key = session.conn.key
    runtime.hub.comet[session.key] = session
    session.heartbeat_timer = session.state.schedule(
        session.state.config.heartbeat_seconds(), session._heartbeat
    )
    session.touch()
    return session.reply(items)


async def recv(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    items = await session.wait_items(request, session.state.config.comet_poll_ms / 1000.0)
    if session.ending and not session.pipe.items:
        await session.finish()
    return session.reply(items)


async def send(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    session.touch()
    raw = await request.read()
    try:
        decoded = codec.decode(raw, "json") if raw else []
    except AblyException as exc:
        session.send_error_and_close(exc)
        return web.Response(status=204)
    for pm in decoded if isinstance(decoded, list) else [decoded]:
        if not session.handle(pm, "json"):
            break
    return web.Response(status=204)


async def close(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    session.touch()
    session.handle({"action": p.CLOSE}, "json")
    return web.Response(status=204)


async def disconnect(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    session.abort()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/comet/connect", connect)
    for action, handler in (
        ("recv", recv),
        ("send", send),
        ("close", close),
        ("disconnect", disconnect),
    ):
        app.router.add_route("*", f"/comet/{{key}}/{action}", handler)
