"""The package CLI offers the tools once ``ably_bridge.cli`` calls ``commands.register``."""

from __future__ import annotations

import argparse

import pytest

from ably_bridge.cli import build_parser, main
from ably_bridge.commands import TOOLS


def wired() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices) & set(TOOLS)
    return set()


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_is_a_subcommand_of_the_package_cli(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wired() == set(TOOLS)
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ably-bridge {name}")
