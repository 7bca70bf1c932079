"""Mutable messages: update, delete and append a published message; its versions (TM5, RSL11-15).

A message keeps its ``serial`` (and ``id``) for life; each operation makes a
new *version* with its own ``version.serial`` (a fresh channel serial, which
the publisher gets back as ``versionSerial``), ``version.timestamp`` and the
operation's ``clientId`` / ``description`` / ``metadata``:

* update (action 1) replaces the fields it carries (``data``, ``encoding``,
  ``name``, ``extras``) and keeps the others;
* delete (action 2) does the same and marks the message deleted;
* append (action 5) adds its ``data`` to the end of the message's. The stored
  latest version is then an update holding the whole data; subscribers get
  the append itself (only the added data), as Ably sends it.

History and ``GET .../messages/<serial>`` show the latest version; ``.../versions``
lists them all, the original (action 0) first. Operations need a channel in a
namespace with ``mutableMessages`` (93002 otherwise) and the
``message-update-*`` / ``message-delete-*`` capability (``-own`` only for the
caller's own messages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import capability as caps
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.names import parse_channel_name

if TYPE_CHECKING:
    from ably_bridge.emulator.apps import App
    from ably_bridge.emulator.channels import Channel
    from ably_bridge.emulator.connections import Connection
    from ably_bridge.emulator.state import Credentials, EmulatorState

CREATE, UPDATE, DELETE, APPEND = 0, 1, 2, 5
_NAMES = {"message.create": 0, "message.update": 1, "message.delete": 2, "message.append": 5}
OPERATIONS = frozenset({UPDATE, DELETE, APPEND})
_REPLACEABLE = ("name", "data", "encoding", "extras")


def action_of(item: dict[str, Any]) -> int:
    """The Message action as a number (strings such as ``message.update`` accepted)."""
    action = item.get("action", CREATE)
    if isinstance(action, str):
        action = _NAMES.get(action, -1)
    if not isinstance(action, int) or isinstance(action, bool) or action < 0:
        raise error(40003, "invalid message action")
    return action


def is_operation(item: Any) -> bool:
    return isinstance(item, dict) and action_of(item) in OPERATIONS


def mutable_allowed(app: App, channel_name: str) -> bool:
    """Does the channel's namespace have the mutable-messages rule?"""
    namespace = channel_name.split(":", 1)[0] if ":" in channel_name else None
    return (
        any(n.get("id") == namespace and n.get("mutableMessages") for n in app.namespaces)
        if namespace
        else False
    )


def versions_of(channel: Channel, serial: str) -> list[dict[str, Any]]:
    """Every version of the message ``serial``, oldest first (40400 when unknown)."""
    known = channel.versions.get(serial)
    if known is not None:
        return known
    for message in channel.history:
        if message.get("serial") == serial:
            original = dict(message, action=CREATE)
            original.setdefault(
                "version", {"serial": serial, "timestamp": message.get("timestamp")}
            )
            return [original]
    raise error(40400, f"no message with serial {serial[:40]!r}", 404)


def latest(channel: Channel, serial: str) -> dict[str, Any]:
    found = versions_of(channel, serial)[-1]
    return {k: v for k, v in found.items() if k != "delta"}


def _check_rights(creds: Credentials, resource: str, action: int, owner: Any, caller: Any) -> None:
    kind = "delete" if action == DELETE else "update"
    ops = caps.operations_for(creds.capability, resource)
    if f"message-{kind}-any" in ops:
        return
    if f"message-{kind}-own" in ops:
        if caller is None:
            raise error(40166, f"an unidentified client cannot {kind} its own messages")
        if owner == caller:
            return
    raise error(40160, f"message-{kind} not permitted on {resource!r}")


def _appended(base: Any, extra: Any) -> Any:
    if isinstance(base, str) and isinstance(extra, str):
        return base + extra
    if isinstance(base, bytes) and isinstance(extra, bytes):
        return base + extra
    if base is None:
        return extra
    raise error(40013, "append needs data of the same type as the message's")


def apply(
    state: EmulatorState,
    creds: Credentials,
    channel_name: str,
    item: dict[str, Any],
    *,
    conn: Connection | None,
    identity: str | None,
) -> str:
    """Apply one update/delete/append ``item`` (it names the message by ``serial``).

    Returns the new version's serial; subscribers get the new version.
    """
    parsed = parse_channel_name(channel_name)
    if not mutable_allowed(creds.app, parsed.base):
        raise error(93002, "message updates and deletes are not enabled on this channel", 400)
    serial = item.get("serial")
    if not isinstance(serial, str) or not serial:
        raise error(40003, "the message to change is named by its serial")
    action = action_of(item)
    if action not in OPERATIONS:
        raise error(40003, "a publish that changes messages holds only updates, deletes, appends")
    channel = creds.app.channel(parsed.base)
    versions = versions_of(channel, serial)
    current = versions[-1]
    _check_rights(creds, parsed.resource, action, current.get("clientId"), identity)
    now = state.now_ms()
    given = item.get("version")
    operation: dict[str, Any] = given if isinstance(given, dict) else {}
    version_serial = channel.next_serial()
    version: dict[str, Any] = {"serial": version_serial, "timestamp": now}
    op_client = operation.get("clientId") or (identity if identity not in (None, "*") else None)
    if op_client is not None:
        version["clientId"] = op_client
    for key in ("description", "metadata"):
        if operation.get(key) is not None:
            version[key] = operation[key]
    stored = {k: v for k, v in current.items() if k != "version"}
    stored.update(action=UPDATE if action == APPEND else action, version=version)
    announced: dict[str, Any]
    if action == APPEND:
        stored["data"] = _appended(current.get("data"), item.get("data"))
        announced = {k: v for k, v in stored.items() if k not in ("data", "encoding")}
        announced.update(action=APPEND, data=item.get("data"))
        if item.get("encoding"):
            announced["encoding"] = item["encoding"]
    else:
        for key in _REPLACEABLE:
            if key in item and item[key] is not None:
                stored[key] = item[key]
        if action == DELETE and "data" not in item:
            stored.pop("data", None)
            stored.pop("encoding", None)
        announced = stored
    if conn is not None:
        announced = dict(announced, connectionId=conn.id)
    if channel.versions.get(serial) is None:
        channel.versions[serial] = versions
    versions.append(stored)
    for index, message in enumerate(channel.history):
        if message.get("serial") == serial:
            channel.history[index] = stored
            break
    channel.last_activity_ms = now
    state.emit_message(channel, announced, conn.id if conn is not None else None)
    return version_serial
