"""How a bound ``ably.*`` task runs: check the arguments, ask the retry budget, call Ably, retry.

This module owns :class:`Runner`. For every task it:

1. checks the arguments (:func:`workers.arguments.bind`; a bad one fails at once
   with a 400-class :class:`~workers.errors.AblyTaskError`);
2. asks the process's :class:`~workers.budget.RetryBudget`; while Ably is
   failing, the task is re-scheduled for the end of the backoff without a
   request (a *deferral*, counted in the ``deferrals`` argument so it does not
   use up the task's retries);
3. makes the call with the process's shared REST client, telling the budget how
   it went;
4. on a retryable failure, re-schedules the task through the broker with the
   retry policy's countdown (``Retry-After`` honoured); publishes keep the time
   of their first real attempt (``first_attempt_ms``) so no retry starts after
   ``publish_deadline``, which keeps it inside Ably's idempotency window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ably_bridge.errors import AblyException
from ably_bridge.rest import AblyRest
from workers.arguments import bind
from workers.budget import RetryBudget
from workers.client import ClientProvider
from workers.errors import task_error
from workers.retry import classify, countdown
from workers.settings import WorkerSettings

__all__ = ["Runner"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Call = dict[str, Any]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Runner:
    """Runs the tasks of one app: shared client, shared budget, one retry policy."""

    def __init__(
        self, settings: WorkerSettings, provider: ClientProvider, budget: RetryBudget
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.budget = budget

    def execute(
        self,
        task: Any,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        op: Callable[[AblyRest, Call], T],
        *,
        prepare: Callable[[Call], Call] | None = None,
        publish: bool = False,
    ) -> T:
        try:
            call = bind(name, args, kwargs)
        except AblyException as exc:
            log.warning("%s[%s] refused: %s", name, task.request.id, exc.message)
            raise task_error(exc) from None
        deferrals = int(call.pop("deferrals", 0))
        if prepare is not None:
            call = prepare(call)
        wait = self.budget.admit()
        if wait is not None:
            raise self._defer(task, call, deferrals, wait, publish)
        deadline_ms = None
        if publish:
            call["first_attempt_ms"] = call.get("first_attempt_ms") or _now_ms()
            deadline_ms = call["first_attempt_ms"] + int(self.settings.publish_deadline * 1000)
        try:
            value = op(self.provider.get(), call)
        except Exception as exc:
            raise self._retry_or_fail(task, exc, call, deferrals, deadline_ms) from None
        self.budget.record_success()
        return value

    def _defer(
        self, task: Any, call: Call, deferrals: int, wait: float, publish: bool
    ) -> BaseException:
        first = call.get("first_attempt_ms") if publish else None
        if first is not None:
            deadline_ms = first + int(self.settings.publish_deadline * 1000)
            if _now_ms() + wait * 1000 > deadline_ms:
                log.warning(
                    "%s[%s] not retried: Ably is still failing at the end of its "
                    "idempotent-publish window",
                    task.name,
                    task.request.id,
                )
                return task_error(
                    AblyException("Ably unavailable", 50300, 503),
                    retryable=True,
                    note="retry window exhausted",
                )
        self.budget.defer(wait)
        log.debug("%s[%s] deferred %.2fs (retry budget)", task.name, task.request.id, wait)
        retry: BaseException = task.retry(
            args=(),
            kwargs={**call, "deferrals": deferrals + 1},
            countdown=wait,
            max_retries=int(task.request.retries or 0) + 1,  # a deferral is always allowed
            throw=False,
        )
        return retry

    def _retry_or_fail(
        self,
        task: Any,
        exc: Exception,
        call: Call,
        deferrals: int,
        deadline_ms: int | None,
    ) -> BaseException:
        decision = classify(exc)
        if decision.retryable:
            self.budget.record_failure(decision.min_delay, decision.rate_limited)
        elif isinstance(exc, AblyException) and exc.status_code < 500:
            self.budget.record_success()  # Ably answered: it is up
        retries = max(0, int(task.request.retries or 0) - deferrals)
        policy = self.settings.retry
        if not decision.retryable:
            log.warning("%s[%s] failed: %s", task.name, task.request.id, decision.reason)
            return task_error(exc)
        if policy.exhausted(retries + 1):
            log.warning("%s[%s] gave up after %d retries", task.name, task.request.id, retries)
            return task_error(exc, retryable=True, note=f"gave up after {retries} retries")
        # Not before the process's backoff ends: the failed task waits with the others.
        wait = max(countdown(policy, retries, decision), self.budget.backoff_left())
        if deadline_ms is not None and _now_ms() + wait * 1000 > deadline_ms:
            log.warning(
                "%s[%s] not retried: the idempotent-publish window would be exceeded",
                task.name,
                task.request.id,
            )
            return task_error(exc, retryable=True, note="retry window exhausted")
        log.info(
            "%s[%s] retry %d in %.2fs: %s",
            task.name,
            task.request.id,
            retries + 1,
            wait,
            decision.reason,
        )
        kwargs = {**call, "deferrals": deferrals} if deferrals else dict(call)
        retry: BaseException = task.retry(
            args=(),
            kwargs=kwargs,
            countdown=wait,
            max_retries=None if policy.max_retries is None else policy.max_retries + deferrals,
            exc=task_error(exc, retryable=True),
            throw=False,
        )
        return retry
