"""A test-only task the broker-loss test runs across the outage (``--include`` it in a worker).

``tests.sleepy`` appends ``start`` to a file, sleeps (it is the workload that is
running when the broker dies, not a wait in the test) and appends ``end``.
"""

from __future__ import annotations

import time
from pathlib import Path

from workers import default_app

app = default_app()


@app.task(name="tests.sleepy", acks_late=True, reject_on_worker_lost=True)
def sleepy(path: str, seconds: float) -> None:
    with Path(path).open("a") as out:
        out.write("start\n")
    time.sleep(seconds)
    with Path(path).open("a") as out:
        out.write("end\n")
