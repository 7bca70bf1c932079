"""Server wiring: TLS, restart keeping apps, the CLI entry point."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import requests
import websocket

from ably_bridge.emulator import Emulator
from ably_bridge.emulator.server import exposure_warning
from tests.support.wait import eventually

from .conftest import basic


def test_tls_serves_https_and_wss(tmp_path: Path) -> None:
    with Emulator(tls=True, cert_dir=tmp_path) as emu:
        assert emu.url.startswith("https://") and emu.ca_file is not None
        r = requests.get(emu.url + "/time", verify=str(emu.ca_file), timeout=5)
        assert r.ok
        ws = websocket.create_connection(
            f"{emu.ws_url}/?format=json&key={emu.root_key}",
            sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(emu.ca_file)},
            timeout=5,
        )
        assert json.loads(ws.recv())["action"] == 4
        ws.close()


def test_restart_keeps_apps_and_history() -> None:
    with Emulator() as emu:
        url = f"{emu.url}/channels/keep/messages"
        assert requests.post(url, json={"data": "x"}, auth=basic(emu.root_key), timeout=5).ok
        port = emu.port
        emu.restart()
        assert emu.port == port
        got = requests.get(url, auth=basic(emu.root_key), timeout=5).json()
        assert got[0]["data"] == "x"


def test_cli_prints_endpoint_and_writes_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    argv = [sys.executable, "-m", "ably_bridge.emulator", "--port", "0"]
    proc = subprocess.Popen(
        [*argv, "--keys-file", str(keys_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        data = eventually(lambda: keys_file.exists() and json.loads(keys_file.read_text() or "{}"))
        assert data["keys"][0].startswith(data["appId"] + ".")
        assert requests.get(data["endpoint"] + "/time", timeout=5).ok
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_keys_file_is_private_and_loopback_quiet(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text("old")
    keys_file.chmod(0o644)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ably_bridge.emulator",
            "--port",
            "0",
            "--keys-file",
            str(keys_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(
            lambda: keys_file.read_text().startswith("{") and json.loads(keys_file.read_text())
        )
        assert keys_file.stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "reachable from other machines" not in err


def test_exposure_warning_beyond_loopback() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.1", "devbox.example"):
        warning = exposure_warning(host)
        assert warning is not None and host in warning and "/_emulator" in warning
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host) is None
