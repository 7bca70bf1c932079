"""Seeded fuzzing of the client's inbound path: mutated frames into the decoder and the core.

Each run feeds 12,000 mutated JSON frames and 12,000 mutated msgpack frames,
made from valid frames of every action by byte-level mutations (flips,
truncation, insertions, splices) and structural ones (fields set to values of
the wrong type, huge or negative numbers, NaN, deep nesting, removed keys,
other actions and channels), through what a reader thread and the loop
thread do with them: :func:`decode_frame`, then
:meth:`ConnectionCore.frame_received` on a connected core with attached
channels, then payload decoding (cipher, base64, JSON) as delivery does.

A crash is any exception other than the codec's :class:`EncodingError`
(40013, with a message) - from the core or the payload decoder, nothing may
escape. The seed is fixed (``ABLY_FUZZ_SEED`` overrides it), so a failure is
reproducible from its printed seed and frame.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
from typing import Any

import msgpack

from ably_bridge.encoding.crypto import ChannelCipher, get_cipher
from ably_bridge.errors import AblyException, EncodingError, ErrorCode
from ably_bridge.protocol.actions import Action, Flag, PresenceAction
from ably_bridge.protocol.codec import decode_frame
from ably_bridge.protocol.connection import ConnectionCore
from ably_bridge.protocol.events import (
    ChannelState,
    CheckConnectivity,
    ConnectionState,
    Effect,
    OpenTransport,
    RequestToken,
)
from ably_bridge.protocol.models import Message, PresenceMessage, ProtocolMessage

from ..harness import FixedRandom, connected_frame, options

SEED = int(os.environ.get("ABLY_FUZZ_SEED", "1724"))
FRAMES_PER_FORMAT = 12_000
CHANNELS = ("fuzz", "fuzz:presence", "[?rewind=1]fuzz")
CIPHER = get_cipher({"key": bytes(range(32))})


def _seed_frames(binary: bool) -> list[dict[str, Any]]:
    """Valid wire dicts of every inbound action, payloads in several encodings."""
    plain = [
        Message("text", "hello"),
        Message("json", {"a": [1, 2, {"b": None}]}),
        Message("bytes", b"\x00\xff binary"),
        Message("list", [1, "two", 3.5]),
    ]
    messages = [m.encoded(None) for m in plain] + [m.encoded(CIPHER) for m in plain]
    members = [
        PresenceMessage(PresenceAction.PRESENT, client_id="a", data="x").encoded(None),
        PresenceMessage(PresenceAction.ENTER, client_id="b", data={"k": 1}).encoded(CIPHER),
        PresenceMessage(PresenceAction.LEAVE, client_id="a").encoded(None),
    ]
    error = AblyException("boom", 40142, 401)
    frames = [
        connected_frame("conn-1", "key-1"),
        ProtocolMessage(Action.HEARTBEAT, id="ping-1"),
        ProtocolMessage(Action.ACK, msg_serial=0, count=1, res=[{"serials": ["s1"]}]),
        ProtocolMessage(Action.NACK, msg_serial=0, count=1, error=error),
        ProtocolMessage(Action.ERROR, error=AblyException("bad", 40000, 400)),
        ProtocolMessage(Action.ERROR, channel="fuzz", error=AblyException("no", 40160, 401)),
        ProtocolMessage(Action.DISCONNECTED, error=error),
        ProtocolMessage(Action.CLOSED),
        ProtocolMessage(
            Action.ATTACHED,
            channel="fuzz",
            channel_serial="cs-1",
            flags=int(Flag.HAS_PRESENCE | Flag.RESUMED),
            params={"rewind": "1"},
        ),
        ProtocolMessage(Action.DETACHED, channel="fuzz", error=error),
        ProtocolMessage(
            Action.MESSAGE,
            id="m1",
            channel="fuzz",
            channel_serial="cs-2",
            connection_id="other",
            timestamp=1_700_000_000_000,
            messages=messages,
        ),
        ProtocolMessage(Action.PRESENCE, channel="fuzz:presence", presence=members),
        ProtocolMessage(
            Action.SYNC, channel="fuzz:presence", channel_serial="seq:", presence=members
        ),
        ProtocolMessage(Action.AUTH, auth={"accessToken": "t"}),
        ProtocolMessage(Action.ANNOTATION, channel="fuzz", channel_serial="cs-3"),
        ProtocolMessage(Action.OBJECT, channel="fuzz", state=[{"op": 1}]),
    ]
    return [frame.to_dict(binary=binary) for frame in frames]


_ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**70),
    1.5,
    math.nan,
    math.inf,
    "",
    "x" * 300,
    "\udcff"[:0] + "\u0000\u202e",
    b"\x00\x01",
    [],
    [None, 1, "a"],
    {},
    {"code": 1e308, "statusCode": "x"},
    {"messages": "not a list"},
]


def _odd_value(rng: random.Random, binary: bool) -> Any:
    value = rng.choice(_ODD_VALUES)
    if not binary and isinstance(value, bytes):
        return value.decode("latin-1")
    if not binary and isinstance(value, str) and "\udcff" in value:
        return "?"
    return value


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if len(prefix) >= 6:
        return out  # deep enough: a nesting mutation may have made thousands of levels
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return root


def _mutate_structure(rng: random.Random, raw: dict[str, Any], binary: bool) -> Any:
    root: Any = copy.deepcopy(raw)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(root)
        path = rng.choice(paths)
        roll = rng.random()
        if roll < 0.45:
            root = _set(root, path, _odd_value(rng, binary))
        elif roll < 0.6 and path and isinstance(root, dict):
            parent = root
            for step in path[:-1]:
                parent = parent[step]
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        elif roll < 0.75 and isinstance(root, dict):
            root["action"] = rng.choice([*range(-2, 25), 2**40])
        elif roll < 0.85 and isinstance(root, dict):
            root["channel"] = rng.choice([*CHANNELS, "", "unknown"])
        elif roll < 0.92:
            nested: Any = rng.choice([[], {}])
            for _ in range(rng.choice((3, 30, 300))):
                nested = [nested] if isinstance(nested, dict) else {"n": nested}
            root = _set(root, path, nested)
        else:
            root = rng.choice([[root], "text", 7, None, [1, 2]])
    return root


def _encode(obj: Any, binary: bool) -> bytes | str:
    if binary:
        return bytes(msgpack.packb(obj, use_bin_type=True))
    return json.dumps(obj, allow_nan=True)


def _mutate_bytes(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.3 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif roll < 0.5 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif roll < 0.7:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif roll < 0.85:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf[rng.randrange(len(buf) + 1) :] = other[cut:]
        elif buf:
            start = rng.randrange(len(buf))
            buf[start:start] = buf[start : start + rng.randint(1, 64)]
    return bytes(buf)


def mutated_frames(rng: random.Random, binary: bool, count: int) -> list[bytes | str]:
    seeds = _seed_frames(binary)
    corpus = [
        bytes(msgpack.packb(s, use_bin_type=True)) if binary else json.dumps(s).encode()
        for s in seeds
    ]
    frames: list[bytes | str] = []
    while len(frames) < count:
        seed = rng.choice(seeds)
        roll = rng.random()
        if roll < 0.01:  # nested past any recursion limit, as only raw bytes can be
            depth = rng.choice((1_000, 100_000))
            frames.append(b"\x91" * depth if binary else "[" * depth + "]" * depth)
            continue
        try:
            if roll < 0.5:
                frames.append(_encode(_mutate_structure(rng, seed, binary), binary))
                continue
            data = _encode(seed if roll < 0.8 else _mutate_structure(rng, seed, binary), binary)
        except (ValueError, TypeError, OverflowError, RecursionError):
            continue  # the mutation made something the encoder itself refuses
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        mutated = _mutate_bytes(rng, raw, corpus)
        frames.append(mutated if binary else mutated.decode("utf-8", "replace"))
    return frames


class Driver:
    """A connected core with attached channels, kept that way between frames."""

    def __init__(self) -> None:
        self.core = ConnectionCore(options(), rng=FixedRandom())
        self.now = 0.0
        self.establish()

    def run(self, effects: Any) -> None:
        for effect in list(effects):
            self.answer(effect)

    def answer(self, effect: Effect) -> None:
        if isinstance(effect, RequestToken):
            self.run(self.core.token_obtained("token", self.now))
        elif isinstance(effect, CheckConnectivity):
            self.run(self.core.connectivity_checked(True, self.now))
        elif isinstance(effect, OpenTransport):
            self.run(self.core.transport_opened(effect.transport_id, self.now))

    def establish(self) -> None:
        core = self.core
        if core.state != ConnectionState.CONNECTED:
            self.run(core.connect(self.now))
            self.feed(connected_frame())
        for name in CHANNELS:
            if core.state == ConnectionState.CONNECTED and core.channel(name).state in (
                ChannelState.INITIALIZED,
                ChannelState.DETACHED,
                ChannelState.FAILED,
            ):
                self.run(core.attach(name, None, self.now))
                attached = ProtocolMessage(
                    Action.ATTACHED, channel=name, flags=int(Flag.HAS_PRESENCE)
                )
                self.feed(attached)

    def feed(self, pm: ProtocolMessage) -> None:
        self.run(self.core.frame_received(self.core.transport_id, pm, self.now))

    def step(self, pm: ProtocolMessage, rng: random.Random) -> None:
        core, now = self.core, self.now
        roll = rng.random()
        if roll < 0.1:  # something for ACK/NACK to settle
            self.run(core.publish(rng.choice(CHANNELS), [Message("n", "d")], object(), now))
        elif roll < 0.13:
            member = PresenceMessage(PresenceAction.ENTER, client_id="me")
            self.run(core.publish_presence("fuzz:presence", member, object(), now))
        elif roll < 0.15:
            self.run(core.ping(object(), now))  # a HEARTBEAT may answer it
        self.feed(pm)
        if rng.random() < 0.05:
            self.now += rng.choice([0.5, 5.0, 30.0, 200.0])
            self.run(self.core.tick(self.now))
        self.establish()


def _decode_payloads(pm: ProtocolMessage, cipher: ChannelCipher) -> None:
    """What delivery does with a frame's payloads: decode, never raise (RSL6b)."""
    for message in pm.messages:
        message.decode_in_place(cipher)
    for member in pm.presence:
        member.decoded(cipher)


