"""Fixtures for the operator tools: one emulator per session, tools run in-process.

``run_tool(*argv)`` runs ``ably_bridge.commands.main`` with the connection
options of the emulator appended and returns ``(exit code, stdout, stderr)``.
The API key comes from ``ABLY_KEY`` (set per test), as an operator would set it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ably_bridge.commands import main
from ably_bridge.emulator import Emulator


@dataclass
class Result:
    code: int
    out: str
    err: str


RunTool = Callable[..., Result]


@pytest.fixture
def connection(emulator: Emulator) -> list[str]:
    """The connection options of the emulator (the key comes from the environment)."""
    return ["--endpoint", "127.0.0.1", "--port", str(emulator.port), "--no-tls"]


@pytest.fixture
def ably_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """ABLY_KEY set to the emulator's root key; the other ABLY_* variables cleared."""
    for name in (
        "ABLY_KEY_FILE",
        "ABLY_ENDPOINT",
        "ABLY_PORT",
        "ABLY_TLS",
        "ABLY_USE_BINARY_PROTOCOL",
        "ABLY_CIPHER_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ABLY_KEY", emulator.root_key)
    return emulator.root_key


@pytest.fixture
def run_tool(ably_env: str, connection: list[str], capsys: pytest.CaptureFixture[str]) -> RunTool:
    def run(*argv: str, connect: bool = True) -> Result:
        capsys.readouterr()
        code = main([*argv, *(connection if connect else [])])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
