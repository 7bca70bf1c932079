"""The fence around every place ably-bridge reaches into a library's internals.

This module owns :data:`SHORTCUTS`, the table of those places ("shortcuts"):
per shortcut, the libraries it depends on and the version range it is tested
with (lowest tested release, inclusive, up to the next minor release after the
highest tested, exclusive), what it does and what the library's public path
is. Code that takes a shortcut asks :func:`enabled` first (once, when the
component is built - never per message) and takes the public path when the
answer is False. The public path produces the same bytes on the wire (or the
same Redis entries, the same AMQP message properties) and the same behaviour,
only at a higher CPU cost; tests/test_shortcuts*.py and the differential tests
beside each component hold the two paths to that.

A shortcut is off when:

* a library it names is installed at a version outside its tested range
  (a newer minor release may have changed the internals it uses): the first
  :func:`enabled` call logs one WARNING naming the shortcut, the library, the
  version found and the tested range;
* the environment says ``ABLY_BRIDGE_NO_SHORTCUTS=1`` (every shortcut), or
  ``ABLY_BRIDGE_NO_SHORTCUTS=name,name`` (those ones);
* :func:`public_paths` is active (tests force the mismatch with it).

``python -m ably_bridge.check_shortcuts`` prints :func:`report`: the table with
the versions installed and whether each shortcut is taken.
docs/dependencies.md says how to check and widen the table after an upgrade.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata

__all__ = [
    "ENV_VAR",
    "SHORTCUTS",
    "Shortcut",
    "VersionRange",
    "check",
    "enabled",
    "mismatches",
    "public_paths",
    "reset",
]

log = logging.getLogger(__name__)

ENV_VAR = "ABLY_BRIDGE_NO_SHORTCUTS"

Version = tuple[int, ...]


@dataclass(frozen=True)
class VersionRange:
    """``low <= version < high`` on release numbers (pre/post/dev suffixes are ignored)."""

    low: str
    high: str

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, str):
            return False
        found = parse_version(version)
        return found is not None and _key(self.low) <= found < _key(self.high)

    def __str__(self) -> str:
        return f">={self.low},<{self.high}"


@dataclass(frozen=True)
class Shortcut:
    """One reach into a library's internals: where, what, and the public path instead."""

    name: str
    libraries: dict[str, VersionRange]  # distribution name -> tested range
    where: str  # the module that takes it
    internals: str  # what it relies on that the library does not promise
    public_path: str  # what runs instead when the shortcut is off


def _range(low: str, high: str) -> VersionRange:
    return VersionRange(low, high)


# The table. Widen a range only after the differential tests pass against the new
# release in both venvs (docs/dependencies.md); the low end is pyproject's lower bound.
SHORTCUTS: dict[str, Shortcut] = {
    s.name: s
    for s in (
        Shortcut(
            "amqp.property_encoder",
            {"amqp": _range("5.1.1", "5.5")},
            "ably_bridge.bridge.sinks.amqp_wire",
            "replaces a message's _serialize_properties with memoised bytes, laid out "
            "from amqp.Message.PROPERTIES",
            "py-amqp encodes every message's properties itself",
        ),
        Shortcut(
            "amqp.pipelined_confirms",
            {"amqp": _range("5.1.1", "5.5"), "kombu": _range("5.5.2", "5.8")},
            "ably_bridge.bridge.sinks.celery",
            "publishes with channel._basic_publish (no wait for the confirm) and predicts "
            "each publish's delivery tag from the channel's acks",
            "each publish waits for its own confirm (channel.basic_publish_confirm, as "
            "kombu's Producer.publish does)",
        ),
        Shortcut(
            "amqp.frame_writer",
            {"amqp": _range("5.1.1", "5.5")},
            "ably_bridge.bridge.sinks.amqp_wire",
            "swaps connection.frame_writer for one writing into a 64 KiB buffer and "
            "publishes through channel.send_method",
            "one socket write per publish (py-amqp's own frame writer)",
        ),
        Shortcut(
            "amqp.task_frames",
            {"amqp": _range("5.1.1", "5.5"), "kombu": _range("5.5.2", "5.8")},
            "ably_bridge.bridge.sinks.amqp_frames",
            "captures what kombu's Producer.publish hands channel.basic_publish for a "
            "target (a recording basic_publish) and lays out each task's method, header "
            "and body frames as py-amqp's frame_writer does (frame_max, bytes_sent)",
            "kombu's Producer.publish per task and py-amqp's frame writer (into the same "
            "buffered batch)",
        ),
        Shortcut(
            "celery.task_template",
            {"celery": _range("5.5.3", "5.8"), "kombu": _range("5.5.2", "5.8")},
            "ably_bridge.bridge.sinks.celery_message",
            "captures send_task's message once into a recording producer (stubbing "
            "connection._reraise_as_library_errors) and fills in the per-task fields",
            "Celery's send_task builds and publishes every message",
        ),
        Shortcut(
            "kombu.redis_message_template",
            {"kombu": _range("5.7.0", "5.8")},
            "ably_bridge.bridge.sinks.celery_redis_wire",
            "captures a target's message as kombu's Redis channel would push it "
            "(Producer.publish into PushOnceChannel._put) and writes each task's JSON from "
            "it; pushes with Channel.conn_or_acquire, _q_for_pri, _get_message_priority "
            "and _expires",
            "kombu's Producer.publish per task inside Producer.batch() (the push-once "
            "channel's _put and PublishBatch)",
        ),
        Shortcut(
            "kombu.redis_atomic_fetch",
            {"kombu": _range("5.7.0", "5.8")},
            "workers.redis_fetch",
            "subclasses kombu's Redis Channel and QoS: replaces _brpop_start/_brpop_read/_get "
            "(fetch with a Lua script into the unacked index, wait with BLMOVE) and uses "
            "_queue_cycle, _in_poll, connection._deliver and QoS._remove_from_indices",
            "kombu's own Redis transport (BRPOP, then the unacked index in a second round "
            "trip: a worker SIGKILLed between the two loses the message it was fetching)",
        ),
        Shortcut(
            "redis.raw_pipeline",
            {"redis": _range("5.3.0", "8.3")},
            "ably_bridge.bridge.sinks.redis_streams",
            "holds a pool connection (on a cluster one per node, sinks.redis_cluster) and "
            "writes the script calls with its own RESP packing (send_packed_command, "
            "read_response)",
            "Redis.pipeline(transaction=False) with execute(raise_on_error=False)",
        ),
        Shortcut(
            "requests.urllib3_pool",
            {"requests": _range("2.32.3", "2.35"), "urllib3": _range("2.0.7", "2.9")},
            "ably_bridge.transports.http",
            "takes the HTTPAdapter's urllib3 pool (get_connection_with_tls_context) and "
            "calls its urlopen directly",
            "HTTPAdapter.send with a PreparedRequest",
        ),
        Shortcut(
            "websocket.raw_socket",
            {"websocket-client": _range("1.7.0", "1.10")},
            "ably_bridge.transports.websocket",
            "reads and writes WebSocket.sock itself (frames parsed by wsframes, written "
            "by ABNF.format into a non-blocking backlog, read by the shared reactor)",
            "WebSocket.recv_data on a reader thread and WebSocket.send on a writer thread",
        ),
        Shortcut(
            "aiohttp.raw_frames",
            {"aiohttp": _range("3.9.0", "3.15")},
            "ably_bridge.emulator.outbox",
            "writes pre-built WebSocket frames into request.transport",
            "WebSocketResponse.send_str / send_bytes / ping",
        ),
    )
}

