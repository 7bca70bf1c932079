"""docs/go-parity.md: every Python name in the table exists; every row is yes or explained."""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ably_bridge import (
    AblyException,
    AblyRealtime,
    AblyRest,
    ChannelDetails,
    ChannelMode,
    ChannelState,
    ChannelStateChange,
    CipherParams,
    ClientOptions,
    ConnectionState,
    ConnectionStateChange,
    ErrorCode,
    Message,
    PresenceAction,
    PresenceMessage,
    Stats,
    TokenDetails,
    TokenParams,
    TokenRequest,
)
from ably_bridge.protocol import stats_types
from ably_bridge.protocol.stats import ChannelStatus
from ably_bridge.realtime import (
    ChannelEvent,
    ChannelOptions,
    ChannelProperties,
    ConnectionEvent,
    RecoveryKeyContext,
)
from ably_bridge.rest import AuthOptions
from ably_bridge.rest.pagination import HttpPaginatedResponse, PageResponse, PaginatedResult
from ably_bridge.transports.mock_http import MockHttpTransport

DOC = Path(__file__).resolve().parents[1] / "docs" / "go-parity.md"
STATUSES = {"yes", "different"}


@dataclasses.dataclass
class Row:
    go: str
    python: list[str]
    status: str
    notes: str


def rows() -> list[Row]:
    found = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a row needs 4 cells: {line!r}"
        go, python, status, notes = cells
        if go in ("Go API", "---") or go.startswith("**"):
            continue
        found.append(Row(go, re.findall(r"`([^`]+)`", python), status, notes))
    return found


@pytest.fixture(scope="module")
def roots() -> Iterator[dict[str, Any]]:
    """What the first part of a Python name refers to: live facades, or classes."""
    rest = AblyRest(key="app.key:secret", transport=MockHttpTransport())
    realtime = AblyRealtime(key="app.key:secret", auto_connect=False)
    rest_channel = rest.channels.get("parity")
    channel = realtime.channels.get("parity")
    page = PaginatedResult([], {}, lambda _t: None, lambda _b: [])  # type: ignore[arg-type,return-value]
    http_page = HttpPaginatedResponse(PageResponse(200, {}, [], "/x"), lambda _t: None)  # type: ignore[arg-type,return-value]
    classes = {
        cls.__name__: cls
        for cls in (
            AblyException,
            AuthOptions,
            ChannelDetails,
            ChannelEvent,
            ChannelMode,
            ChannelOptions,
            ChannelProperties,
            ChannelState,
            ChannelStateChange,
            ChannelStatus,
            CipherParams,
            ClientOptions,
            ConnectionEvent,
            ConnectionState,
            ConnectionStateChange,
            ErrorCode,
            Message,
            PresenceAction,
            PresenceMessage,
            RecoveryKeyContext,
            Stats,
            TokenDetails,
            TokenParams,
            TokenRequest,
        )
    }
    classes.update(
        {name: getattr(stats_types, name) for name in stats_types.__all__ if name != "StatsView"}
    )
    yield {
        **classes,
        "AblyException": AblyException("parity", 40000),
        "AblyRest": rest,
        "AblyRealtime": realtime,
        "Auth": rest.auth,
        "RealtimeAuth": realtime.auth,
        "RestChannels": rest.channels,
        "RestChannel": rest_channel,
        "RestPresence": rest_channel.presence,
        "Channels": realtime.channels,
        "RealtimeChannel": channel,
        "RealtimePresence": channel.presence,
        "Connection": realtime.connection,
        "PaginatedResult": page,
        "HttpPaginatedResponse": http_page,
    }
    realtime.close()
    rest.close()


def resolve(name: str, roots: dict[str, Any]) -> Any:
    """The object ``name`` (``Root.attr.attr``, ``ably_bridge.module.name``) stands for."""
    path = name.removesuffix("()").split(".")
    if path[0] == "ably_bridge":
        for split in range(len(path), 0, -1):
            try:
                target: Any = importlib.import_module(".".join(path[:split]))
            except ModuleNotFoundError:
                continue
            return _walk(target, path[split:], name)
        raise AssertionError(f"{name}: no such module")
    if path[0] not in roots:
        raise AssertionError(f"{name}: unknown root {path[0]!r}")
    return _walk(roots[path[0]], path[1:], name)


def _walk(target: Any, attrs: list[str], name: str) -> Any:
    for attr in attrs:
        if hasattr(target, attr):
            target = getattr(target, attr)
        elif dataclasses.is_dataclass(target) and attr in {
            f.name for f in dataclasses.fields(target)
        }:
            target = None  # a field without a class-level default
        else:
            raise AssertionError(f"{name}: {attr!r} does not exist")
    return target


def test_the_table_is_complete_enough_to_mean_something() -> None:
    table = rows()
    assert len(table) >= 250
    go_names = [row.go for row in table]
    assert len(go_names) == len(set(go_names)), "a Go API is listed twice"


@pytest.mark.parametrize("row", rows(), ids=lambda row: row.go)
def test_every_row_is_yes_or_an_explained_difference(row: Row) -> None:
    assert row.status in STATUSES, f"{row.go}: status {row.status!r}"
    if row.status != "yes":
        assert len(row.notes) > 10, f"{row.go}: a difference needs its reason"
    if not row.python:
        assert row.status == "different", f"{row.go}: no Python name for a 'yes' row"


@pytest.mark.parametrize("row", rows(), ids=lambda row: row.go)
def test_every_python_name_exists(row: Row, roots: dict[str, Any]) -> None:
    for name in row.python:
        resolve(name, roots)


def test_the_resolver_can_fail(roots: dict[str, Any]) -> None:
    for bad in ("AblyRest.publish", "Nope.thing", "ably_bridge.no_such_name", "Stats.bogus"):
        with pytest.raises(AssertionError):
            resolve(bad, roots)
