"""The sans-I/O rule: protocol/, encoding/ and bridge/core/ never pull in sockets, threads, clocks.

Two independent checks, over every module found by globbing (so new modules
are covered without touching this file):

1. Static: the import statements of each file (anywhere in the file, including
   function bodies) name no forbidden module (I/O, threads, clocks, ``logging``)
   and no higher layer of the package.
2. Dynamic: each module is imported in a fresh interpreter with a stub
   ``ably_bridge`` package (so ``ably_bridge/__init__.py``, which loads the
   clock and therefore ``threading``, does not run). A meta-path hook records
   who imported what; every forbidden module that appears must trace back to
   a declared third-party dependency (pycryptodome loads its C code through
   ctypes, which imports ``subprocess`` and ``threading``), never to our code
   or to a stdlib module our code chose (``logging`` would bring ``threading``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ably_bridge"
SANS_IO_FILES = sorted(
    [
        *PACKAGE.glob("protocol/**/*.py"),
        *PACKAGE.glob("encoding/*.py"),
        *PACKAGE.glob("bridge/core/*.py"),
    ]
)

FORBIDDEN = frozenset(
    {
        "socket",
        "ssl",
        "select",
        "selectors",
        "threading",
        "_thread",
        "time",
        "subprocess",
        "asyncio",
        "requests",
        "urllib3",
        "websocket",
        "redis",
        "celery",
        "kombu",
        "aiohttp",
        "logging",  # log records leave the core as values (e.g. recover_error); drivers log
    }
)
# Layers above the sans-I/O core (ARCHITECTURE.md: dependencies point down only).
FORBIDDEN_INTERNAL = (
    "ably_bridge.clock",
    "ably_bridge.transports",
    "ably_bridge.rest",
    "ably_bridge.realtime",
    "ably_bridge.bridge",
    "ably_bridge.emulator",
    "ably_bridge.cli",
    "workers",
)
# The bridge's core (ably_bridge/bridge/core/) may import itself (and the layers below).
ALLOWED_INTERNAL = ("ably_bridge.bridge.core",)
# Third-party dependencies whose own imports are not ours to police.
TRUSTED_DEPENDENCIES = frozenset({"Crypto", "msgpack"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path: Path, module: str) -> list[str]:
    """Absolute names of every module ``path`` imports (``module`` is its dotted name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            names.append(base)
            # "from pkg import name" may import the submodule pkg.name
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_glob_finds_the_core_modules() -> None:
    names = {_module_name(p) for p in SANS_IO_FILES}
    assert {
        "ably_bridge.protocol",
        "ably_bridge.protocol.models",
        "ably_bridge.protocol.fields",
        "ably_bridge.protocol.messages",
        "ably_bridge.protocol.frames",
        "ably_bridge.protocol.codec",
        "ably_bridge.protocol.connection",
        "ably_bridge.protocol.connection.core",
        "ably_bridge.protocol.connection.table",
        "ably_bridge.protocol.connection.base",
        "ably_bridge.protocol.connection.publishing",
        "ably_bridge.protocol.connection.states",
        "ably_bridge.protocol.connection.connecting",
        "ably_bridge.protocol.connection.auth",
        "ably_bridge.protocol.connection.routing",
        "ably_bridge.protocol.channel",
        "ably_bridge.protocol.channel_presence",
        "ably_bridge.protocol.pending",
        "ably_bridge.encoding",
        "ably_bridge.encoding.crypto",
        "ably_bridge.encoding.payload",
        "ably_bridge.bridge.core",
        "ably_bridge.bridge.core.position",
        "ably_bridge.bridge.core.start_points",
        "ably_bridge.bridge.core.lifecycle",
        "ably_bridge.bridge.core.backfill_plan",
    } <= names


@pytest.mark.parametrize("path", SANS_IO_FILES, ids=lambda p: _module_name(p))
def test_static_imports_stay_sans_io(path: Path) -> None:
    offending = [
        name
        for name in _imported_names(path, _module_name(path))
        if name.split(".")[0] in FORBIDDEN
        or (
            any(name == layer or name.startswith(layer + ".") for layer in FORBIDDEN_INTERNAL)
            and not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_INTERNAL)
        )
    ]
    assert not offending, f"{_module_name(path)} imports {offending}"


def test_static_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, logging\nfrom time import monotonic\ndef f():\n    import socket.x\n"
        "from ..clock import Clock\nfrom .. import transports\n"
    )
    names = set(_imported_names(sample, "ably_bridge.protocol.sample"))
    assert {"logging", "time", "socket.x", "ably_bridge.clock", "ably_bridge.transports"} <= names


_PROBE = r"""
import importlib, importlib.abc, json, sys, types

root, target = sys.argv[1], sys.argv[2]
stub = types.ModuleType("ably_bridge")
stub.__path__ = [root + "/ably_bridge"]
sys.modules["ably_bridge"] = stub

importer_of = {}

def _importer():
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (frame.f_code.co_filename.startswith("<frozen importlib")
                or name == "importlib" or name.startswith("importlib.")):
            return name
        frame = frame.f_back
    return None

class Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        importer_of.setdefault(fullname, _importer())
        return None

before = set(sys.modules)
sys.meta_path.insert(0, Recorder())
importlib.import_module(target)
new = sorted(set(sys.modules) - before)
print(json.dumps({"new": new, "importer_of": importer_of}))
"""


def _probe(module: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT), module],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    probe: dict[str, object] = json.loads(result.stdout)
    return probe


def _chain(name: str, importer_of: dict[str, str | None]) -> list[str]:
    chain = [name]
    current = importer_of.get(name)
    while current and current not in chain:
        chain.append(current)
        current = importer_of.get(current)
    return chain


@pytest.mark.parametrize("path", SANS_IO_FILES, ids=lambda p: _module_name(p))
def test_importing_pulls_in_no_io_modules(path: Path) -> None:
    module = _module_name(path)
    probe = _probe(module)
    new = probe["new"]
    importer_of = probe["importer_of"]
    assert isinstance(new, list)
    assert isinstance(importer_of, dict)
    assert module in new
    assert "ably_bridge.clock" not in new
    problems = []
    for name in new:
        if name.split(".")[0] not in FORBIDDEN:
            continue
        chain = _chain(name, importer_of)
        if not any(link.split(".")[0] in TRUSTED_DEPENDENCIES for link in chain):
            problems.append(" <- ".join(chain))
    assert not problems, f"importing {module} loaded: {problems}"


def test_dynamic_probe_can_fail() -> None:
    # logging imports threading: the probe must attribute it to logging, not a trusted dep.
    probe = _probe("logging")
    importer_of = probe["importer_of"]
    assert isinstance(importer_of, dict)
    assert "threading" in probe["new"]  # type: ignore[operator]
    chain = _chain("threading", importer_of)
    assert "logging" in chain
    assert not any(link.split(".")[0] in TRUSTED_DEPENDENCIES for link in chain)