_lock = threading.Lock()
_decided: dict[str, bool] = {}
_forced_off = 0  # public_paths() depth


def parse_version(text: str) -> Version | None:
    """The release numbers of a version string (``'5.4.2rc1'`` -> ``(5, 4, 2)``), or None."""
    found = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if found is None:
        return None
    return _pad(tuple(int(part) for part in found.group(1).split(".")))


def _pad(version: Version) -> Version:
    return version + (0,) * max(0, 3 - len(version))


def _key(text: str) -> Version:
    version = parse_version(text)
    if version is None:  # pragma: no cover - the table's own strings
        raise ValueError(f"not a version: {text!r}")
    return version


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def mismatches(name: str) -> list[tuple[str, str | None, VersionRange]]:
    """(library, version found, tested range) for each library of ``name`` outside its range."""
    out: list[tuple[str, str | None, VersionRange]] = []
    for library, tested in SHORTCUTS[name].libraries.items():
        found = installed_version(library)
        if found is None or found not in tested:
            out.append((library, found, tested))
    return out


def _env_off(name: str) -> bool:
    value = os.environ.get(ENV_VAR, "").strip()
    if not value or value == "0":
        return False
    if value == "1" or value.lower() in ("all", "true", "yes"):
        return True
    return name in {part.strip() for part in value.split(",")}


def enabled(name: str) -> bool:
    """Whether the shortcut ``name`` may be taken (see the module docstring).

    Cheap after the first call per shortcut; call it when a component is built.
    """
    if name not in SHORTCUTS:
        raise KeyError(f"unknown shortcut {name!r}")
    if _forced_off or _env_off(name):
        return False
    decided = _decided.get(name)
    if decided is None:
        with _lock:
            decided = _decided.get(name)
            if decided is None:
                decided = _decided[name] = _decide(name)
    return decided


def _decide(name: str) -> bool:
    wrong = mismatches(name)
    for library, found, tested in wrong:
        log.warning(
            "shortcut %s is off: %s %s is outside the tested range %s; "
            "using the library's public path instead (same output, more CPU)",
            name,
            library,
            found or "(not installed)",
            tested,
        )
    return not wrong


def check() -> dict[str, bool]:
    """Every shortcut and whether it is taken (logging each mismatch once)."""
    return {name: enabled(name) for name in SHORTCUTS}


@contextlib.contextmanager
def public_paths() -> Iterator[None]:
    """Within this block, every shortcut is off (components built inside take the
    public path): what a version outside the table does, for tests."""
    global _forced_off
    with _lock:
        _forced_off += 1
    try:
        yield
    finally:
        with _lock:
            _forced_off -= 1


def reset() -> None:
    """Forget the decisions made so far (tests that change what is installed or logged)."""
    with _lock:
        _decided.clear()


def report() -> list[str]:
    """The table as lines: shortcut, taken or not, and each library's version and range."""
    lines = []
    for name, shortcut in SHORTCUTS.items():
        taken = "taken" if enabled(name) else "OFF (public path)"
        libraries = ", ".join(
            f"{library} {installed_version(library) or '(not installed)'} (tested {tested})"
            for library, tested in shortcut.libraries.items()
        )
        lines.append(f"{name:<24} {taken:<18} {libraries}")
    return lines
