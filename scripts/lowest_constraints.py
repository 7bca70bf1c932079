"""Print pip constraints pinning every runtime dependency at its declared lower bound.

Usage: ``python3 scripts/lowest_constraints.py [EXTRAS...]`` (default: ``bridge
emulator``). Reads pyproject.toml's ``[project] dependencies`` and the named
optional extras and prints one ``name==version`` line per requirement, the
version being its ``>=`` bound. ``make test-lowest`` installs the project with
these constraints into a second venv and runs the sink and transport tests
there, so every lower bound in pyproject.toml is a tested one
(docs/dependencies.md).

A requirement without a ``>=`` bound, or without an upper bound (``<``), is an
error: every dependency must have both. ``--check`` only checks that;
``--runner`` prints the test runner's requirements (pytest, pytest-timeout).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"lowest_constraints: no extra {extra!r} in pyproject.toml")
        found.extend(r for r in optional[extra] if not r.startswith("ably-bridge"))
    return found


def bounds(requirement: str) -> tuple[str, str, str]:
    """(name, lower bound, upper bound) of one requirement string."""
    text = requirement.split(";", 1)[0].split("#", 1)[0]
    match = _REQUIREMENT.match(text)
    if match is None:
        raise SystemExit(f"lowest_constraints: cannot read requirement {requirement!r}")
    name, _, spec = match.groups()
    low = high = ""
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part.startswith(">="):
            low = part[2:].strip()
        elif part.startswith("<") and not part.startswith("<="):
            high = part[1:].strip()
    if not low or not high:
        raise SystemExit(
            f"lowest_constraints: {requirement!r} needs a lower (>=) and an upper (<) bound"
        )
    return name, low, high


# The test runner the lowest venv needs, as pyproject's dev extra declares it.
RUNNER = ("pytest", "pytest-timeout")


def runner() -> list[str]:
    dev = requirements(["dev"])
    return [r.split("#", 1)[0].strip() for r in dev if bounds(r)[0] in RUNNER]


def main(argv: list[str]) -> int:
    if "--runner" in argv:
        print(" ".join(runner()))
        return 0
    check = "--check" in argv
    extras = [a for a in argv if not a.startswith("--")] or ["bridge", "emulator"]
    lines = []
    for requirement in requirements(extras):
        name, low, _ = bounds(requirement)
        lines.append(f"{name}=={low}")
    if not check:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
