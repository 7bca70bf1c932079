"""Class names say which class they are: no two unrelated classes share a name.

A name found twice must be on the list below, each with the reason it is allowed.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ALLOWED = {
    # The official SDKs' names for the REST and realtime sides of one public API.
    "Channels": {"ably_bridge/rest/channels.py", "ably_bridge/realtime/channels.py"},
    # kombu finds a transport's parts by these attribute names; the emulator's are its own.
    "Channel": {
        "ably_bridge/rest/channels.py",
        "ably_bridge/emulator/channels.py",
        "workers/redis_fetch.py",
    },
    "Transport": {"ably_bridge/emulator/outbox.py", "workers/redis_fetch.py"},
    # The emulator is a server: its model of a connection / a publish is the server's.
    "Connection": {"ably_bridge/realtime/connection.py", "ably_bridge/emulator/connections.py"},
    "PublishResult": {"ably_bridge/rest/channels.py", "ably_bridge/emulator/state.py"},
}


def class_homes() -> dict[str, set[str]]:
    homes: dict[str, set[str]] = defaultdict(set)
    for package in ("ably_bridge", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    homes[node.name].add(path.relative_to(ROOT).as_posix())
    return homes


def test_no_two_modules_define_a_class_of_the_same_name() -> None:
    shared = {name: homes for name, homes in class_homes().items() if len(homes) > 1}
    unexplained = {
        name: homes for name, homes in shared.items() if homes - ALLOWED.get(name, set())
    }
    assert not unexplained, f"rename one side, or explain it in ALLOWED: {unexplained}"
