"""The official Python SDK (``ably`` 3.1.4 from PyPI) against the emulator.

Blocking REST (``ably.sync.AblyRestSync``): time, publish of string/JSON/binary
payloads, paginated history both ways, token auth through an
``auth_callback`` that returns a TokenRequest, capability refusals. Asyncio
realtime (``AblyRealtime`` inside ``asyncio.run``): publish/subscribe between
two clients, presence enter/get/leave. Every test runs in JSON and msgpack.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ably.sync import AblyException
from ably.sync.types.message import Message

from ably_bridge.emulator import Emulator

from .sdk import PAYLOADS, TIMEOUT, PyRealtime, describe, make, rest_sync


def test_rest_time_publish_and_history_pages(emulator: Emulator, key: str, binary: bool) -> None:
    rest = rest_sync(emulator, binary, key=key)
    try:
        assert abs(rest.time() - emulator.state.now_ms()) < 60_000
        channel = rest.channels.get("persisted:py-rest")
        for name, payload in PAYLOADS:
            channel.publish(name, make(payload))
        channel.publish(messages=[Message(name="m4", data="4"), Message(name="m5", data="5")])

        backwards: list[list[str]] = []
        page = channel.history(limit=2)
        while True:
            backwards.append([m.name for m in page.items])
            if not page.has_next():
                assert page.is_last()
                break
            page = page.next()
        assert backwards == [["m5", "m4"], ["binary", "json"], ["text"]]

        forwards = channel.history(direction="forwards", limit=3)
        assert [m.name for m in forwards.items] == ["text", "json", "binary"]
        assert [describe(m.data) for m in forwards.items] == [p for _, p in PAYLOADS]
        assert all(m.encoding in (None, "") for m in forwards.items)
        assert [m.name for m in forwards.next().items] == ["m4", "m5"]
    finally:
        rest.close()


def test_rest_auth_callback_with_token_request(
    emulator: Emulator, app: dict[str, Any], binary: bool
) -> None:
    key_rest = rest_sync(emulator, binary, key=app["keys"][0]["keyStr"])
    requests: list[Any] = []

    def auth_callback(params: Any) -> Any:
        token_request = key_rest.auth.create_token_request(
            {"client_id": "py-cb", "capability": {"*": ["publish", "subscribe"]}}
        )
        requests.append(token_request)
        return token_request

    rest = rest_sync(emulator, binary, auth_callback=auth_callback)
    try:
        rest.channels.get("cb").publish("signed", "by callback")
        assert len(requests) == 1 and rest.auth.client_id == "py-cb"
        stored = key_rest.channels.get("cb").history().items
        assert [(m.name, m.client_id, m.data) for m in stored] == [
            ("signed", "py-cb", "by callback")
        ]
        with pytest.raises(AblyException) as refused:
            rest.channels.get("cb").history()  # the token has no 'history' capability
        assert (refused.value.code, refused.value.status_code) == (40160, 401)
    finally:
        rest.close()
        key_rest.close()


def test_rest_requires_publish_capability(
    emulator: Emulator, app: dict[str, Any], binary: bool
) -> None:
    limited = rest_sync(emulator, binary, key=app["keys"][1]["keyStr"])  # no 'history'
    try:
        limited.channels.get("limited").publish("ok", "x")
        with pytest.raises(AblyException) as refused:
            limited.channels.get("limited").history()
        assert refused.value.code == 40160
    finally:
        limited.close()


def test_realtime_publish_subscribe_presence(emulator: Emulator, key: str, binary: bool) -> None:
    async def scenario() -> None:
        async with (
            PyRealtime(emulator, key, binary, "py-sub") as sub,
            PyRealtime(emulator, key, binary, "py-pub") as pub,
        ):
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            sub_channel = sub.channels.get("py-rt")
            await sub_channel.subscribe(inbox.put_nowait)
            pub_channel = pub.channels.get("py-rt")
            for name, payload in PAYLOADS:
                await pub_channel.publish(name, make(payload))
            got = [await asyncio.wait_for(inbox.get(), TIMEOUT) for _ in PAYLOADS]
            assert [(m.name, describe(m.data)) for m in got] == PAYLOADS
            assert {m.client_id for m in got} == {"py-pub"}
            pub_id = pub.connection.connection_manager.connection_id
            assert {m.connection_id for m in got} == {pub_id}

            await pub_channel.presence.enter({"role": "publisher"})
            await sub_channel.presence.enter("subscriber")

            async def members() -> dict[str, Any]:
                while True:
                    found = {m.client_id: m.data for m in await sub_channel.presence.get()}
                    if len(found) == 2:
                        return found
                    await asyncio.sleep(0.02)

            found = await asyncio.wait_for(members(), TIMEOUT)
            assert found == {"py-pub": {"role": "publisher"}, "py-sub": "subscriber"}
            await pub_channel.presence.leave()
            await asyncio.wait_for(_until_gone(sub_channel, "py-pub"), TIMEOUT)

    asyncio.run(scenario())


async def _until_gone(channel: Any, client_id: str) -> None:
    while client_id in {m.client_id for m in await channel.presence.get()}:
        await asyncio.sleep(0.02)


def test_realtime_applies_the_emulators_vcdiff_deltas(
    emulator: Emulator, key: str, binary: bool
) -> None:
    """``delta=vcdiff``: the official SDK with its own ``AblyVCDiffDecoder`` decodes the
    emulator's deltas into whole payloads."""
    from ably import AblyVCDiffDecoder
    from ably.types.channeloptions import ChannelOptions

    texts = [("the same long sentence, " * 6) + str(i) for i in range(5)]

    class Counting(AblyVCDiffDecoder):  # type: ignore[misc]
        calls = 0

        def decode(self, delta: bytes, base: bytes) -> bytes:
            Counting.calls += 1
            return bytes(super().decode(delta, base))

    async def scenario() -> None:
        async with (
            PyRealtime(emulator, key, binary, "py-deltas", vcdiff_decoder=Counting())
            as sub,
            PyRealtime(emulator, key, binary, "py-pub") as pub,
        ):  # fmt: skip
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            channel = sub.channels.get("py-deltas", ChannelOptions(params={"delta": "vcdiff"}))
            await channel.subscribe(inbox.put_nowait)
            out = pub.channels.get("py-deltas")
            for text in texts:
                await out.publish("m", text)
            got = [await asyncio.wait_for(inbox.get(), TIMEOUT) for _ in texts]
            assert [m.data for m in got] == texts
            assert Counting.calls == len(texts) - 1  # all but the first came as deltas

    asyncio.run(scenario())
