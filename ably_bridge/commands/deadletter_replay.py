"""Performing replay plans: sinks, Celery re-publishes and stream moves, then removal.

This module owns :class:`Replayer`. Given the :class:`~.deadletter_plan.Plan`\\ s
of a chunk of dead letters it

* hands every planned delivery to the sink of its target, built with the
  public sink API (:func:`ably_bridge.bridge.sinks.create_sink`) exactly as the
  bridge builds it (same key prefix and dedup TTL, so the same dedup marks and
  Celery task ids), one ``deliver`` call per sink;
* publishes forced Celery tasks again with their own id and arguments;
* moves consumer dead letters back to their stream with one Lua script that
  removes the dead letter and appends the entry atomically (on a Redis Cluster,
  when the two streams are in different slots, the entry is appended first and
  the dead letter removed after: a crash between the two leaves the dead
  letter, and a second replay appends the entry again);

and removes a dead letter from its stream only once every one of its targets
confirmed it (delivered, or already there). A failed or refused target leaves
the entry in place, with the reason in the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ably_bridge.bridge.config import BridgeConfig, CeleryTarget, Target
from ably_bridge.bridge.redis_keys import is_cluster_client, same_slot
from ably_bridge.bridge.secret import redact_url
from ably_bridge.bridge.sinks import Outcome, Sink, SinkOptions, create_sink
from ably_bridge.commands.deadletter_plan import ForcedTask, Plan
from ably_bridge.commands.deadletter_store import DeadLetterStore

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["Done", "Replayer"]

logger = logging.getLogger(__name__)

# KEYS[1] = dead-letter stream, KEYS[2] = the consumer's stream; ARGV[1] = dead letter
# id, ARGV[2..] = field, value, ... Removes the dead letter and appends the entry in
# one step: a second replay (or a concurrent one) finds nothing and adds nothing.
_MOVE_LUA = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
"""


