"""Seeded fuzzing of the emulator: mutated frames and bodies, 0 crashes (issue 17).

At least 20,000 mutated inputs per run - WebSocket frames and REST bodies, in
JSON and msgpack, and ProtocolMessages sent over comet (HTTP long-polling,
JSON only) - go into one emulator. A crash is any of: an HTTP 5xx, an
ERROR frame with a 5xxxx code, a reply that is not valid JSON/msgpack (NaN
included), an exception logged by the emulator or aiohttp, or a bystander
client (one per format, attached all along) that stops receiving. Each WebSocket
frame is followed by a HEARTBEAT with an id, so the test knows the frame was
handled before it sends the next (or that the server closed the connection,
which it may do after an ERROR); over comet the HEARTBEAT travels in the same
``send`` and the worker reads ``recv`` until its answer. ``EMULATOR_FUZZ_SEED``
picks another seed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack
import pytest

from ably_bridge.emulator import Emulator, EmulatorConfig

from .fuzz_support import Mutator, finite, strict_json

SEED = int(os.environ.get("EMULATOR_FUZZ_SEED", "20261207"))
PER_TARGET = int(
    os.environ.get("EMULATOR_FUZZ_PER_TARGET", "5000")
)  # x 4 targets (ws json, ws msgpack, rest json, rest msgpack) = 20,000
COMET_PER_ROUND = PER_TARGET // 20  # two HTTP requests or more per frame: fewer of them
WORKERS = 3
MSGPACK = "application/x-msgpack"

WS_SEEDS: list[dict[str, Any]] = [
    {"action": 10, "channel": "fz", "params": {"rewind": "1"}},
    {"action": 10, "channel": "fz:two", "flags": 0x40000 | 0x20000, "channelSerial": "x"},
    {"action": 10, "channel": "[?delta=vcdiff]fz"},
    {"action": 12, "channel": "fz"},
    {
        "action": 15,
        "channel": "fz",
        "msgSerial": 0,
        "messages": [
            {"name": "a", "data": "text"},
            {"data": '{"k":1}', "encoding": "json"},
            {"data": "aGVsbG8=", "encoding": "base64"},
            {"id": "fz:0", "clientId": "c", "extras": {"headers": {"h": "v"}}},
        ],
    },
    {"action": 14, "channel": "fz", "msgSerial": 0, "presence": [{"action": 2, "data": "d"}]},
    {"action": 14, "channel": "fz", "msgSerial": 0, "presence": [{"action": 4, "clientId": "c"}]},
    {
        "action": 21,
        "channel": "mutable:fz",
        "msgSerial": 0,
        "annotations": [
            {"type": "r:distinct.v1", "name": "+1", "messageSerial": "0000000000000001"},
            {"type": "n:multiple.v1", "count": 2, "messageSerial": "0000000000000001"},
            {"action": 1, "type": "t:total.v1", "messageSerial": "0000000000000001"},
        ],
    },
    {"action": 17, "auth": {"accessToken": "not-a-token"}},
    {"action": 0, "id": "ping"},
    {"action": 16, "channel": "fz"},
]


def rest_seeds(key_name: str) -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/channels/fz/messages", {"name": "n", "data": "d", "extras": {"push": {}}}),
        ("POST", "/channels/fz/messages", [{"id": "m:0", "data": {"a": 1}}, {"data": "x"}]),
        ("POST", "/messages", {"channels": ["fz", "fz:b"], "messages": [{"data": "x"}]}),
        ("POST", "/messages", [{"channels": "fz", "messages": {"name": "y"}}]),
        ("POST", f"/keys/{key_name}/requestToken", {"ttl": 60000, "capability": '{"*":["*"]}'}),
        ("POST", f"/keys/{key_name}/requestToken", {"clientId": "c", "nonce": "n", "mac": "m"}),
        ("POST", "/stats", [{"intervalId": "2020-01-01:10:00", "inbound": {"all": {}}}]),
        ("POST", "/apps", {"keys": [{"capability": '{"*":["*"]}'}], "namespaces": []}),
        (
            "POST",
            "/channels/mutable:fz/messages/0000000000000001/annotations",
            [{"type": "r:unique.v1", "name": "a", "clientId": "c"}, {"type": "x:flag.v1"}],
        ),
    ]


@dataclass
class Tally:
    sent: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)

    def add(self, target: str) -> None:
        self.sent[target] = self.sent.get(target, 0) + 1


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def fuzz_emulator() -> Iterator[tuple[Emulator, _Errors]]:
    handler = _Errors()
    loggers = [logging.getLogger(n) for n in ("ably_bridge.emulator", "aiohttp", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    config = EmulatorConfig(
        presence_leave_delay_ms=100, max_message_size=1 << 20, comet_poll_ms=1000
    )
    try:
        with Emulator(config=config) as emu:
            yield emu, handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _decode_frame(msg: aiohttp.WSMessage, fmt: str) -> dict[str, Any]:
    if msg.type == aiohttp.WSMsgType.TEXT:
        assert fmt == "json", "text frame on a msgpack connection"
        return dict(strict_json(msg.data))
    assert fmt == "msgpack", "binary frame on a JSON connection"
    value = msgpack.unpackb(msg.data, raw=False)
    assert finite(value)
    return dict(value)


async def _ws_worker(
    http: aiohttp.ClientSession, url: str, fmt: str, count: int, mutator: Mutator, tally: Tally
) -> None:
    target = f"ws-{fmt}"
    ws: aiohttp.ClientWebSocketResponse | None = None
    ping = 0
    while tally.sent.get(target, 0) < count and len(tally.crashes) < 20:
        if ws is None or ws.closed:
            ws = await http.ws_connect(f"{url}&format={fmt}", autoping=True)
            first = _decode_frame(await ws.receive(timeout=30), fmt)
            if first.get("action") != 4:
                tally.crashes.append(f"{target}: no CONNECTED: {first}")
                return
        frame = mutator.frame(mutator.rng.choice(WS_SEEDS), fmt)
        ping += 1
        heartbeat: dict[str, Any] = {"action": 0, "id": f"p{ping}"}
        try:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
                await ws.send_bytes(msgpack.packb(heartbeat))
            else:
                await ws.send_str(frame)
                await ws.send_str(strict_json_dump(heartbeat))
        except (ConnectionError, RuntimeError):
            ws = None
            continue
        tally.add(target)
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                break
            if msg.type == aiohttp.WSMsgType.ERROR:
                tally.crashes.append(f"{target}: transport error {msg.data!r} after {frame!r:.300}")
                break
            try:
                pm = _decode_frame(msg, fmt)
            except (AssertionError, ValueError) as exc:
                tally.crashes.append(f"{target}: unreadable reply ({exc}) to {frame!r:.300}")
                break
            err = pm.get("error") if isinstance(pm.get("error"), dict) else {}
            code, status = err.get("code", 0), err.get("statusCode", 0)
            if 50000 <= code < 60000 or status >= 500:
                tally.crashes.append(f"{target}: {code} {pm['error']} after {frame!r:.300}")
            if pm.get("action") == 0 and pm.get("id") == heartbeat["id"]:
                break
        if ws.closed:
            ws = None
    if ws is not None:
        await ws.close()


def strict_json_dump(obj: Any) -> str:
    import json

    return json.dumps(obj, allow_nan=False)


async def _rest_worker(
    http: aiohttp.ClientSession,
    base: str,
    key: str,
    fmt: str,
    count: int,
    mutator: Mutator,
    tally: Tally,
) -> None:
    target = f"rest-{fmt}"
    key_name = key.split(":")[0]
    seeds = rest_seeds(key_name)
    auth = aiohttp.encode_basic_auth(key_name, key.split(":", 1)[1])
    ctype = MSGPACK if fmt == "msgpack" else "application/json"
    while tally.sent.get(target, 0) < count and len(tally.crashes) < 20:
        method, path, seed = mutator.rng.choice(seeds)
        body = mutator.frame(seed, fmt)
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        headers = {
            "Content-Type": ctype,
            "Accept": ctype,
            "X-Ably-Version": "3",
            "Authorization": auth,
        }
        tally.add(target)
        async with http.request(method, base + path, data=data, headers=headers) as r:
            raw = await r.read()
            if r.status >= 500:
                tally.crashes.append(
                    f"{target} {path}: HTTP {r.status} {raw[:300]!r} for {data[:300]!r}"
                )
                continue
            try:
                if r.headers.get("Content-Type", "").startswith(MSGPACK):
                    assert finite(msgpack.unpackb(raw, raw=False))
                elif raw:
                    strict_json(raw.decode("utf-8"))
            except (AssertionError, ValueError) as exc:
                tally.crashes.append(f"{target} {path}: unreadable reply {exc} for {data[:300]!r}")


async def _comet_connect(
    http: aiohttp.ClientSession, base: str, key: str, tally: Tally
) -> str | None:
    async with http.get(
        f"{base}/comet/connect", params={"key": key, "v": "3", "format": "json"}
    ) as r:
        raw = await r.read()
    first = strict_json(raw.decode("utf-8"))[0] if raw else {}
    if r.status != 200 or first.get("action") != 4:
        tally.crashes.append(f"comet: no CONNECTED: {r.status} {raw[:300]!r}")
        return None
    return str(first["connectionDetails"]["connectionKey"])


async def _comet_worker(
    http: aiohttp.ClientSession, base: str, key: str, count: int, mutator: Mutator, tally: Tally
) -> None:
    """Mutated frames over comet: each ``send`` holds one with a HEARTBEAT after it,
    then ``recv`` is read until that HEARTBEAT comes back or the transport ends."""
    target = "comet-json"
    conn_key: str | None = None
    ping = 0
    while tally.sent.get(target, 0) < count and len(tally.crashes) < 20:
        if conn_key is None:
            conn_key = await _comet_connect(http, base, key, tally)
            if conn_key is None:
                return
        frame = mutator.frame(mutator.rng.choice(WS_SEEDS), "json")
        ping += 1
        heartbeat = strict_json_dump({"action": 0, "id": f"c{ping}"})
        assert isinstance(frame, str)
        # Mostly the frame and the HEARTBEAT in one array; else the bare frame, then the
        # HEARTBEAT in a send of its own.
        bodies = [f"[{frame},{heartbeat}]"]
        if mutator.rng.random() < 0.2:
            bodies = [frame, f"[{heartbeat}]"]
        body = bodies[0]
        tally.add(target)
        url = f"{base}/comet/{conn_key}"
        for one in bodies:
            async with http.post(
                url + "/send",
                params={"key": key},
                data=one.encode("utf-8", "surrogatepass"),
                headers={"Content-Type": "application/json"},
            ) as r:
                raw = await r.read()
                if r.status >= 500:
                    tally.crashes.append(
                        f"{target}: HTTP {r.status} {raw[:300]!r} for {one[:300]!r}"
                    )
                if r.status != 204:
                    conn_key = None
                    break
        if conn_key is None:
            continue
        while conn_key is not None:
            async with http.get(url + "/recv", params={"key": key}) as r:
                raw = await r.read()
                if r.status == 204:
                    continue
                if r.status != 200:
                    if r.status >= 500:
                        tally.crashes.append(f"{target}: recv HTTP {r.status} {raw[:300]!r}")
                    conn_key = None  # the transport ended (80008 after CLOSED or an ERROR)
                    break
            try:
                pms = strict_json(raw.decode("utf-8"))
            except ValueError as exc:
                tally.crashes.append(f"{target}: unreadable recv ({exc}) after {body[:300]!r}")
                return
            done = False
            for pm in pms:
                err = pm.get("error") if isinstance(pm.get("error"), dict) else {}
                if 50000 <= err.get("code", 0) < 60000 or err.get("statusCode", 0) >= 500:
                    tally.crashes.append(f"{target}: {err} after {body[:300]!r}")
                if pm.get("action") in (6, 8, 9):  # DISCONNECTED, CLOSED, ERROR end it
                    conn_key = None
                done = done or (pm.get("action") == 0 and pm.get("id") == f"c{ping}")
            if done:
                break


async def _bystander(
    http: aiohttp.ClientSession, url: str, fmt: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{url}&format={fmt}")
    assert _decode_frame(await ws.receive(timeout=30), fmt)["action"] == 4
    attach = {"action": 10, "channel": f"bystander-{fmt}"}
    await (
        ws.send_bytes(msgpack.packb(attach))
        if fmt == "msgpack"
        else ws.send_str(strict_json_dump(attach))
    )
    while _decode_frame(await ws.receive(timeout=30), fmt).get("action") != 11:
        pass
    return ws


async def _bystander_receives(
    http: aiohttp.ClientSession,
    base: str,
    key: str,
    ws: aiohttp.ClientWebSocketResponse,
    fmt: str,
    n: int,
) -> bool:
    name, secret = key.split(":", 1)
    async with http.post(
        f"{base}/channels/bystander-{fmt}/messages",
        json={"name": f"check-{n}", "data": "still here"},
        headers={"Authorization": aiohttp.encode_basic_auth(name, secret)},
    ) as r:
        assert r.status == 201
    while True:
        pm = _decode_frame(await ws.receive(timeout=30), fmt)
        if pm.get("action") == 15 and pm["messages"][0].get("name") == f"check-{n}":
            return True


async def _run(emu: Emulator, tally: Tally) -> None:
    mutator = Mutator(SEED)
    url = f"{emu.ws_url}/?v=3&key={emu.root_key}"
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(  # the message the annotation seeds name (serial 1)
            f"{emu.url}/channels/mutable:fz/messages",
            json={"name": "annotated"},
            headers={"Authorization": aiohttp.encode_basic_auth(*emu.root_key.split(":", 1))},
        ) as r:
            assert r.status == 201
        bystanders = {fmt: await _bystander(http, url, fmt) for fmt in ("json", "msgpack")}
        for round_no in range(4):
            jobs = []
            for fmt in ("json", "msgpack"):
                per = PER_TARGET * (round_no + 1) // 4
                for _ in range(WORKERS):
                    jobs.append(_ws_worker(http, url, fmt, per, mutator, tally))
                    jobs.append(_rest_worker(http, emu.url, emu.root_key, fmt, per, mutator, tally))
            per_comet = COMET_PER_ROUND * (round_no + 1)
            for _ in range(2):
                jobs.append(_comet_worker(http, emu.url, emu.root_key, per_comet, mutator, tally))
            await asyncio.gather(*jobs)
            for fmt, ws in bystanders.items():
                assert await _bystander_receives(http, emu.url, emu.root_key, ws, fmt, round_no), (
                    fmt
                )
        for ws in bystanders.values():
            await ws.close()


def test_fuzz_emulator_no_crashes(fuzz_emulator: tuple[Emulator, _Errors]) -> None:
    emu, errors = fuzz_emulator
    tally = Tally()
    asyncio.run(_run(emu, tally))
    assert tally.crashes == [], f"seed {SEED}: " + "\n".join(tally.crashes[:10])
    assert [r.getMessage() for r in errors.records] == [], f"seed {SEED}"
    assert sum(tally.sent.values()) >= 20_000, tally.sent
    assert min(v for k, v in tally.sent.items() if k != "comet-json") >= PER_TARGET, tally.sent
    assert tally.sent["comet-json"] >= COMET_PER_ROUND * 4, tally.sent
