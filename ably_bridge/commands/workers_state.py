"""What the Celery workers are doing with the bridge's tasks: one snapshot, no I/O of its own.

This module owns :class:`WorkersSnapshot` (workers, tasks, bridge targets, problems)
and :func:`take_snapshot`, which asks the workers over the broker with
Celery's remote-control *inspect* broadcasts (``ping``, ``active``,
``reserved``, ``scheduled``, ``registered``, ``active_queues`` - what
``celery inspect`` and Flower use) and reads each listed task's state from
the result backend:

* ``running`` - a worker is executing it (``active``);
* ``queued`` - a worker has prefetched it (``reserved``);
* ``scheduled`` - a worker holds it until its ETA (``scheduled``);
* ``retrying`` - scheduled *and* the result backend says ``RETRY``: it failed
  and waits for its next attempt at the ETA; ``error`` is why it failed.

With a bridge configuration, each Celery target is checked: some worker that
consumes the target's queue must register the task name, or the bridge's
events for it end up in the dead-letter stream (``unknown_target``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.config import CeleryTarget

if TYPE_CHECKING:
    from celery import Celery

    from ably_bridge.bridge.config import BridgeConfig

__all__ = ["TargetCheck", "TaskState", "WorkerState", "WorkersSnapshot", "take_snapshot"]

_MAX_LOOKUPS = 500  # result-backend reads per snapshot
_ERROR_TEXT = 300


@dataclass
class WorkerState:
    name: str
    queues: list[str]
    active: int = 0
    reserved: int = 0
    scheduled: int = 0
    registered: list[str] = field(default_factory=list)  # every task name it registers


@dataclass
class TaskState:
    worker: str
    name: str
    id: str
    state: str  # running | queued | scheduled | retrying
    eta: str | None = None
    started: float | None = None  # time.time() when a running task started
    backend_state: str | None = None
    retries: int | None = None  # only when the backend keeps it (result_extended)
    error: str | None = None


@dataclass
class TargetCheck:
    route: str
    task: str
    queue: str
    workers: list[str]  # consuming the queue and registering the task
    ok: bool


@dataclass
class WorkersSnapshot:
    workers: list[WorkerState] = field(default_factory=list)
    tasks: list[TaskState] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def take_snapshot(
    app: Celery,
    *,
    patterns: Sequence[str],
    timeout: float,
    config: BridgeConfig | None = None,
    redact: Any = str,
) -> WorkersSnapshot:
    """Ask the workers of ``app``'s broker; see the module docstring."""
    snap = WorkersSnapshot()
    names = sorted((app.control.inspect(timeout=timeout).ping() or {}).keys())
    if not names:
        snap.problems.append(f"no worker answered within {timeout:g}s")
    else:
        inspect = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
        _collect(snap, inspect, names, patterns)
        _read_backend(app, snap, redact)
    if config is not None:
        _check_targets(app, snap, config, inspect_registered(snap))
    return snap


def inspect_registered(snap: WorkersSnapshot) -> dict[str, set[str]]:
    return {w.name: set(w.registered) for w in snap.workers}


def _collect(
    snap: WorkersSnapshot, inspect: Any, names: list[str], patterns: Sequence[str]
) -> None:
    active = inspect.active() or {}
    reserved = inspect.reserved() or {}
    scheduled = inspect.scheduled() or {}
    registered = inspect.registered() or {}
    queues = inspect.active_queues() or {}
    for name in names:
        worker = WorkerState(
            name=name,
            queues=sorted(str(q.get("name")) for q in queues.get(name, []) or []),
            registered=sorted(
                str(t).split(" ")[0] for t in registered.get(name, []) or []
            ),  # "name [rate_limit=..]" -> name
        )
        snap.workers.append(worker)
        for info in active.get(name, []) or []:
            worker.active += 1
            if _matches(str(info.get("name")), patterns):
                snap.tasks.append(_task(name, info, "running"))
        for info in reserved.get(name, []) or []:
            worker.reserved += 1
            if _matches(str(info.get("name")), patterns):
                snap.tasks.append(_task(name, info, "queued"))
        for entry in scheduled.get(name, []) or []:
            worker.scheduled += 1
            info = entry.get("request") or {}
            if _matches(str(info.get("name")), patterns):
                snap.tasks.append(_task(name, info, "scheduled", entry.get("eta")))


def _task(worker: str, info: Mapping[str, Any], state: str, eta: Any = None) -> TaskState:
    started = info.get("time_start")
    return TaskState(
        worker=worker,
        name=str(info.get("name")),
        id=str(info.get("id")),
        state=state,
        eta=str(eta) if eta else None,
        started=float(started) if isinstance(started, int | float) else None,
    )


def _read_backend(app: Celery, snap: WorkersSnapshot, redact: Any) -> None:
    """Each listed task's state in the result backend (when there is one)."""
    if not app.conf.result_backend:
        return
    for task in snap.tasks[:_MAX_LOOKUPS]:
        try:
            meta = app.backend.get_task_meta(task.id)
        except Exception as exc:  # a backend that is down must not hide the workers' view
            snap.problems.append(f"result backend unreadable: {type(exc).__name__}")
            return
        status = meta.get("status")
        task.backend_state = str(status) if status else None
        retries = meta.get("retries")
        task.retries = retries if isinstance(retries, int) else None
        if status in ("RETRY", "FAILURE"):
            result = meta.get("result")
            text = (
                f"{type(result).__name__}: {result}"
                if isinstance(result, BaseException)
                else str(result)
            )
            task.error = redact(text)[:_ERROR_TEXT]
        if status == "RETRY" and task.state == "scheduled":
            task.state = "retrying"


def _check_targets(
    app: Celery, snap: WorkersSnapshot, config: BridgeConfig, registered: dict[str, set[str]]
) -> None:
    default_queue = str(app.conf.task_default_queue or "celery")
    consumers: dict[str, set[str]] = {}
    for worker in snap.workers:
        for queue in worker.queues:
            consumers.setdefault(queue, set()).add(worker.name)
    for route in config.routes:
        for target in route.targets:
            if not isinstance(target, CeleryTarget):
                continue
            queue = target.queue or default_queue
            able = sorted(
                w for w in consumers.get(queue, set()) if target.task in registered.get(w, set())
            )
            check = TargetCheck(route.id, target.task, queue, able, ok=bool(able))
            snap.targets.append(check)
            if not able:
                snap.problems.append(
                    f"route {route.id}: no worker consuming queue {queue!r} registers task "
                    f"{target.task!r}; its events will be dead-lettered (unknown_target)"
                )


def task_patterns(explicit: Iterable[str], config: BridgeConfig | None) -> list[str]:
    """``--task`` patterns, else ``ably.*`` and every Celery target's task name."""
    chosen = list(explicit)
    if chosen:
        return chosen
    out = ["ably.*"]
    if config is not None:
        for route in config.routes:
            out += [t.task for t in route.targets if isinstance(t, CeleryTarget)]
    return sorted(set(out))
