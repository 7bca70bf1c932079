"""The session of a realtime client: the protocol core, who drives it, and its effects.

:class:`SessionLoop` owns the
:class:`~ably_bridge.protocol.connection.ConnectionCore` (and through it every
channel, presence map and pending publish).

**Driving.** The core is stepped only by the thread holding the *session lock*:

* The thread reading the websocket (the process's reactor, or the socket's own
  reader) steps it with the frames of one socket read
  (:meth:`SessionLoop.post_frames`), on its own thread. An inbound message
  therefore wakes no loop thread: with fifty connections a wake-up costs about
  as much CPU as handling the message. A frame other than MESSAGE may move a
  timer, so after one the loop thread is woken to look at its deadline again.
  Inline listeners (:class:`~.inline.InlineRunner`) run right after the
  session is released, before the thread reads again.
* The loop thread runs everything else: it waits on an inbox (a
  :class:`queue.SimpleQueue`) until the core's :meth:`next_deadline` (or the
  proactive token renewal, see :mod:`.links`), then runs the :class:`Command`
  items posted by other threads (a function of ``now`` returning effects, plus
  an optional future that receives the function's exception) and ``tick``.

Either way the work done under the lock never blocks on anything but the
lock: effects are performed by :meth:`perform`, network work going to
:class:`~.links.Links` (dial, close, token, connectivity threads) and listener
work to :class:`~.delivery.ListenerDelivery` (which hands it to the callback pool), so
user code never runs while the session is held. Writing a frame to a socket
never waits either: what the kernel does not take at once waits in the
transport's bounded backlog (:mod:`ably_bridge.transports.outbound`), so a peer
that stops reading cannot hold the session, its timers or the reactor. Time is
``options.clock.monotonic()``; with a :class:`~ably_bridge.clock.FakeClock` the
loop asks the clock to wake it at its next deadline, so ``advance()`` drives
the client's timers (retries, timeouts) without real waiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

from ably_bridge.clock import SystemClock
from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.actions import Action
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
    DeliverRawPresence,
    Effect,
    EmitChannelState,
    EmitConnectionState,
    OpenTransport,
    PresenceSynced,
    RequestToken,
    SendFrame,
)
from ably_bridge.protocol.models import ProtocolMessage
from ably_bridge.realtime.callback_pool import deferred_wakes, deferring
from ably_bridge.realtime.delivery import ListenerDelivery, settle
from ably_bridge.realtime.inline import INLINE, in_inline_listener
from ably_bridge.realtime.links import Links

if TYPE_CHECKING:
    import random

    from ably_bridge.clock import Timer
    from ably_bridge.options import ClientOptions
    from ably_bridge.realtime.emitter import CallbackPool
    from ably_bridge.rest.client import AblyRest

__all__ = ["Command", "SessionLoop"]


T = TypeVar("T")
CommandFn = Callable[[float], Iterable[Effect] | None]
_STOP = object()
_WAKE = object()  # look at the deadlines again (a reader-driven frame may have moved one)
_MESSAGE = Action.MESSAGE
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
        dispatcher: CallbackPool,
        *,
        rng: random.Random,
        name: str = "ably-loop",
    ) -> None:
        self.options = options
        self.clock = options.clock
        self.log = rest.log  # the client's logger (ably_bridge.rest.logs)
        self.core = ConnectionCore(options, rng=rng, can_renew_token=_can_renew(options))
        if self.core.recover_error is not None:  # RTN16f1: logged, and we connect afresh
            error = self.core.recover_error
            self.log.error("ignoring the recover option: %s; connecting afresh", error.message)
        self.delivery = ListenerDelivery(dispatcher, self.log)
        self.delivery.recover = self._recover_channel  # RTL18
        self.links = Links(options, rest, self.core, self.post, self.post_frames, self.log)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = threading.Event()
        # Held by whichever thread steps the core: the loop thread, or a reader thread
        # running its frames (module docstring, "Driving"). Never held across a wait.
        self._session = threading.Lock()
        self._driver: int | None = None  # the reader thread holding the session, if any
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # A clock other than the system's (a FakeClock) is not followed by the inbox
        # wait's real-seconds timeout: it is asked to wake the loop instead.
        self._real_clock = isinstance(self.clock, SystemClock)
        self._wake_timer: Timer | None = None
        self._wake_deadline: float | None = None
        # Written by the loop thread only; read them to see how often it woke.
        self.steps = 0  # rounds of the loop thread (a command, a wake-up or a timer)
        self.wakeups = 0  # rounds begun by a wake-up alone (a reader's frame moved a deadline)
        self._handlers: dict[type, Callable[[Any], None]] = {
            SendFrame: self._send,
            DeliverMessages: self.delivery.messages,
            DeliverPresence: self.delivery.presence,
            DeliverRawPresence: self.delivery.raw_presence,
            EmitChannelState: self.delivery.channel_state,
            EmitConnectionState: self._connection_state,
            CompletePublish: self.delivery.publish_done,
            CompleteAttach: self._complete_none,
            CompleteDetach: self._complete_none,
            CompletePing: self._complete_ping,
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
        """True on the thread driving the session now: the loop thread or a reader in a step."""
        return threading.current_thread() is self._thread or self._driver == threading.get_ident()

    def post(self, fn: CommandFn, future: Future[Any] | None = None) -> None:
        """Run ``fn(now)`` on the loop thread and perform the effects it returns."""
        self._inbox.put(Command(fn, future))

    def post_frames(self, transport_id: int, frames: list[ProtocolMessage]) -> None:
        """Decoded frames from a reader thread, in order: run them here, holding the session.

        The reader thread steps the core itself (module docstring, "Driving"), so a
        message costs no wake-up of the loop thread. Only when a frame may have moved
        a deadline (anything but MESSAGE) is the loop woken to look again.
        """
        # Pool workers are woken when this thread is about to wait again: at the end
        # of the reactor's round (which defers them already), else at the end of this.
        if deferring():
            wake = self._step_frames(transport_id, frames)
        else:
            with deferred_wakes():
                wake = self._step_frames(transport_id, frames)
        if wake:
            self._inbox.put(_WAKE)

    def _step_frames(self, transport_id: int, frames: list[ProtocolMessage]) -> bool:
        """:meth:`post_frames` holding the session; True if a frame may have moved a deadline."""
        # Inline listeners run when the session is let go, before the next read.
        with INLINE.collecting(), self._session:
            if self._stopped.is_set():
                return False  # the client is closed: nobody performs effects any more
            self._driver = threading.get_ident()
            try:
                frame_received = self.core.frame_received
                perform = self.perform
                now = self.clock.monotonic()
                moved = False
                for pm in frames:
                    if pm.action != _MESSAGE:  # only MESSAGE is known to leave every timer alone
                        moved = True
                    effects = frame_received(transport_id, pm, now)
                    if effects:
                        perform(effects)
                return moved
            finally:
                self._driver = None

    def request(self, op: Callable[[Future[Any], float], Iterable[Effect]]) -> Future[Any]:
        """Start ``op(future, now)`` on the loop thread; the core settles ``future`` later."""
        future: Future[Any] = Future()
        if not self.running:
            future.set_exception(_stopped_error())
            return future
        self.post(lambda now: op(future, now), future)
        return future

    def call(
        self, op: Callable[[Future[Any], float], Iterable[Effect]], timeout: float, what: str
    ) -> Any:
        """A blocking :meth:`request`: start ``op`` and wait for its outcome.

        Refused (40000) from an inline listener, before anything is sent: the
        reply may have to come through the very socket whose reading thread
        would be waiting for it.
        """
        if in_inline_listener():
            raise AblyException(
                f"{what}: a blocking call from an inline listener (use the async form)",
                ErrorCode.BAD_REQUEST,
                400,
            )
        return wait(self.request(op), timeout, what)

    def run_sync(self, fn: Callable[[float], T], timeout: float | None = None) -> T:
        """Run ``fn(now)`` on the loop thread and return its result (a loop-side read or write)."""
        if not self.running or self.on_loop_thread():
            return fn(self.clock.monotonic())
        future: Future[T] = Future()

        def command(now: float) -> None:
            future.set_result(fn(now))

        self.post(command, future)
        # Allowed from inline listeners (unlike call): the loop thread answers this, not a reader.
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
        session = self._session
        try:
            while True:
                with session:
                    deadline = self._deadline()
                timeout = None if deadline is None else max(0.0, deadline - clock.monotonic())
                if timeout and not self._real_clock:
                    timeout = self._wake_at(deadline)
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    item = None
                with INLINE.collecting(), session:
                    if not self._step(item, deadline):
                        self._stopped.set()  # under the session: no reader steps after this
                        return
        except BaseException:  # pragma: no cover - a bug; never let it pass silently
            self.log.exception("realtime loop thread crashed")
            raise
        finally:
            self._stopped.set()

    def _wake_at(self, deadline: float | None) -> float | None:
        """Have the (fake) clock wake the loop at ``deadline``; the inbox wait then has none."""
        clock = self.clock
        if deadline != self._wake_deadline:
            if self._wake_timer is not None:
                self._wake_timer.cancel()
            self._wake_deadline = deadline
            self._wake_timer = (
                None
                if deadline is None
                else clock.call_later(deadline - clock.monotonic(), self._wake)
            )
        if deadline is not None and clock.monotonic() >= deadline:
            return 0.0  # it moved past the deadline meanwhile
        return None

    def _wake(self) -> None:
        self._wake_deadline = None  # fired: a later wait at the same deadline schedules anew
        self._inbox.put(_WAKE)

    def _step(self, item: Any, deadline: float | None) -> bool:
        """Handle ``item`` and what else is waiting (up to a batch), then due timers.

        Runs holding the session; False once the stop marker is reached.
        """
        inbox = self._inbox
        self.steps += 1
        if item is _WAKE:
            self.wakeups += 1
        for _ in range(_BATCH):
            if item is None:
                break
            if item is _STOP:
                return False
            if item is not _WAKE:
                self._command(item)
            # Only this thread takes items, so "not empty" means get_nowait succeeds
            # (and costs no exception when, as mostly, the inbox is drained).
            item = None if inbox.empty() else inbox.get_nowait()
        if item is not None:  # the batch ran out: keep it for the next round
            if item is _STOP:
                return False
            self._requeue(item)
        now = self.clock.monotonic()
        if deadline is not None and now >= deadline:
            self.perform(self.core.tick(now))
            self._tick_links(now)
        return True

    def _requeue(self, item: Any) -> None:
        # SimpleQueue has no put-front; handle it now rather than reorder it.
        if item is not _WAKE:
            self._command(item)

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
                self.log.exception("a realtime command failed")
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
                self.log.exception("performing %s failed", type(effect).__name__)

    def _send(self, effect: SendFrame) -> None:
        self.links.send(effect.frame)

    def _recover_channel(self, channel: str, serial: str | None, error: AblyException) -> None:
        # Called while effects are performed, so under the session: the core may be stepped.
        self.perform(self.core.decode_failed(channel, serial, error, self.clock.monotonic()))

    def _connection_state(self, effect: EmitConnectionState) -> None:
        self.links.connection_state_changed(effect.change.current, self.clock.monotonic())
        self.delivery.connection_state(effect)

    def _request_token(self, effect: RequestToken) -> None:
        self.links.request_token(force=effect.force, proactive=False)

    def _complete_none(self, effect: CompleteAttach | CompleteDetach) -> None:
        settle(effect.handle, effect.error, None, self.log)

    def _complete_ping(self, effect: CompletePing) -> None:
        settle(effect.handle, effect.error, effect.round_trip, self.log)


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