def _fuzz(binary: bool) -> tuple[int, int]:
    rng = random.Random(SEED * 2 + int(binary))
    driver = Driver()
    rejected = accepted = 0
    crashes: list[str] = []
    for index, frame in enumerate(mutated_frames(rng, binary, FRAMES_PER_FORMAT)):
        try:
            pm = decode_frame(frame, binary=binary)
        except EncodingError as exc:
            if exc.code != ErrorCode.INVALID_DATA_OR_ENCODING or not exc.message:
                crashes.append(f"#{index}: unclear error {exc!r}")
            rejected += 1
            continue
        except Exception as exc:  # a crash: the decoder must raise EncodingError only
            crashes.append(f"#{index}: decode_frame raised {exc!r} for {frame!r:.200}")
            continue
        accepted += 1
        try:
            driver.step(pm, rng)
            _decode_payloads(pm, CIPHER)
        except Exception as exc:
            crashes.append(f"#{index}: {type(exc).__name__}: {exc} for {pm!r:.300}")
            driver = Driver()
    assert not crashes, f"seed {SEED}: {len(crashes)} crashes, first: {crashes[:3]}"
    return accepted, rejected


def test_fuzzed_json_frames_never_crash_the_client() -> None:
    accepted, rejected = _fuzz(binary=False)
    assert accepted + rejected == FRAMES_PER_FORMAT
    assert accepted > 2_000 and rejected > 2_000  # both paths were exercised


def test_fuzzed_msgpack_frames_never_crash_the_client() -> None:
    accepted, rejected = _fuzz(binary=True)
    assert accepted + rejected == FRAMES_PER_FORMAT
    assert accepted > 2_000 and rejected > 2_000
