"""Child supervision: logs, early death, SIGTERM then SIGKILL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ably_bridge.devstack.processes import Child, Supervisor


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_output_goes_to_the_log_and_an_early_exit_is_noticed(tmp_path: Path) -> None:
    sup = Supervisor()
    child = sup.start(
        Child(
            "early",
            _py("print('line 1'); print('line 2'); raise SystemExit(3)"),
            tmp_path / "a.log",
        )
    )
    deadline = time.monotonic() + 10
    while sup.died() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sup.died() is child
    assert child.exited() == 3
    assert child.tail(1) == ["line 2"]
    assert child.tail() == ["line 1", "line 2"]
    child.stop()
    assert sup.died() is None  # a stopped child is not an early death


def test_stop_sends_sigterm_then_kills_a_child_that_ignores_it(tmp_path: Path) -> None:
    polite = Child(
        "polite", _py("import time; print('up', flush=True); time.sleep(60)"), tmp_path / "p.log"
    )
    stubborn = Child(
        "stubborn",
        _py(
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)"
        ),
        tmp_path / "s.log",
    )
    sup = Supervisor()
    sup.start(polite)
    sup.start(stubborn)
    deadline = time.monotonic() + 10
    while not (polite.tail() and stubborn.tail()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(sup.pids()) == {"polite", "stubborn"}
    started = time.monotonic()
    sup.stop_all(timeout=1.0)
    assert time.monotonic() - started < 5
    assert polite.exited() == -15
    assert stubborn.exited() == -9
    assert not polite.running() and not stubborn.running()


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert Child("x", ["true"], tmp_path / "none.log").tail() == []
