"""The outgoing side of a realtime session: WebSocket framing, batching, delay and stall.

The fan-out hot path lives here. A ProtocolMessage is encoded once per
(format, channel name) and framed once (:func:`ws_frame`: RFC 6455 header +
payload, unmasked as server frames are); the resulting ``bytes`` object is
shared by every subscriber, which only appends a reference to its pending
list. A :class:`Flusher` (one per server) then writes each dirty session's
pending frames with a single ``transport.write`` per loop iteration, so a
burst of events costs one system call per subscriber rather than one
coroutine and one ``send`` per frame.

Writing pre-built frames into the transport is the ``aiohttp.raw_frames``
shortcut (:mod:`ably_bridge.shortcuts`). When it is off, a :class:`PublicSender`
takes the same frames apart again and sends each through aiohttp's public
``WebSocketResponse.send_str`` / ``send_bytes`` / ``ping``, in order: the same
frames reach the client (the emulator never compresses).

Faults sit in front of that: ``delay`` holds every frame for a fixed time
(measured on the emulator's clock, so a ``FakeClock`` drives it), ``stall``
holds frames until released; both keep frame order. A subscriber whose kernel
and transport buffers pass :data:`MAX_BUFFERED` is disconnected, as Ably drops
consumers that cannot keep up.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ably_bridge.clock import Clock, Timer
from ably_bridge.transports.wsframes import (
    OPCODE_BINARY,
    OPCODE_PING,
    OPCODE_TEXT,
    FrameReader,
)

log = logging.getLogger(__name__)

MAX_BUFFERED = 64 * 1024 * 1024
WS_PING = b"\x89\x00"  # an empty ping control frame
_LEN2 = struct.Struct("!BBH")
_LEN8 = struct.Struct("!BBQ")


def ws_frame(payload: str | bytes) -> bytes:
    """One final, unmasked WebSocket data frame: text for ``str``, binary for ``bytes``."""
    if isinstance(payload, str):
        data, first = payload.encode("utf-8"), 0x81
    else:
        data, first = payload, 0x82
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 65536:
        return _LEN2.pack(first, 126, size) + data
    return _LEN8.pack(first, 127, size) + data


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


class PublicSender:
    """Frames built by :func:`ws_frame` sent through aiohttp's public API, in order."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws  # an aiohttp WebSocketResponse
        self._reader = FrameReader()
        self._pending: deque[bytes] = deque()
        self.buffered = 0  # bytes not yet handed to aiohttp
        self._task: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self.buffered += len(data)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def drained(self) -> None:
        """Wait until every frame written so far was handed to aiohttp."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _pump(self) -> None:
        ws = self._ws
        try:
            while self._pending:
                data = self._pending.popleft()
                self.buffered -= len(data)
                for opcode, payload in self._reader.feed(data):
                    if opcode == OPCODE_TEXT:
                        await ws.send_str(payload.decode("utf-8"))
                    elif opcode == OPCODE_BINARY:
                        await ws.send_bytes(payload)
                    elif opcode == OPCODE_PING:
                        await ws.ping(payload)
        except (ConnectionError, RuntimeError) as exc:  # the socket is gone: drop the rest
            log.debug("public send ended: %r", exc)
            self._pending.clear()
            self.buffered = 0


class Flusher:
    """Writes the pending frames of every session that has some, once per loop iteration."""

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []
        self._scheduled = False

    def mark(self, out: Outbox) -> None:
        self._dirty.append(out)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for out in dirty:
            out.flush()


class Outbox:
    """Frames on their way to one WebSocket, in order: delay stage, stall stage, batch.

    ``on_close`` is called (instead of writing) when the :data:`CLOSE` marker
    reaches the end of the pipeline; ``on_overflow`` when the client is too slow.
    """

    def __init__(
        self,
        transport: Callable[[], Transport | None],
        flusher: Flusher,
        clock: Clock,
        schedule: Callable[[float, Callable[[], None]], Timer],
        on_close: Callable[[], None],
        on_overflow: Callable[[], None],
        public: PublicSender | None = None,
    ) -> None:
        self._transport = transport
        self.public = public  # the shortcut's public path, when it is off
        self._flusher = flusher
        self._clock = clock
        self._schedule = schedule
        self._on_close = on_close
        self._on_overflow = on_overflow
        self._pending: list[bytes] = []
        self._closed = False
        # fault stages
        self.delay_s = 0.0
        self._delayed: deque[tuple[float, bytes | None]] = deque()
        self._delay_timer: Timer | None = None
        self.stalled = False
        self._held: deque[bytes | None] = deque()

    # -- entry ----------------------------------------------------------------
    def send(self, frame: bytes | None) -> None:
        """Queue a framed message; ``None`` closes the socket after what precedes it."""
        if self._closed:
            return
        if self.delay_s > 0 or self._delayed:
            self._delay(frame)
        elif self.stalled or self._held:
            self._held.append(frame)
        else:
            self._emit(frame)

    # -- delay stage (faults.delay_frames) ----------------------------------------
    def _delay(self, frame: bytes | None) -> None:
        now = self._clock.monotonic()
        due = now + self.delay_s
        if self._delayed:
            due = max(due, self._delayed[-1][0])  # never overtake an earlier frame
        self._delayed.append((due, frame))
        if self._delay_timer is None:
            self._delay_timer = self._schedule(max(0.0, due - now), self._release_delayed)

    def _release_delayed(self) -> None:
        self._delay_timer = None
        now = self._clock.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            frame = self._delayed.popleft()[1]
            if self.stalled or self._held:
                self._held.append(frame)
            else:
                self._emit(frame)
        if self._delayed:
            wait = max(0.0, self._delayed[0][0] - now)
            self._delay_timer = self._schedule(wait, self._release_delayed)

    # -- stall stage (faults.stall) -----------------------------------------------
    @property
    def held(self) -> int:
        """Frames a stall holds back (not written yet)."""
        return len(self._held)

    def stall(self, stalled: bool) -> None:
        self.stalled = stalled
        while not self.stalled and self._held:
            self._emit(self._held.popleft())

    # -- batch and write ------------------------------------------------------------
    def _emit(self, frame: bytes | None) -> None:
        if frame is None:
            self.flush()
            self._closed = True
            self._on_close()
            return
        if not self._pending:
            self._flusher.mark(self)
        self._pending.append(frame)

    def flush(self) -> None:
        if not self._pending:
            return
        frames, self._pending = self._pending, []
        transport = self._transport()
        if transport is None or transport.is_closing():
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        public = self.public
        if public is None:
            transport.write(data)
        else:
            public.write(data)
        queued = 0 if public is None else public.buffered
        if transport.get_write_buffer_size() + queued > MAX_BUFFERED:
            log.warning("subscriber too slow: %d bytes buffered; disconnecting", MAX_BUFFERED)
            self._on_overflow()

    def cancel(self) -> None:
        """Drop everything queued (the transport is gone)."""
        self._closed = True
        self._pending.clear()
        self._held.clear()
        self._delayed.clear()
        if self._delay_timer is not None:
            self._delay_timer.cancel()
            self._delay_timer = None
