"""The sans-I/O rule: nothing under ably_bridge/protocol imports I/O or clock modules."""

from __future__ import annotations

import ast
from pathlib import Path

import ably_bridge

FORBIDDEN = {
    *("socket", "threading", "time", "asyncio", "logging"),
    *("requests", "websocket", "redis", "celery"),
}
PROTOCOL = Path(ably_bridge.__file__).parent / "protocol"


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_protocol_modules_import_no_io() -> None:
    offenders = {
        path.name: sorted(_imported_roots(path) & FORBIDDEN)
        for path in sorted(PROTOCOL.glob("*.py"))
        if _imported_roots(path) & FORBIDDEN
    }
    assert offenders == {}


def test_the_rule_sees_the_realtime_core() -> None:
    names = {p.name for p in PROTOCOL.glob("*.py")}
    assert {"connection.py", "channel.py", "presence_map.py", "pending.py"} <= names
