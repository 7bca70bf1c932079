"""The threads that run listener callbacks, and the pool that all clients share.

:class:`CallbackPool` runs tasks (``submit(fn)``) on worker threads that
it starts on demand. It owns the ready queue, the workers and a stall watch,
and its job is to keep callbacks off the loop and reader threads while waking
as few threads as it can, because on a busy process a thread wake-up costs more
CPU than a small listener call:

* A worker that finishes a task takes the next one without sleeping, so while
  tasks keep coming one worker runs them all: one wake-up per busy spell, not
  one per message (``ThreadPoolExecutor`` woke a thread per task).
* ``submit`` wakes an idle worker (or starts one) only when no worker is busy.
  While one is, the task waits for it; if the oldest waiting task has waited
  :data:`STALL_AFTER` (the busy workers look stuck in slow listeners, or are
  too few for listeners that block on I/O) the *watch* thread, which looks
  every :data:`WATCH_INTERVAL` while tasks wait, wakes or starts one more
  worker, at most one per :data:`STALL_AFTER`, up to ``max_workers``. So a slow
  listener delays other listeners by about 15 ms, and listeners that block get
  the threads they need.
* A process short of the GIL (scores of busy threads) also makes tasks wait;
  more threads would only make that worse. The watch tells the two apart by
  its own punctuality: when its look came :data:`WATCH_INTERVAL` late, it
  waits for :data:`STARVED_AFTER` instead.
* Workers idle for :data:`RETIRE_AFTER` exit (one stays).
* A thread may *defer* the wake-ups its submits cause (:func:`deferred_wakes`):
  the worker is chosen, and counted as awake, at once, but released only when
  the block ends. The thread reading the websockets defers until it is about
  to wait for the sockets again, which gives up the GIL. A worker woken
  earlier would find the GIL taken, sleep again until it is free and often
  preempt the reader on the way: three or four context switches per message
  instead of about one.

Ordering per listener is not this module's business: an
:class:`~.emitter.OrderedQueue` submits at most one drain task at a time.

**The shared pool** (:class:`SharedPool`, :func:`acquire_shared`,
:func:`release_shared`). By default every :class:`~.client.AblyRealtime` in the
process uses one dispatcher: fifty clients run one or two callback threads
instead of up to four hundred, and their messages share the wake-ups. Its
``max_workers`` is the sum of the ``callback_workers`` of the clients using it,
so there is as much room for blocked listeners as private pools gave. It is
created with the first client and shut down (queued callbacks still run) when
the last one closes; a forked child starts a fresh one.
``ClientOptions(shared_callback_pool=False)`` gives a client a private
dispatcher, so that other clients' slow listeners never queue ahead of its own.

Inline listeners, which skip the pool altogether, are :mod:`.inline`'s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType

__all__ = [
    "RETIRE_AFTER",
    "STALL_AFTER",
    "STARVED_AFTER",
    "WATCH_INTERVAL",
    "CallbackPool",
    "SharedPool",
    "acquire_shared",
    "deferred_wakes",
    "release_shared",
]

log = logging.getLogger(__name__)

STALL_AFTER = 0.01  # seconds the oldest task may wait, all workers busy, before help comes
WATCH_INTERVAL = 0.005  # seconds between two looks of the stall watch while tasks wait
STARVED_AFTER = 0.25  # the stall threshold when the process is short of the GIL
RETIRE_AFTER = 60.0  # seconds an idle worker waits for work before it exits
_THREAD_PREFIX = "ably-callback"

Task = Callable[[], None]


class _Worker:
    """A worker thread's wake-up gate: a lock it holds, released to wake it."""

    __slots__ = ("gate", "thread")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.thread: threading.Thread | None = None


