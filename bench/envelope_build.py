"""Benchmark: building one message envelope and its JSON, as the bridge's intake does.

Per event: ``EnvelopeBuilder.message`` (decoded mode, no cipher), then what
the intake and the sink read of it (``size``, ``to_json``, ``route_key``).
Two messages: the one ``delivery_hot_path.py`` sends (id, name, connection id,
timestamp, 100 characters of text) and the same with a ``serial`` and action 0
(a protocol v4 create, as the emulator sends). Prints wall-clock nanoseconds
per envelope, best of ``--rounds``: compare trees on one quiet box only.
"""

from __future__ import annotations

import argparse
import timeit

from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    builder = EnvelopeBuilder("app", "local")
    plain = Message("m", "x" * 100, id="c:1:0", timestamp=1001, connection_id="c")
    v4 = Message(
        "m", "x" * 100, id="c:1:0", timestamp=1001, connection_id="c", serial="01", action=0
    )
    for label, message in (("harness message", plain), ("with serial, action 0", v4)):

        def one(message: Message = message) -> None:
            env = builder.message("bench-1", message, "bench", mode="decoded", now_ms=5)
            env.size()
            env.to_json()
            _ = env.route_key

        best = min(timeit.repeat(one, number=args.number, repeat=args.rounds))
        print(f"{label}: {best / args.number * 1e9:,.0f} ns per envelope")


if __name__ == "__main__":
    main()
