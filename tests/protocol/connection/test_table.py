"""The connection transition table: every pair it names moves, every other pair raises,
and nothing but :meth:`ConnectionStateMachine.move` writes the connection state."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

import ably_bridge
from ably_bridge.protocol.actions import Action
from ably_bridge.protocol.connection import (
    TRANSITIONS,
    ConnectionStateMachine,
    IllegalTransition,
    Trigger,
)
from ably_bridge.protocol.events import ConnectionState
from ably_bridge.protocol.models import ProtocolMessage

from ..harness import Harness, connected_frame, err

_S = ConnectionState
CONNECTION_PACKAGE = Path(ably_bridge.__file__).parent / "protocol" / "connection"
STATE_ATTRIBUTES = frozenset({"state", "_state", "_machine"})
ALL_PAIRS = list(itertools.product(ConnectionState, Trigger))


def _machine_in(state: ConnectionState) -> ConnectionStateMachine:
    """A machine brought to ``state`` by legal moves only (INITIALIZED needs none)."""
    machine = ConnectionStateMachine()
    path = {
        _S.INITIALIZED: [],
        _S.CONNECTING: [Trigger.ATTEMPT],
        _S.CONNECTED: [Trigger.ATTEMPT, Trigger.CONNECTED],
        _S.DISCONNECTED: [Trigger.ATTEMPT, Trigger.DISCONNECT],
        _S.SUSPENDED: [Trigger.ATTEMPT, Trigger.SUSPEND],
        _S.CLOSING: [Trigger.ATTEMPT, Trigger.CLOSE],
        _S.CLOSED: [Trigger.CLOSED],
        _S.FAILED: [Trigger.ATTEMPT, Trigger.FAIL],
    }[state]
    for trigger in path:
        machine.move(trigger)
    assert machine.state == state
    return machine


@pytest.mark.parametrize(("state", "trigger"), [p for p in ALL_PAIRS if p in TRANSITIONS], ids=str)
def test_a_pair_in_the_table_moves_to_its_target(state: ConnectionState, trigger: Trigger) -> None:
    machine = _machine_in(state)
    assert machine.move(trigger) == state
    assert machine.state == TRANSITIONS[(state, trigger)]


@pytest.mark.parametrize(
    ("state", "trigger"), [p for p in ALL_PAIRS if p not in TRANSITIONS], ids=str
)
def test_a_pair_off_the_table_raises_and_leaves_the_state(
    state: ConnectionState, trigger: Trigger
) -> None:
    machine = _machine_in(state)
    with pytest.raises(IllegalTransition) as raised:
        machine.move(trigger)
    assert (raised.value.current, raised.value.trigger) == (state, trigger)
    assert state.value in str(raised.value) and trigger.value in str(raised.value)
    assert machine.state == state


def test_the_table_is_neither_empty_nor_total() -> None:
    # Both parametrized tests above must have cases, or they prove nothing.
    assert 0 < len(TRANSITIONS) < len(ALL_PAIRS)
    # Nothing leaves a state for INITIALIZED (RTN4a: only a new connection starts there).
    assert _S.INITIALIZED not in TRANSITIONS.values()


def test_the_core_state_is_read_only() -> None:
    harness = Harness()
    with pytest.raises(AttributeError):
        harness.core.state = _S.CONNECTED  # type: ignore[misc]
    assert harness.state == "initialized"


def test_the_core_moves_only_along_the_table() -> None:
    # Every state change the core emits is one of the table's (state, next) pairs.
    harness = Harness()
    harness.establish()
    harness.drop()  # DISCONNECTED, then at once CONNECTING (RTN15a)
    harness.receive(connected_frame())  # resumed
    harness.close()
    harness.receive(ProtocolMessage(Action.CLOSED))
    harness.connect()
    harness.receive(ProtocolMessage(Action.ERROR, error=err(80000, 400)))
    assert harness.state == "failed"
    allowed = {(state, target) for (state, _trigger), target in TRANSITIONS.items()}
    changes = [(c.previous, c.current) for c in harness.conn_changes()]
    assert changes, "the scenario emitted no state change"
    assert set(changes) <= allowed


# -- the state is written in one place only ---------------------------------------------------
def _state_writes(source: str) -> list[str]:
    """Where ``source`` assigns an attribute in STATE_ATTRIBUTES: ``Class.function`` names."""
    writes: list[str] = []

    def targets(node: ast.AST) -> list[ast.expr]:
        if isinstance(node, ast.Assign):
            return [t for target in node.targets for t in _flatten(target)]
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            return _flatten(node.target)
        return []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, [*scope, child.name])
                continue
            for target in targets(child):
                if isinstance(target, ast.Attribute) and target.attr in STATE_ATTRIBUTES:
                    writes.append(".".join(scope) + f":{target.attr}")
            if isinstance(child, ast.Call) and getattr(child.func, "id", None) == "setattr":
                writes.append(".".join(scope) + ":setattr")
            visit(child, scope)

    visit(ast.parse(source), [])
    return writes


def _flatten(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Tuple | ast.List):
        return [t for element in target.elts for t in _flatten(element)]
    return [target]


def test_only_move_writes_the_connection_state() -> None:
    writes = {
        path.name: _state_writes(path.read_text(encoding="utf-8"))
        for path in sorted(CONNECTION_PACKAGE.glob("*.py"))
    }
    found = {name: w for name, w in writes.items() if w}
    assert found == {
        "base.py": ["ConnectionBase.__init__:_machine"],  # the machine is created once
        "table.py": ["ConnectionStateMachine.move:_state"],  # and only move() changes it
    }


def test_the_write_check_can_fail() -> None:
    sample = (
        "class C:\n"
        "    def f(self):\n"
        "        self.state = 1\n"
        "        a, self._state = 1, 2\n"
        "        if True:\n"
        "            setattr(self, 'state', 3)\n"
        "    def g(self):\n"
        "        self.other = 4\n"
        "x.state: int = 5\n"
    )
    assert _state_writes(sample) == ["C.f:state", "C.f:_state", "C.f:setattr", ":state"]


def test_the_architecture_document_shows_this_table() -> None:
    # docs/architecture.md, "The connection transition table": one row per state.
    doc = (Path(ably_bridge.__file__).parents[1] / "docs" / "architecture.md").read_text("utf-8")
    header = "| from \\ trigger | " + " | ".join(t.name for t in Trigger) + " |"
    assert header in doc
    for state in ConnectionState:
        cells = [TRANSITIONS[(state, t)].name if (state, t) in TRANSITIONS else "" for t in Trigger]
        row = " | ".join([f"| {state.name}", *cells]) + " |"
        assert row.replace("|  |", "| |").replace("|  |", "| |") in doc, row
