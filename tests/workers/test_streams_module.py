"""``python -m workers.streams`` runs its module once: no runpy warning, usage on --help."""

from __future__ import annotations

import subprocess
import sys


def test_module_runs_without_a_runtime_warning() -> None:
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "workers.streams", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m workers.streams")
    assert run.stderr == ""


def test_the_stream_names_are_still_exported() -> None:
    import workers
    from workers import streams

    assert workers.StreamConsumer is streams.StreamConsumer
    assert {"StreamConfig", "StreamConsumer", "StreamEntry"} <= set(workers.__all__)
