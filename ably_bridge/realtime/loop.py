"""The loop thread of a realtime client: it owns the protocol core and performs its effects.

:class:`SessionLoop` is the only code that touches the
:class:`~ably_bridge.protocol.connection.ConnectionCore` (and through it every
channel, presence map and pending publish). Other threads reach it through an
inbox (a :class:`queue.SimpleQueue`) holding either

* the frames of one socket read from a reader thread, as the tuple
  ``(transport_id, [ProtocolMessage, ...])`` (the hot path: no closure is
  allocated, and one wake-up covers every frame the read brought), or
* a :class:`Command`: a function of ``now`` returning effects, run on the loop
  thread, plus an optional future that receives the function's exception.

The loop waits on the inbox until the core's :meth:`next_deadline` (or the
proactive token renewal, see :mod:`.links`), then calls ``tick``. Time is
``options.clock.monotonic()``. Effects are performed by :meth:`perform`:
network work goes to :class:`~.links.Links` (dial, close, token, connectivity
threads), listener work to :class:`~.delivery.Delivery` (which hands it to the
callback pool), so neither user code nor blocking I/O ever runs here - apart
from writing a frame to a socket, which only blocks when the kernel buffer is
full.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.connection import ConnectionCore
from ably_bridge.protocol.events import (
    CheckConnectivity,
    CloseTransport,
    CompleteAttach,
    CompleteDetach,
    CompletePing,
    CompletePublish,
    DeliverMessages,
    DeliverPresence,
    Effect,
    EmitChannelState,
    EmitConnectionState,
    OpenTransport,
    PresenceSynced,
    RequestToken,
    SendFrame,
)
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.realtime.delivery import Delivery, settle
from ably_bridge.realtime.links import Links

if TYPE_CHECKING:
    import random

    from ably_bridge.options import ClientOptions
    from ably_bridge.realtime.emitter import CallbackDispatcher
    from ably_bridge.rest.client import AblyRest

__all__ = ["Command", "SessionLoop"]

log = logging.getLogger(__name__)

T = TypeVar("T")
CommandFn = Callable[[float], Iterable[Effect] | None]
_STOP = object()
_BATCH = 512  # inbox items handled before deadlines are looked at again


class Command:
    """A function to run on the loop thread; its exception (if any) goes to ``future``."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: CommandFn, future: Future[Any] | None = None) -> None:
        self.fn = fn
        self.future = future


def timeout_error(what: str, timeout: float) -> AblyException:
    return AblyException(f"{what} timed out after {timeout:g}s", ErrorCode.TIMEOUT_ERROR, 500)


