"""``--handler``: loading the user's function, and what a call keeps (output, value, error)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from ably_bridge.devstack.handler import (
    HandlerError,
    HandlerResult,
    call_handler,
    check_handler,
    load_handler,
)


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_a_module_in_the_base_directory_is_loaded(tmp_path: Path) -> None:
    _write(tmp_path, "hd_mod_a.py", "def handle(event):\n    return event.data * 2\n")
    check_handler("hd_mod_a:handle", tmp_path)
    function = load_handler("hd_mod_a:handle", tmp_path)
    assert function(SimpleNamespace(data=21)) == 42
    sys.modules.pop("hd_mod_a", None)


def test_a_file_path_is_loaded(tmp_path: Path) -> None:
    _write(tmp_path, "hd_file_b.py", "def go(event):\n    return 'ok'\n")
    check_handler("hd_file_b.py:go", tmp_path)
    assert load_handler("hd_file_b.py:go", tmp_path)(None) == "ok"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected MODULE:FUNCTION"),
        (":handle", "expected MODULE:FUNCTION"),
        ("mod:", "expected MODULE:FUNCTION"),
        ("hd_missing_module_x:handle", "no module named 'hd_missing_module_x'"),
        ("missing_file.py:handle", "no file"),
    ],
)
def test_bad_specs_say_what_is_wrong(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(HandlerError, match=message):
        check_handler(spec, tmp_path)
    with pytest.raises(HandlerError, match=message):
        load_handler(spec, tmp_path)


def test_a_missing_function_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "hd_mod_c.py", "value = 1\n")
    with pytest.raises(HandlerError, match="has no function 'handle'"):
        load_handler("hd_mod_c:handle", tmp_path)
    with pytest.raises(HandlerError, match="has no function 'value'"):
        load_handler("hd_mod_c:value", tmp_path)  # not callable
    sys.modules.pop("hd_mod_c", None)


def test_a_call_keeps_output_and_return_value() -> None:
    def handler(event: object) -> int:
        print("got", event)
        return 7

    result = call_handler("m:handler", handler, "e1")
    assert result == HandlerResult("m:handler", output="got e1\n", returned="7")
    assert result.as_dict()["error"] is None


def test_a_raising_handler_is_reported_with_its_traceback() -> None:
    def handler(event: object) -> None:
        print("before")
        raise ValueError("bad data")

    result = call_handler("m:handler", handler, None)
    assert result.error == "ValueError: bad data"
    assert result.output.startswith("before\n")
    assert "Traceback" in result.output and "bad data" in result.output
    assert result.returned is None


def test_output_is_captured_per_thread() -> None:
    barrier = threading.Barrier(2)
    results: dict[str, HandlerResult] = {}

    def handler(name: str) -> None:
        print(name)
        barrier.wait(timeout=5)  # both threads are inside a capture at once
        for _ in range(49):
            print(name)

    def run(name: str) -> None:
        results[name] = call_handler("h", handler, name)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results["a"].output == "a\n" * 50
    assert results["b"].output == "b\n" * 50
    print("not captured")  # the real stdout is back for this thread


def test_long_output_is_cut() -> None:
    result = call_handler("h", lambda _e: print("x" * 5000), None)
    assert len(result.output) == 2000