class CallbackPool:
    """Runs callbacks on worker threads started on demand; see the module docstring.

    ``executor`` (optional) hands every task to that executor instead.
    """

    def __init__(
        self,
        max_workers: int = 8,
        executor: Executor | None = None,
        *,
        name: str = _THREAD_PREFIX,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._executor = executor
        self._name = name
        self._lock = threading.Lock()
        self._ready: deque[tuple[float, Task]] = deque()  # (monotonic time queued, task)
        self._idle: list[_Worker] = []  # LIFO: the most recently idle worker wakes first
        self._threads: set[threading.Thread] = set()
        self._searching = 0  # workers awake and not running a task (or about to wake)
        self._last_help = 0.0  # monotonic time a stall last brought in another worker
        self.stall_helps = 0  # how often a stall brought in another worker (diagnostics)
        self._watch_gate = threading.Lock()
        self._watch_gate.acquire()
        self._watch_thread: threading.Thread | None = None
        self._watching = False
        self._closed = False
        self._started = 0  # threads started so far (for their names)

    # -- submitting -----------------------------------------------------------------
    def submit(self, fn: Task) -> None:
        """Run ``fn()`` on a worker thread; dropped once the dispatcher is closed."""
        if self._executor is not None:
            self._submit_to_executor(fn)
            return
        with self._lock:
            if self._closed:
                return
            ready = self._ready
            now = time.monotonic()
            ready.append((now, fn))
            if self._searching:
                return  # an awake worker takes it
            busy = len(self._threads) - len(self._idle)
            if busy:
                if busy < self.max_workers:
                    self._watch_locked()  # a busy worker should be back soon; make sure
                return
            gate = self._wake_locked()
        if gate is not None:
            gates: list[threading.Lock] | None = getattr(_DEFERRED, "gates", None)
            if gates is None:
                gate.release()
            else:
                gates.append(gate)

    def _submit_to_executor(self, fn: Task) -> None:
        if self._closed:
            return
        assert self._executor is not None
        try:
            self._executor.submit(fn)
        except RuntimeError:  # the pool was shut down under us: drop, as when closed
            log.debug("callback dropped: dispatcher is shut down")

    def _wake_locked(self) -> threading.Lock | None:
        """Pick an idle worker to wake (returns its gate to release), or start one if room.

        The caller holds the lock; the worker counts as awake from now on.
        """
        if self._idle:
            worker = self._idle.pop()
            self._searching += 1
            return worker.gate
        if len(self._threads) < self.max_workers:
            self._searching += 1
            self._start_locked()
        return None

    def _start_locked(self) -> None:
        worker = _Worker()
        self._started += 1
        thread = threading.Thread(
            target=self._work, args=(worker,), name=f"{self._name}-{self._started}", daemon=True
        )
        worker.thread = thread
        self._threads.add(thread)
        thread.start()

    # -- workers --------------------------------------------------------------------
    def _work(self, me: _Worker) -> None:
        lock = self._lock
        ready = self._ready
        awake = True  # counted in _searching (woken or just started)
        try:
            while True:
                with lock:
                    if not awake:  # back from a task
                        self._searching += 1
                    awake = False
                    if ready:
                        task = ready.popleft()[1]
                        self._searching -= 1
                        if ready and not self._searching:
                            self._watch_locked()  # more wait while this one runs
                    else:
                        self._searching -= 1
                        if self._closed:
                            return
                        self._idle.append(me)
                        task = None
                if task is None:
                    if not self._sleep(me):
                        return  # retired
                    awake = True
                    continue
                try:
                    task()
                except Exception:
                    log.exception("callback task %r raised", task)
        finally:
            with lock:
                self._threads.discard(threading.current_thread())

    def _sleep(self, me: _Worker) -> bool:
        """Wait to be woken; False when the worker should exit (retired or closed)."""
        if me.gate.acquire(timeout=RETIRE_AFTER):
            return True
        with self._lock:
            if me not in self._idle:  # woken just as the wait timed out
                me.gate.acquire()  # released already (under the lock)
                return True
            if len(self._threads) > 1 and not self._closed:
                self._idle.remove(me)
                return False
            # The last worker stays, asleep, until woken.
        me.gate.acquire()
        return True

    # -- the stall watch ------------------------------------------------------------
    def _watch_locked(self) -> None:
        """Make sure the watch thread looks at the ready queue soon; the caller holds the lock."""
        if self._watching or self._closed:
            return
        self._watching = True
        if self._watch_thread is None:
            self._watch_thread = threading.Thread(
                target=self._watch, name=f"{self._name}-watch", daemon=True
            )
            self._watch_thread.start()
        else:
            self._watch_gate.release()

    def _watch(self) -> None:
        # While watching: look every WATCH_INTERVAL (the gate stays held, so the
        # timed acquire is a sleep); otherwise block until _watch_locked or close
        # releases the gate (the acquire leaves it held again).
        gate = self._watch_gate
        clock = time.monotonic
        while True:
            due = clock() + WATCH_INTERVAL
            gate.acquire(timeout=WATCH_INTERVAL)
            with self._lock:
                if self._closed:
                    return
                watching = bool(self._ready) and not self._searching
                if watching:
                    now = clock()
                    self._help_if_stalled_locked(now, late=now - due >= WATCH_INTERVAL)
                else:
                    self._watching = False
            if not watching:
                gate.acquire()

    def _help_if_stalled_locked(self, now: float, *, late: bool) -> None:
        """Tasks wait and every awake worker is busy: bring in another if it is a stall.

        A stall: the oldest task waited STALL_AFTER. But when this look itself
        came late, the process is short of the GIL (many busy threads): tasks
        wait because nobody gets to run, and another thread would make that
        worse, so only a wait of STARVED_AFTER counts then. At most one more
        worker per STALL_AFTER.
        """
        waited = now - self._ready[0][0]
        if waited < STALL_AFTER or now - self._last_help < STALL_AFTER:
            return
        if late and waited < STARVED_AFTER:
            return
        self._last_help = now
        self.stall_helps += 1
        gate = self._wake_locked()
        if gate is not None:
            gate.release()

    # -- closing --------------------------------------------------------------------
    def close(self, wait: bool = True, *, cancel: bool | None = None) -> None:
        """Stop taking callbacks; with ``wait``, let queued ones finish first.

        ``cancel`` drops callbacks not yet started (default: ``not wait``).
        Called from one of the dispatcher's own threads, it never waits (that
        would join the calling thread).
        """
        if cancel is None:
            cancel = not wait
        if self._executor is not None:
            self._closed = True
            return
        with self._lock:
            self._closed = True
            if cancel:
                self._ready.clear()
            idle, self._idle = self._idle, []
            self._searching += len(idle)
            threads = list(self._threads)
            watching = self._watching
        for worker in idle:
            worker.gate.release()
        if not watching and self._watch_thread is not None:
            self._watch_gate.release()
        me = threading.current_thread()
        if wait and me not in threads and me is not self._watch_thread:
            for thread in threads:
                thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    def thread_count(self) -> int:
        """Worker threads alive now (the watch thread not counted)."""
        with self._lock:
            return len(self._threads)

    def threads(self) -> list[threading.Thread]:
        """Every thread of this dispatcher alive now, the watch thread included."""
        with self._lock:
            threads = list(self._threads)
        watch = self._watch_thread
        if watch is not None and watch.is_alive():
            threads.append(watch)
        return threads

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"CallbackPool({state}, workers={len(self._threads)}/{self.max_workers}, "
            f"queued={len(self._ready)})"
        )