class SessionLoop:
    """One realtime session's loop thread; see the module docstring."""

    def __init__(
        self,
        options: ClientOptions,
        rest: AblyRest,
        dispatcher: CallbackDispatcher,
        *,
        rng: random.Random,
        name: str = "ably-loop",
    ) -> None:
        self.options = options
        self.clock = options.clock
        self.core = ConnectionCore(options, rng=rng, can_renew_token=_can_renew(options))
        self.delivery = Delivery(dispatcher)
        self.links = Links(options, rest, self.core, self.post, self.post_frames)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._handlers: dict[type, Callable[[Any], None]] = {
            SendFrame: self._send,
            DeliverMessages: self.delivery.messages,
            DeliverPresence: self.delivery.presence,
            EmitChannelState: self.delivery.channel_state,
            EmitConnectionState: self._connection_state,
            CompletePublish: self.delivery.publish_done,
            CompleteAttach: _complete_none,
            CompleteDetach: _complete_none,
            CompletePing: _complete_ping,
            PresenceSynced: self.delivery.presence_synced,
            OpenTransport: self.links.open,
            CloseTransport: lambda e: self.links.close(e.transport_id),
            RequestToken: self._request_token,
            CheckConnectivity: lambda e: self.links.check_connectivity(),
        }
        self._thread.start()

    # -- posting ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def post(self, fn: CommandFn, future: Future[Any] | None = None) -> None:
        """Run ``fn(now)`` on the loop thread and perform the effects it returns."""
        self._inbox.put(Command(fn, future))

    def post_frames(self, transport_id: int, frames: list[ProtocolMessage]) -> None:
        """Decoded frames from a reader thread, in order."""
        self._inbox.put((transport_id, frames))

    def post_frame(self, transport_id: int, pm: ProtocolMessage) -> None:
        """One decoded frame (kept for callers from before :meth:`post_frames`)."""
        self._inbox.put((transport_id, [pm]))

    def request(self, op: Callable[[Future[Any], float], Iterable[Effect]]) -> Future[Any]:
        """Start ``op(future, now)`` on the loop thread; the core settles ``future`` later."""
        future: Future[Any] = Future()
        if not self.running:
            future.set_exception(_stopped_error())
            return future
        self.post(lambda now: op(future, now), future)
        return future

    def run_sync(self, fn: Callable[[float], T], timeout: float | None = None) -> T:
        """Run ``fn(now)`` on the loop thread and return its result (a loop-side read or write)."""
        if not self.running or self.on_loop_thread():
            return fn(self.clock.monotonic())
        future: Future[T] = Future()

        def command(now: float) -> None:
            future.set_result(fn(now))

        self.post(command, future)
        return wait(future, timeout or self.options.realtime_request_timeout, "loop call")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop thread (after the commands already posted) and every transport."""
        if self._stopped.is_set():
            return
        self._inbox.put(_STOP)
        if not self.on_loop_thread():
            self._thread.join(timeout)
        self.links.shutdown()

    # -- the loop -----------------------------------------------------------------
    def _run(self) -> None:
        inbox = self._inbox
        clock = self.clock
        core = self.core
        try:
            while True:
                deadline = self._deadline()
                timeout = None if deadline is None else max(0.0, deadline - clock.monotonic())
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    item = None
                for _ in range(_BATCH):
                    if item is None:
                        break
                    if item is _STOP:
                        return
                    if type(item) is tuple:
                        self._frames(item[0], item[1])
                    else:
                        self._command(item)
                    # Only this thread takes items, so "not empty" means get_nowait succeeds
                    # (and costs no exception when, as mostly, the inbox is drained).
                    item = None if inbox.empty() else inbox.get_nowait()
                if item is not None:  # the batch ran out: keep it for the next round
                    self._requeue(item)
                now = clock.monotonic()
                if deadline is not None and now >= deadline:
                    self.perform(core.tick(now))
                    self._tick_links(now)
        except BaseException:  # pragma: no cover - a bug; never let it pass silently
            log.exception("realtime loop thread crashed")
            raise
        finally:
            self._stopped.set()

    def _requeue(self, item: Any) -> None:
        # SimpleQueue has no put-front; handle it now rather than reorder it.
        if type(item) is tuple:
            self._frames(item[0], item[1])
        elif item is _STOP:
            self._inbox.put(_STOP)
        else:
            self._command(item)

    def _frames(self, transport_id: int, frames: list[ProtocolMessage]) -> None:
        frame_received = self.core.frame_received
        now = self.clock.monotonic()
        for pm in frames:
            effects = frame_received(transport_id, pm, now)
            if effects:
                self.perform(effects)

    def _deadline(self) -> float | None:
        core_deadline = self.core.next_deadline()
        renew_at = self.links.renew_at
        if renew_at is None:
            return core_deadline
        return renew_at if core_deadline is None else min(core_deadline, renew_at)

    def _tick_links(self, now: float) -> None:
        if self.links.renew_due(now, self.core.state):
            self.links.request_token(force=True, proactive=True)

    def _command(self, command: Command) -> None:
        try:
            effects = command.fn(self.clock.monotonic())
        except Exception as exc:
            future = command.future
            if future is not None and not future.done():
                future.set_exception(exc)
            else:
                log.exception("a realtime command failed")
            return
        if effects:
            self.perform(effects)

    # -- effects ------------------------------------------------------------------
    def perform(self, effects: Iterable[Effect]) -> None:
        """Carry out ``effects`` in order; a failing effect is logged and skipped."""
        handlers = self._handlers
        for effect in effects:
            try:
                handlers[type(effect)](effect)
            except Exception:
                log.exception("performing %s failed", type(effect).__name__)

    def _send(self, effect: SendFrame) -> None:
        self.links.send(effect.frame)

    def _connection_state(self, effect: EmitConnectionState) -> None:
        self.links.connection_state_changed(effect.change.current, self.clock.monotonic())
        self.delivery.connection_state(effect)

    def _request_token(self, effect: RequestToken) -> None:
        self.links.request_token(force=effect.force, proactive=False)


def _complete_none(effect: CompleteAttach | CompleteDetach) -> None:
    settle(effect.handle, effect.error, None)


def _complete_ping(effect: CompletePing) -> None:
    settle(effect.handle, effect.error, effect.round_trip)


def _can_renew(options: ClientOptions) -> bool:
    return any(x is not None for x in (options.key, options.auth_callback, options.auth_url))


def _stopped_error() -> AblyException:
    return AblyException("the realtime client is closed", ErrorCode.CONNECTION_CLOSED, 400)


def wait(future: Future[T], timeout: float, what: str) -> T:
    """``future.result(timeout)``, raising :class:`AblyException` 50003 on timeout."""
    try:
        return future.result(timeout)
    except FutureTimeout:
        raise timeout_error(what, timeout) from None
