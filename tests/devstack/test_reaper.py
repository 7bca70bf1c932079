"""The reaper: children of a killed dev stack stop; an orderly run leaves nothing to reap."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ably_bridge.devstack.reaper import reap, serve


def _gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie child of this test process still answers kill(0): reap it
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = 0
        if done == pid:
            return True
        time.sleep(0.05)
    return False


def _sleeper(*, ignore_term: bool = False) -> subprocess.Popen[bytes]:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('up', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"  # its handlers are in place
    return proc


def test_bye_ends_the_reaper_without_touching_the_groups() -> None:
    child = _sleeper()
    try:
        assert serve(io.BytesIO(f"+{child.pid}\nbye\n".encode()), grace=0.5) == 0
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_end_of_input_without_bye_stops_every_group_it_was_told_about() -> None:
    polite, stubborn, other = _sleeper(), _sleeper(ignore_term=True), _sleeper()
    try:
        lines = f"+{polite.pid}\n+{stubborn.pid}\nnoise\n+x\n".encode()
        assert serve(io.BytesIO(lines), grace=0.5) == 1
        assert polite.wait(timeout=10) == -signal.SIGTERM
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None  # never named: left alone
    finally:
        for proc in (polite, stubborn, other):
            proc.kill()
            proc.wait()


def test_reap_of_groups_already_gone_is_quiet() -> None:
    child = _sleeper()
    child.kill()
    child.wait()
    assert reap({child.pid}, grace=0.1) == set()


PARENT = r"""
import json, sys, time
from pathlib import Path
from ably_bridge.devstack.processes import Child, Supervisor
sup = Supervisor(reaper=True)
child = sup.start(Child("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                        Path(sys.argv[1])))
print(json.dumps({"child": child.pid, "reaper": sup.reaper_pid}), flush=True)
time.sleep(120)
"""


def test_children_of_a_sigkilled_supervisor_stop(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "child.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids = json.loads(parent.stdout.readline())
    try:
        os.kill(pids["child"], 0)  # running while its supervisor lives
        parent.kill()  # SIGKILL: no handler of the supervisor runs
        parent.wait()
        assert _gone(pids["child"]), "the child outlived its killed supervisor"
        assert _gone(pids["reaper"])
    finally:
        for pid in (pids["child"], pids["reaper"]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_an_orderly_stop_all_ends_the_reaper(tmp_path: Path) -> None:
    from ably_bridge.devstack.processes import Child, Supervisor

    sup = Supervisor(reaper=True)
    sup.start(Child("c", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "c.log"))
    reaper_pid = sup.reaper_pid
    assert reaper_pid is not None
    sup.stop_all(timeout=2)
    assert sup.reaper_pid is None
    assert _gone(reaper_pid, within=1)  # close() waited for it: already gone