# -- the shared pool -------------------------------------------------------------------
class SharedPool:
    """Hands out one dispatcher to every client that asks, until the last one gives it back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dispatcher: CallbackPool | None = None
        self._users = 0

    def acquire(self, workers: int) -> CallbackPool:
        """The dispatcher (created if needed), with room for ``workers`` more threads."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        with self._lock:
            dispatcher = self._dispatcher
            if dispatcher is None:
                dispatcher = self._dispatcher = CallbackPool(max_workers=workers)
            else:
                dispatcher.max_workers += workers
            self._users += 1
            return dispatcher

    def release(self, dispatcher: CallbackPool, workers: int) -> None:
        """Give back what :meth:`acquire` took; the last user shuts the dispatcher down.

        Callbacks already queued still run; the call never waits for them.
        """
        with self._lock:
            if dispatcher is not self._dispatcher:
                return  # already shut down (released twice)
            self._users -= 1
            if self._users > 0:
                dispatcher.max_workers = max(1, dispatcher.max_workers - workers)
                return
            self._dispatcher = None
        dispatcher.close(wait=False, cancel=False)

    @property
    def dispatcher(self) -> CallbackPool | None:
        """The dispatcher while some client uses it."""
        return self._dispatcher

    @property
    def users(self) -> int:
        return self._users

    def forget(self) -> None:
        """Drop the dispatcher without closing it: in a forked child, its threads do not exist."""
        self._lock = threading.Lock()
        self._dispatcher = None
        self._users = 0


_SHARED = SharedPool()
# A child made by fork (Celery's prefork pool, for one) inherits the dispatcher but
# none of its threads: its own clients must start from a fresh pool.
os.register_at_fork(after_in_child=lambda: _SHARED.forget())


def acquire_shared(workers: int) -> CallbackPool:
    """The process-wide dispatcher, with room for ``workers`` more threads.

    Pair every call with :func:`release_shared` (``AblyRealtime.close`` does).
    """
    return _SHARED.acquire(workers)


def release_shared(dispatcher: CallbackPool, workers: int) -> None:
    """Give back what :func:`acquire_shared` took; the last user shuts the pool down."""
    _SHARED.release(dispatcher, workers)


_DEFERRED = threading.local()  # .gates: worker gates this thread releases at its block's end


class _Deferral:
    """The context of :func:`deferred_wakes` (a class: entered on every frame read)."""

    __slots__ = ("_outer",)

    def __init__(self) -> None:
        self._outer = False

    def __enter__(self) -> None:
        self._outer = getattr(_DEFERRED, "gates", None) is None  # nested: the outer one wakes
        if self._outer:
            _DEFERRED.gates = []

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._outer:
            return
        gates: list[threading.Lock] = _DEFERRED.gates
        _DEFERRED.gates = None
        for gate in gates:
            gate.release()


def deferred_wakes() -> _Deferral:
    """Within the block, workers that this thread's submits wake are woken at its end."""
    return _Deferral()


def deferring() -> bool:
    """Whether this thread is within a :func:`deferred_wakes` block (a nested one does nothing)."""
    return getattr(_DEFERRED, "gates", None) is not None
