"""The ``ably-bridge`` command line: every subcommand's help, version, and a real emulator run."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ably_bridge import __version__
from ably_bridge.cli import build_parser, main

SUBCOMMANDS = [
    "emulator",
    "dev",
    "check-config",
    "run",
    "publish",
    "subscribe",
    "history",
    "presence",
    "stats",
    "token",
    "deadletter",
    "workers",
    "version",
]


def test_every_subcommand_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_explains_itself(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: ably-bridge {name}" in out
    if name == "emulator":
        assert "--port" in out
        assert "--keys-file" in out
    if name == "dev":
        for option in ("--port", "--redis-url", "--no-publisher", "--duration", "--json"):
            assert option in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"ably-bridge {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["frobnicate"])
    assert info.value.code == 2


def test_emulator_subcommand_serves_until_sigterm(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ably_bridge.cli",
            "emulator",
            "--port",
            "0",
            "--keys-file",
            str(keys_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        while not keys_file.exists() or not keys_file.read_text().strip().endswith("}"):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "emulator did not write its keys file"
            time.sleep(0.05)
        keys = json.loads(keys_file.read_text())
        endpoint = keys["endpoint"]
        assert endpoint.startswith("http://127.0.0.1:")
        root_key = keys["keys"][0]
        assert root_key.startswith(keys["appId"] + ".")
        reply = requests.get(f"{endpoint}/time", timeout=5)
        assert reply.status_code == 200
        assert isinstance(reply.json()[0], int)
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "root key:" in out
        assert endpoint in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


EXAMPLE = Path(__file__).resolve().parents[1] / "ably_bridge" / "bridge" / "example.yaml"


def test_check_config_accepts_the_shipped_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLY_KEY", "app.key:s3cr3t")
    monkeypatch.setenv("CHAT_CIPHER_KEY", base64.b64encode(bytes(range(32))).decode())
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_config_points_at_the_offending_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABLY_KEY", "app.key:s3cr3t")
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - id: r\n    channels: [lobby]\n    targets: [{type: celery}]\n")
    assert main(["check-config", str(bad), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    assert any("routes[0].targets[0]" in problem for problem in result["problems"])
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml" in capsys.readouterr().err
