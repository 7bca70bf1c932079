"""Every module of the sans-I/O core says what it owns and stays under 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ably_bridge

PROTOCOL = Path(ably_bridge.__file__).parent / "protocol"
MODULES = sorted(PROTOCOL.glob("**/*.py"))
MAX_LINES = 500


def test_the_glob_sees_the_subpackages() -> None:
    names = {str(p.relative_to(PROTOCOL)) for p in MODULES}
    assert {"codec.py", "channel_presence.py", "connection/table.py", "connection/core.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROTOCOL)))
def test_module_has_a_docstring_and_stays_small(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(source)), "no module docstring saying what it owns"
    assert len(source.splitlines()) < MAX_LINES, "past 500 lines: split it along a seam"
