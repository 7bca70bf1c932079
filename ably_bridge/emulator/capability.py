"""Capability parsing, resource matching and intersection (ably-protocol.md 6.4).

Pure functions over ``Capability`` values (resource -> set of operations):

* :func:`parse` turns JSON text or a mapping into a ``Capability``;
* :func:`resource_matches` applies Ably's wildcard rules to one resource;
* :func:`operations_for` is the union of operations a capability grants on a
  channel (``*`` expanded), :func:`allows` checks one operation;
* :func:`covers` says whether one capability contains another;
* :func:`intersect` narrows a requested token capability to what its key holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ably_bridge.emulator.errors import error
from ably_bridge.protocol.tokens import canonical_capability

Capability = dict[str, frozenset[str]]

ALL_OPERATIONS = frozenset(
    {
        "publish",
        "subscribe",
        "presence",
        "history",
        "stats",
        "channel-metadata",
        "push-subscribe",
        "push-admin",
        "privileged-headers",
        "object-subscribe",
        "object-publish",
        "annotation-subscribe",
        "annotation-publish",
        "message-update-own",
        "message-update-any",
        "message-delete-own",
        "message-delete-any",
    }
)

_TYPED_PREFIXES = ("[meta]", "[queue]")


def parse(capability: str | Mapping[str, Any] | None) -> Capability:
    """Parse a capability (JSON text or mapping); empty/None means all rights on ``*``."""
    if capability is None or capability == "" or capability == {}:
        return {"*": frozenset({"*"})}
    try:
        text = canonical_capability(capability)
    except Exception as exc:
        raise error(40000, f"invalid capability: {exc}") from exc
    parsed: dict[str, list[str]] = json.loads(text)
    for resource, ops in parsed.items():
        if not ops:
            raise error(40000, f"invalid capability: no operations for {resource[:40]!r}", 400)
        unknown = [op for op in ops if op != "*" and op not in ALL_OPERATIONS]
        if unknown:
            raise error(40000, f"invalid capability: unknown operation {unknown[0][:40]!r}", 400)
        if "*" in ops and len(ops) > 1:
            raise error(
                40000, f"invalid capability: '*' with other operations on {resource[:40]!r}", 400
            )
    return {resource: frozenset(ops) for resource, ops in parsed.items()}


def to_json(capability: Capability) -> str:
    """Canonical JSON text of a capability (sorted resources and operations)."""
    return canonical_capability({r: sorted(ops) for r, ops in capability.items()})


def resource_type(channel: str) -> tuple[str, str]:
    """Split a channel name into its resource type prefix (``[meta]`` ...) and the rest.

    Other qualifiers (``[?params]``, ``[filter=...]``) are not resource types:
    the capability applies to the underlying channel name.
    """
    for prefix in _TYPED_PREFIXES:
        if channel.startswith(prefix):
            return prefix, channel[len(prefix) :]
    if channel.startswith("["):
        end = channel.find("]")
        if end > 0:
            qualifier = channel[1:end]
            if qualifier.startswith("meta?"):
                return "[meta]", channel[end + 1 :]
            return "", channel[end + 1 :]
    return "", channel


def _segments_match(pattern: str, name: str) -> bool:
    p_parts = pattern.split(":")
    n_parts = name.split(":")
    if p_parts[-1] == "*":
        # A trailing ``*`` swallows one or more trailing segments.
        head = p_parts[:-1]
        if len(n_parts) < len(p_parts):
            return False
        return all(p == "*" or p == n for p, n in zip(head, n_parts, strict=False))
    if len(p_parts) != len(n_parts):
        return False
    return all(p == "*" or p == n for p, n in zip(p_parts, n_parts, strict=True))


def resource_matches(pattern: str, channel: str) -> bool:
    """Does capability resource ``pattern`` cover ``channel``? (ably-protocol.md 6.4)."""
    if pattern == "[*]*":
        return True
    p_type, p_rest = resource_type(pattern) if pattern.startswith("[") else ("", pattern)
    c_type, c_rest = resource_type(channel)
    if p_type != c_type:
        return False
    return _segments_match(p_rest, c_rest)


def operations_for(capability: Capability, channel: str) -> frozenset[str]:
    """Every operation ``capability`` grants on ``channel`` (``*`` expanded)."""
    ops: set[str] = set()
    for pattern, granted in capability.items():
        if resource_matches(pattern, channel):
            ops |= ALL_OPERATIONS if "*" in granted else granted
    return frozenset(ops)


def allows(capability: Capability, channel: str, operation: str) -> bool:
    """True when ``capability`` grants ``operation`` on ``channel``."""
    return operation in operations_for(capability, channel)


def allows_app_wide(capability: Capability, operation: str) -> bool:
    """Operations such as ``stats`` are granted only on ``*`` or ``[*]*``."""
    for pattern in ("*", "[*]*"):
        granted = capability.get(pattern, frozenset())
        if "*" in granted or operation in granted:
            return True
    return False


def covers(outer: Capability, inner: Capability) -> bool:
    """True when every operation ``inner`` grants on each of its resources ``outer`` grants too.

    A resource of ``inner`` is covered by the patterns of ``outer`` that match
    it as a name (``*`` in ``outer`` covers ``foo:*``); ``[*]*`` needs ``[*]*``.
    """
    for resource, ops in inner.items():
        wanted = ALL_OPERATIONS if "*" in ops else ops
        held: set[str] = set()
        for pattern, granted in outer.items():
            if resource == "[*]*" and pattern != "[*]*":
                continue
            if pattern == resource or resource_matches(pattern, resource):
                held |= ALL_OPERATIONS if "*" in granted else granted
        if not wanted <= held:
            return False
    return True


def _intersect_ops(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    if "*" in a:
        return b
    if "*" in b:
        return a
    return a & b


def intersect(requested: Capability, key: Capability) -> Capability:
    """The part of ``requested`` that ``key`` also grants; may be empty."""
    out: dict[str, set[str]] = {}
    for r_res, r_ops in requested.items():
        for k_res, k_ops in key.items():
            if resource_matches(k_res, r_res):
                target = r_res
            elif resource_matches(r_res, k_res):
                target = k_res
            else:
                continue
            ops = _intersect_ops(r_ops, k_ops)
            if ops:
                out.setdefault(target, set()).update(ops)
    return {res: frozenset({"*"}) if "*" in ops else frozenset(ops) for res, ops in out.items()}
