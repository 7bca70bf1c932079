"""Seeded mutation of ProtocolMessages and REST bodies for the emulator fuzz test.

:class:`Mutator` starts from well-formed seeds (the shapes ably-js and our
client send) and applies one to three mutations: a value somewhere replaced
by a hostile one (huge or negative numbers, NaN, lone surrogates, bytes,
deep nesting, msgpack extension types...), a key removed or added, the
action changed, or - after encoding - bytes flipped, cut or inserted.
Everything comes from one ``random.Random(seed)``, so a failing run is
reproduced by its seed.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import msgpack


def _deep(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


class Mutator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # -- hostile values --------------------------------------------------------
    def value(self, fmt: str) -> Any:
        rng = self.rng
        choices: list[Any] = [
            None,
            True,
            False,
            0,
            -1,
            2**31,
            2**53 + 1,
            2**63 - 1,
            -(2**63),
            1.5,
            -0.0,
            1e308,
            "",
            "x" * rng.choice([1, 100, 70_000]),
            "\u0000\u202e\uffff",
            "caf\u00e9 \U0001f600",
            "\ud800",
            "*",
            ":",
            "[meta]x",
            "[?rewind=1]x",
            "a:b:c",
            [],
            {},
            [1, "2", None],
            {"nested": {"deeper": [1, 2, {"x": None}]}},
            _deep(rng.choice([5, 60, 99, 101, 300])),
            {"headers": {"a": "b"}},
            {"rewind": "-5", "delta": "vcdiff", "modes": "bogus"},
            rng.randint(-(10**6), 10**6),
            str(rng.random()),
        ]
        if fmt == "msgpack":
            choices += [
                b"",
                b"\x00\xff" * rng.randint(1, 50),
                float("nan"),
                float("inf"),
                2**64 - 1,
                msgpack.ExtType(rng.randint(0, 127), b"\x01\x02"),
                {1: "int key"},
            ]
        else:
            choices += [2**70, -(2**70)]
        return copy.deepcopy(rng.choice(choices))

    # -- structural mutations --------------------------------------------------
    def _containers(self, obj: Any) -> list[Any]:
        found: list[Any] = []
        stack = [obj]
        while stack:
            item = stack.pop()
            if isinstance(item, dict | list) and len(found) < 200:
                found.append(item)
                stack.extend(v for v in (item.values() if isinstance(item, dict) else item))
        return found

    def mutate(self, seed: Any, fmt: str) -> Any:
        obj = copy.deepcopy(seed)
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            containers = self._containers(obj)
            if not containers:
                return self.value(fmt)
            target = rng.choice(containers)
            op = rng.random()
            if isinstance(target, dict):
                keys = list(target)
                if keys and op < 0.55:
                    target[rng.choice(keys)] = self.value(fmt)
                elif keys and op < 0.7:
                    del target[rng.choice(keys)]
                elif op < 0.85:
                    name = rng.choice(
                        ["action", "channel", "flags", "params", "data", "encoding", "id", "extras",
                         "clientId", "connectionKey", "serial", "msgSerial", "count", "error", "x"]
                    )  # fmt: skip
                    target[name] = self.value(fmt)
                elif "action" in target:
                    target["action"] = rng.choice(
                        [-1, 0, 4, 7, 9, 10, 12, 14, 15, 16, 17, 19, 21, 99, 2**40]
                    )
                else:
                    target[str(rng.random())] = self.value(fmt)
            elif target:
                index = rng.randrange(len(target))
                if op < 0.6:
                    target[index] = self.value(fmt)
                elif op < 0.8:
                    del target[index]
                else:
                    target.extend(copy.deepcopy(target) * rng.randint(1, 30))
            else:
                target.append(self.value(fmt))
        return obj

    # -- encoding and byte-level damage ---------------------------------------------
    def encode(self, obj: Any, fmt: str) -> str | bytes:
        if fmt == "msgpack":
            return bytes(msgpack.packb(obj, use_bin_type=True, strict_types=False))
        return json.dumps(obj, default=lambda o: "?")

    def damage(self, raw: str | bytes) -> bytes:
        data = bytearray(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            if not data:
                data += bytes([rng.randrange(256)])
                continue
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.6:
                del data[pos:]
            elif op < 0.8:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                data[pos:pos] = b"\xc1\xd4\x05\xff\x7f"[: rng.randint(1, 5)]
        return bytes(data)

    def frame(self, seed: Any, fmt: str) -> str | bytes:
        """One mutated frame/body; about one in five is also damaged after encoding."""
        obj = self.mutate(seed, fmt)
        try:
            raw = self.encode(obj, fmt)
        except (OverflowError, TypeError, ValueError):
            raw = self.encode(seed, fmt)
        if self.rng.random() < 0.2:
            damaged = self.damage(raw)
            return damaged if fmt == "msgpack" else damaged.decode("utf-8", "replace")
        return raw


def strict_json(text: str) -> Any:
    """Parse JSON as a browser would: NaN and Infinity are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a decoded msgpack reply."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
