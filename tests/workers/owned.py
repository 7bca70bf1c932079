"""Celery worker processes a worker test owns and may kill.

:func:`celery_worker` runs ``celery -A workers worker`` configured only through
the environment, in its own process group. The private redis-server a test
may kill is :class:`tests.support.redis_server.PrivateRedis` (``durable_redis``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def _passed_through() -> dict[str, str]:
    """Variables a worker inherits from the test run: the shortcut switch
    (``ABLY_BRIDGE_NO_SHORTCUTS=... pytest`` runs the workers on the public paths too)."""
    return {k: v for k, v in os.environ.items() if k == "ABLY_BRIDGE_NO_SHORTCUTS"}


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str],
    name: str,
    *,
    pool: str = "threads",
    concurrency: int = 1,
    log: Path | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A workers worker`` with ``env``; SIGKILLed with its group on exit."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [CELERY, "-A", "workers", "worker", "-P", pool, "-c", str(concurrency),
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "INFO" if log is not None else "WARNING", *extra],
        cwd=ROOT,
        env={**env, **_passed_through(), "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if log is not None:
            out.close()  # type: ignore[union-attr]
