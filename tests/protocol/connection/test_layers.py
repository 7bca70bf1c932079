"""The connection core's modules form one line of layers, each importing only those below it."""

from __future__ import annotations

import ast
from pathlib import Path

import ably_bridge

PACKAGE = Path(ably_bridge.__file__).parent / "protocol" / "connection"
PREFIX = "ably_bridge.protocol.connection."
# Bottom to top (ably_bridge/protocol/connection/base.py names the same order).
LAYERS = ["table", "base", "publishing", "states", "connecting", "auth", "routing", "core"]


def _package_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PREFIX):
            names.add((node.module or "").removeprefix(PREFIX).split(".")[0])
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path.name}: relative"
    return names


def test_every_module_is_a_known_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_each_layer_imports_only_layers_below_it() -> None:
    upward = {
        layer: sorted(n for n in _package_imports(PACKAGE / f"{layer}.py") if n not in below)
        for index, layer in enumerate(LAYERS)
        for below in [set(LAYERS[:index])]
    }
    assert {layer: names for layer, names in upward.items() if names} == {}


def test_each_layer_says_what_it_owns_and_stays_small() -> None:
    for layer in LAYERS:
        source = (PACKAGE / f"{layer}.py").read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source))
        assert docstring and len(docstring.splitlines()) >= 3, f"{layer}: no module docstring"
        assert len(source.splitlines()) < 500, f"{layer} has grown past 500 lines"
