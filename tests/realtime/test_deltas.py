"""Deltas (``delta=vcdiff``, RTL18-RTL20, PC3) against the emulator, in both formats.

The emulator sends each message after the first as a VCDIFF delta against the
previous one; the client applies them with Ably's own decoder
(``vcdiff-decoder``) given as ``ClientOptions.vcdiff_decoder``.
"""

from __future__ import annotations

import threading
from typing import Any

import vcdiff_decoder

from ably_bridge.protocol.events import ChannelState
from ably_bridge.realtime import ChannelOptions

from .conftest import Collector, MakeClient


class Decoder:
    """``vcdiff_decoder.decode`` as a ``vcdiff_decoder`` option; can fail once on demand."""

    def __init__(self, fail_call: int | None = None) -> None:
        self.calls = 0
        self.fail_call = fail_call
        self.lock = threading.Lock()

    def decode(self, delta: bytes, base: bytes) -> bytes:
        with self.lock:
            self.calls += 1
            if self.calls == self.fail_call:
                raise ValueError("a corrupted delta (test)")
        return vcdiff_decoder.decode(base, delta)


PAYLOADS: list[Any] = [
    *(("the quick brown fox jumps over the lazy dog " * 8) + str(i) for i in range(5)),
    *({"reading": i, "unit": "celsius", "site": "north-" + "x" * 40} for i in range(3)),
    b"\x00\x01binary" * 30,
    b"\x00\x01binary" * 30 + b"!",
]


def subscribed(
    make_client: MakeClient, name: str, decoder: Decoder | None, **options: Any
) -> tuple[Any, Collector, Any]:
    """(channel attached with ``delta: vcdiff``, its messages, a publisher's channel)."""
    extra = {} if decoder is None else {"vcdiff_decoder": decoder}
    channel = make_client(**extra).channels.get(
        name, ChannelOptions(params={"delta": "vcdiff"}, **options)
    )
    got = Collector()
    channel.subscribe(got)
    channel.attach()
    return channel, got, make_client().channels.get(name)


def test_deltas_are_applied_and_every_payload_arrives_whole(make_client: MakeClient) -> None:
    decoder = Decoder()
    _, got, publisher = subscribed(make_client, "deltas", decoder)
    for payload in PAYLOADS:
        publisher.publish("m", payload)
    assert [m.data for m in got.wait_for(len(PAYLOADS))] == PAYLOADS
    assert decoder.calls == len(PAYLOADS) - 1  # all but the first came as deltas
    assert all(m.encoding is None for m in got.items)


def test_a_delta_that_fails_reattaches_and_nothing_is_lost_or_repeated(
    make_client: MakeClient,
) -> None:
    channel, got, publisher = subscribed(make_client, "deltas-recover", Decoder(fail_call=3))
    changes = Collector()
    channel.on(changes)
    texts = [("reading " * 20) + str(i) for i in range(8)]
    for text in texts:
        publisher.publish("m", text)
    assert [m.data for m in got.wait_for(len(texts))] == texts  # RTL18: replayed in order
    states = [(c.current, c.reason.code if c.reason else None) for c in changes.wait_for(2)]
    assert states[:2] == [(ChannelState.ATTACHING, 40018), (ChannelState.ATTACHED, None)]
    assert channel.state == ChannelState.ATTACHED


def test_without_a_decoder_a_delta_fails_the_channel_with_40019(make_client: MakeClient) -> None:
    channel, got, publisher = subscribed(make_client, "deltas-none", None)  # no decoder
    failed = Collector()
    channel.on("failed", failed)
    publisher.publish("m", "first, whole " * 10)
    publisher.publish("m", "first, whole " * 10 + "and a delta")
    (change,) = failed.wait_for(1)
    assert change.reason is not None and change.reason.code == 40019
    assert [m.data for m in got.items] == ["first, whole " * 10]


def test_payloads_delivered_encoded_still_have_their_deltas_applied(
    make_client: MakeClient,
) -> None:
    """``ChannelOptions(decode=False)``: each payload as it would have arrived whole,
    with the rest of its encoding (``utf-8``, ``json/utf-8``...), never a raw delta."""
    decoder = Decoder()
    _, got, publisher = subscribed(make_client, "deltas-raw", decoder, decode=False)
    for payload in PAYLOADS:
        publisher.publish("m", payload)
    raw = got.wait_for(len(PAYLOADS))
    assert decoder.calls == len(PAYLOADS) - 1
    assert not any("vcdiff" in (m.encoding or "") for m in raw)
    assert [m.decoded().data for m in raw] == PAYLOADS
