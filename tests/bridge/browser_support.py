"""A real headless browser for page tests: Debian's ``chromium`` over the DevTools protocol.

:class:`Chromium` starts ``chromium --headless`` with a profile of its own and
a DevTools port it picks itself (read from ``DevToolsActivePort``), opens one
page and drives it over a websocket (``websocket-client``): navigate, evaluate
JavaScript and return the value, capture a PNG screenshot. No browser is
downloaded: the test is skipped with the install command when
``/usr/bin/chromium`` is missing (``.ci/run`` installs it in CI).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

CHROMIUM = os.environ.get("ABLY_BRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots go: ``$ABLY_BRIDGE_TEST_ARTIFACTS`` or ``fallback``."""
    path = Path(os.environ.get("ABLY_BRIDGE_TEST_ARTIFACTS") or fallback)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Chromium:
    """One headless chromium with one page (see the module docstring)."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1800) -> None:
        if not Path(CHROMIUM).exists():
            pytest.skip("chromium is not installed (apt-get install -y chromium)")
        profile.mkdir(parents=True, exist_ok=True)
        self._log = (profile / "chromium.log").open("wb")
        args = [
            CHROMIUM, "--headless=new", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-dev-shm-usage",
            "--remote-debugging-port=0", "--remote-allow-origins=*",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # (root, as in CI containers, has no user namespace)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                log = (profile / "chromium.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"chromium did not start: {log}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self._next = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are skipped)."""
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting in the page for {what or expression}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