@dataclass(frozen=True)
class Done:
    """What became of one planned entry: ``replayed`` (and removed), ``gone`` or ``failed``."""

    plan: Plan
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class Replayer:
    """Replays plans chunk by chunk; :meth:`close` releases the sinks and Celery apps."""

    def __init__(
        self,
        store: DeadLetterStore,
        config: BridgeConfig | None,
        *,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.store = store
        self.config = config
        self._redact = redact
        self._sinks: dict[tuple[str, str], Sink] = {}
        self._senders: dict[str, Celery] = {}
        self._move = store.client.register_script(_MOVE_LUA)

    def perform(self, plans: Sequence[Plan]) -> list[Done]:
        """Replay ``plans`` (all ``ok``); one :class:`Done` per plan, in order."""
        outcome: dict[int, Done] = {}
        confirmed: list[int] = []
        for index, plan in enumerate(plans):
            if plan.move is not None:
                outcome[index] = self._perform_move(plan)
            elif plan.forced is not None:
                error = self._publish(plan.forced)
                if error is None:
                    confirmed.append(index)
                else:
                    outcome[index] = Done(plan, "failed", error)
        for index, error in self._deliver(plans).items():
            if error is None:
                confirmed.append(index)
            else:
                outcome[index] = Done(plan=plans[index], status="failed", detail=error)
        if confirmed:
            # Only now, every target having confirmed, do the entries go.
            self.store.delete([plans[i].entry.id for i in confirmed])
            for index in confirmed:
                outcome[index] = Done(plans[index], "replayed")
        # (A plan with nothing to do is never made; if one were, it must not vanish.)
        return [
            outcome.get(i) or Done(plans[i], "failed", "nothing to replay")
            for i in range(len(plans))
        ]

    # -- consumer entries ----------------------------------------------------------------
    def _move_across_slots(self, entry_id: str, stream: str, pairs: list[str]) -> Any:
        """The move as two steps (no script spans two slots): append, then remove."""
        client = self.store.client
        if not client.xrange(self.store.stream, min=entry_id, max=entry_id):
            return None  # already replayed (or removed)
        fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
        new_id = client.xadd(stream, fields)  # type: ignore[arg-type]
        client.xdel(self.store.stream, entry_id)
        return new_id

    def _perform_move(self, plan: Plan) -> Done:
        assert plan.move is not None
        args: list[str] = [plan.entry.id]
        for name, value in plan.move.fields.items():
            args += [name, value]
        keys = [self.store.stream, plan.move.stream]
        try:
            if is_cluster_client(self.store.client) and not same_slot(*keys):
                new_id = self._move_across_slots(plan.entry.id, plan.move.stream, args[1:])
            else:
                new_id = self._move(keys=keys, args=args)
        except Exception as exc:
            return Done(plan, "failed", self._error(exc))
        if new_id is None:
            return Done(plan, "gone", "the dead letter was already removed")
        text = new_id.decode() if isinstance(new_id, bytes) else str(new_id)
        return Done(plan, "replayed", f"new entry {text}")

    # -- forced Celery publishes -----------------------------------------------------------
    def _publish(self, forced: ForcedTask) -> str | None:
        target = forced.target
        try:
            url = self._url(target)
            app = self._sender(url)
            app.send_task(
                target.task,
                args=forced.args,
                kwargs=forced.kwargs,
                task_id=forced.task_id,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
                add_to_parent=False,
                ignore_result=True,
                **_task_options(target, app),
            )
        except Exception as exc:
            return self._error(exc)
        return None

    def _sender(self, url: str) -> Celery:
        app = self._senders.get(url)
        if app is None:
            from ably_bridge.bridge.sinks.celery import make_sender_app

            app = self._senders[url] = make_sender_app(url)
        return app

    # -- sinks -------------------------------------------------------------------------------
    def _deliver(self, plans: Sequence[Plan]) -> dict[int, str | None]:
        """Each plan with deliveries -> None (all confirmed) or the first error."""
        groups: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        errors: dict[int, str | None] = {}
        for index, plan in enumerate(plans):
            if not plan.deliveries:
                continue
            errors[index] = None
            for delivery in plan.deliveries:
                try:
                    url = self._url(delivery.target)
                except ValueError as exc:
                    errors[index] = errors[index] or str(exc)
                    continue
                groups.setdefault((delivery.target.kind, url), []).append((index, delivery))
        for group, members in groups.items():
            try:
                sink = self._sink(group)
            except Exception as exc:
                for index, _ in members:
                    errors[index] = errors[index] or self._error(exc)
                continue
            results = sink.deliver([d for _, d in members])
            for (index, delivery), result in zip(members, results, strict=True):
                if result.confirmed:
                    continue
                what = "refused" if result.outcome is Outcome.REJECTED else "not confirmed"
                why = self._error(result.error) if result.error is not None else result.outcome
                where = f"{delivery.target.kind} target"
                errors[index] = errors[index] or f"{where} {what}: {why}"
        return errors

    def _sink(self, key: tuple[str, str]) -> Sink:
        sink = self._sinks.get(key)
        if sink is None:
            config = self.config
            assert config is not None  # plans with deliveries come from a configuration
            options = SinkOptions(key_prefix=config.key_prefix, dedup_ttl=config.delivery.dedup_ttl)
            kind, url = key
            sink = self._sinks[key] = create_sink(kind, url, options)  # type: ignore[arg-type]
        return sink

    def _url(self, target: Target) -> str:
        config = self.config
        if config is None:
            raise ValueError("no bridge configuration")
        if isinstance(target, CeleryTarget):
            secret = target.broker_url or config.celery_broker_url
        else:
            secret = target.url or config.redis_url
        if secret is None:
            raise ValueError(f"no URL for a {target.kind} target in the configuration")
        return secret.reveal()

    def _error(self, exc: BaseException | None) -> str:
        return self._redact(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for key, sink in self._sinks.items():
            try:
                sink.close()
            except Exception as exc:  # closing must not hide the replay's result
                logger.warning("closing the %s sink at %s: %s", key[0], redact_url(key[1]), exc)
        for app in self._senders.values():
            app.close()
        self._sinks.clear()
        self._senders.clear()


def _task_options(target: CeleryTarget, app: Celery) -> dict[str, Any]:
    """The ``send_task`` options of ``target``, declared as the bridge's Celery sink does."""
    options: dict[str, Any] = {}
    if target.queue_type is not None:
        from kombu.entity import Exchange, Queue

        name = target.queue or app.conf.task_default_queue
        kind = "topic" if target.queue_type == "quorum" else "direct"
        exchange = Exchange(name, type=kind)  # type: ignore[no-untyped-call]
        arguments = {"x-queue-type": target.queue_type}
        options["queue"] = Queue(name, exchange, name, queue_arguments=arguments)  # type: ignore[no-untyped-call]
    elif target.queue is not None:
        options["queue"] = target.queue
    if target.routing_key is not None:
        options["routing_key"] = target.routing_key
    if target.priority is not None:
        options["priority"] = target.priority
    if target.expires is not None:
        options["expires"] = target.expires
    if target.headers:
        options["headers"] = dict(target.headers)
    return options
