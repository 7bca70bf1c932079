"""OUR REST client (``ably_bridge.AblyRest``) against the official SDKs, through the emulator.

* What our client publishes (string, JSON and binary payloads, in the clear and
  AES-encrypted with 128- and 256-bit keys) is read back from the emulator's
  history by the official Python SDK (``ably.sync.AblyRestSync``) and by ably-js
  (``js/rest_ops.js``), and what they publish is read back by our client; each
  pairing of wire formats (our JSON/msgpack against theirs) is covered.
* TokenRequests: one our client signs is exchanged by our client, ably-js and
  the official Python SDK; one ably-js signs is exchanged by our client; and
  with the same key, nonce and timestamp both libraries produce byte-for-byte
  the same TokenRequest JSON (same fields, order, canonical capability, MAC).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from ably.sync.util.crypto import get_default_params as sdk_cipher_params

from ably_bridge import AblyRest
from ably_bridge.emulator import Emulator
from ably_bridge.encoding.crypto import get_default_params
from ably_bridge.protocol.tokens import TokenParams, TokenRequest

from .conftest import js_config, run_js
from .sdk import PAYLOADS, describe, make, rest_sync

# (our use_binary_protocol, the official SDKs' use_binary_protocol)
FORMAT_PAIRS = [
    pytest.param(True, True, id="ours-msgpack/sdk-msgpack"),
    pytest.param(False, False, id="ours-json/sdk-json"),
    pytest.param(True, False, id="ours-msgpack/sdk-json"),
    pytest.param(False, True, id="ours-json/sdk-msgpack"),
]
KEY_128 = "000102030405060708090a0b0c0d0e0f"
KEY_256 = "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff"
# (channel suffix, hex cipher key or None): every payload goes on each.
CHANNELS: list[tuple[str, str | None]] = [
    ("plain", None),
    ("aes128", KEY_128),
    ("aes256", KEY_256),
]


def ours(emulator: Emulator, key: str, binary: bool, **options: Any) -> AblyRest:
    """Our client on the emulator with Basic auth (allowed to a loopback host)."""
    return AblyRest(
        key=key,
        endpoint=emulator.host,
        port=emulator.port,
        tls=False,
        use_binary_protocol=binary,
        **options,
    )


@pytest.fixture
def our_rest(emulator: Emulator, key: str) -> Iterator[Any]:
    made: list[AblyRest] = []

    def make_client(binary: bool, **options: Any) -> AblyRest:
        client = ours(emulator, key, binary, **options)
        made.append(client)
        return client

    yield make_client
    for client in made:
        client.close()


def _described(items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(m.name, describe(m.data)) for m in items]


def _raw_history(emulator: Emulator, key: str, channel: str) -> list[dict[str, Any]]:
    """The stored messages as the emulator serves them in JSON, undecoded."""
    response = requests.get(
        f"{emulator.url}/channels/{channel}/messages",
        params={"direction": "forwards", "format": "json"},
        auth=tuple(key.split(":", 1)),  # type: ignore[arg-type]
        timeout=10,
    )
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()
    return items


# -- messages: ours -> official SDKs -------------------------------------------------
@pytest.mark.parametrize(("our_binary", "sdk_binary"), FORMAT_PAIRS)
def test_official_sdks_read_what_our_client_publishes(
    our_rest: Any,
    node: str,
    emulator: Emulator,
    key: str,
    channel_name: str,
    our_binary: bool,
    sdk_binary: bool,
) -> None:
    rest = our_rest(our_binary)
    for suffix, hex_key in CHANNELS:
        cipher = get_default_params({"key": bytes.fromhex(hex_key)}) if hex_key else None
        channel = rest.channels.get(f"{channel_name}-{suffix}", cipher=cipher)
        for name, payload in PAYLOADS:
            channel.publish(name, make(payload))

    sdk = rest_sync(emulator, sdk_binary, key=key)
    try:
        for suffix, hex_key in CHANNELS:
            name = f"{channel_name}-{suffix}"
            options = (
                {"cipher": sdk_cipher_params({"key": bytes.fromhex(hex_key)})} if hex_key else {}
            )
            py_items = sdk.channels.get(name, **options).history(direction="forwards").items
            assert _described(py_items) == PAYLOADS, suffix
            assert all(m.encoding in (None, "") for m in py_items), suffix

            js = run_js(
                node,
                "rest_ops.js",
                js_config(emulator, key, sdk_binary, op="history", channel=name, cipherKey=hex_key),
            )
            assert [(m["name"], m["data"]) for m in js["items"]] == PAYLOADS, suffix
            assert {m["encoding"] for m in js["items"]} == {None}, suffix

            # Both SDKs see the idempotent ids our client assigned (base:index).
            ours_ids = [m.id for m in rest.channels.get(name).history(direction="forwards")]
            assert [m.id for m in py_items] == ours_ids == [m["id"] for m in js["items"]]
            assert all(i.endswith(":0") for i in ours_ids)

            stored = _raw_history(emulator, key, name)
            if hex_key is None:
                assert [m.get("encoding") for m in stored] == [None, "json", "base64"]
            else:
                bits = len(hex_key) * 4
                assert all(f"cipher+aes-{bits}-cbc" in m["encoding"] for m in stored), stored
    finally:
        sdk.close()


# -- messages: official SDKs -> ours -------------------------------------------------
@pytest.mark.parametrize(("our_binary", "sdk_binary"), FORMAT_PAIRS)
def test_our_client_reads_what_official_sdks_publish(
    our_rest: Any,
    node: str,
    emulator: Emulator,
    key: str,
    channel_name: str,
    our_binary: bool,
    sdk_binary: bool,
) -> None:
    sdk = rest_sync(emulator, sdk_binary, key=key)
    try:
        for suffix, hex_key in CHANNELS:
            name = f"{channel_name}-py-{suffix}"
            options = (
                {"cipher": sdk_cipher_params({"key": bytes.fromhex(hex_key)})} if hex_key else {}
            )
            channel = sdk.channels.get(name, **options)
            for msg_name, payload in PAYLOADS:
                channel.publish(msg_name, make(payload))
    finally:
        sdk.close()
    messages = [{"name": n, "data": p} for n, p in PAYLOADS]
    for suffix, hex_key in CHANNELS:
        run_js(
            node,
            "rest_ops.js",
            js_config(
                emulator,
                key,
                sdk_binary,
                op="publish",
                channel=f"{channel_name}-js-{suffix}",
                cipherKey=hex_key,
                messages=messages,
            ),
        )

    rest = our_rest(our_binary)
    for writer in ("py", "js"):
        for suffix, hex_key in CHANNELS:
            cipher = get_default_params({"key": bytes.fromhex(hex_key)}) if hex_key else None
            channel = rest.channels.get(f"{channel_name}-{writer}-{suffix}", cipher=cipher)
            page = channel.history(direction="forwards", limit=2)  # pages: 2 + 1
            items = list(page.items)
            assert page.has_next()
            items.extend(page.next().items)
            assert _described(items) == PAYLOADS, (writer, suffix)
            assert all(m.encoding is None for m in items), (writer, suffix)


# -- tokens --------------------------------------------------------------------------
def test_our_token_request_is_accepted_everywhere(
    our_rest: Any, node: str, emulator: Emulator, key: str, binary: bool, channel_name: str
) -> None:
    signer = our_rest(binary)
    capability = {channel_name: ["publish", "subscribe", "history"]}

    # 1. our client exchanges its own TokenRequest (through auth_callback).
    requests_made: list[TokenRequest] = []

    def callback(params: TokenParams) -> TokenRequest:
        request: TokenRequest = signer.auth.create_token_request(
            {"client_id": "ours-signed", "capability": capability}
        )
        requests_made.append(request)
        return request

    user = our_rest(binary, auth_callback=callback)
    user.channels.get(channel_name).publish("via-ours-token", "exchanged by our client")
    assert user.auth.client_id == "ours-signed" and len(requests_made) == 1

    # 2. ably-js exchanges a TokenRequest our client signed.
    signed = signer.auth.create_token_request({"client_id": "ours-for-js", "ttl": 600})
    js = run_js(
        node,
        "rest_ops.js",
        js_config(
            emulator,
            key,
            binary,
            op="exchange",
            tokenRequest=signed.to_dict(),
            channel=channel_name,
        ),
    )
    assert js["clientId"] == "ours-for-js" and js["callbacks"] == 1

    # 3. the official Python SDK exchanges one (handed over as a dict, as JSON would be).
    for_sdk = signer.auth.create_token_request({"client_id": "ours-for-py"})
    sdk = rest_sync(emulator, binary, auth_callback=lambda _params: for_sdk.to_dict())
    try:
        sdk.channels.get(channel_name).publish("via-py-token", "exchanged by the Python SDK")
        assert sdk.auth.client_id == "ours-for-py"
    finally:
        sdk.close()

    stored = signer.channels.get(channel_name).history(direction="forwards").items
    assert [(m.name, m.client_id) for m in stored] == [
        ("via-ours-token", "ours-signed"),
        ("via-js-token", "ours-for-js"),
        ("via-py-token", "ours-for-py"),
    ]


# Token params in ably-js's spelling (ttl in ms); the key order is the order of
# the fields in a TokenRequest, which ably-js keeps from its argument.
SIGNING_CASES = [
    pytest.param({}, id="no-params"),
    pytest.param({"clientId": "alice"}, id="client-id"),
    pytest.param(
        {
            "ttl": 3_600_000,
            # unsorted resources and operations: both sides must canonicalize alike
            "capability": {"zeta:*": ["subscribe", "publish"], "alpha": ["presence", "history"]},
            "clientId": "zoë ✓",
        },
        id="ttl-capability-unicode-client",
    ),
    pytest.param(
        {"ttl": 60_000, "capability": '{"*":["subscribe"],"chat:*":["publish","presence"]}'},
        id="capability-as-json-text",
    ),
    pytest.param({"capability": {"*": ["*"]}, "clientId": "*"}, id="wildcards"),
]


@pytest.mark.parametrize("params", SIGNING_CASES)
def test_token_request_is_byte_for_byte_the_same_as_ably_js(
    our_rest: Any, node: str, emulator: Emulator, key: str, params: dict[str, Any]
) -> None:
    rest = our_rest(True)
    timestamp = rest.time()  # within the emulator's window, so the result is exchangeable
    nonce = f"nonce{timestamp}{len(params)}abcdef0123456789"[:32]
    js = run_js(
        node,
        "rest_ops.js",
        js_config(
            emulator,
            key,
            True,
            op="sign",
            tokenParams={**params, "timestamp": timestamp, "nonce": nonce},
        ),
    )
    ttl = params.get("ttl")
    request = rest.auth.create_token_request(
        TokenParams(
            ttl=None if ttl is None else ttl / 1000,
            capability=params.get("capability"),
            client_id=params.get("clientId"),
            timestamp=timestamp,
            nonce=nonce,
        )
    )
    ours_json = json.dumps(request.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert ours_json == js["json"]  # byte-for-byte: fields, order, capability text, mac

    # The ably-js request is a valid credential for our client (and the emulator).
    user = our_rest(True, auth_callback=lambda _params: js["request"])
    details = user.auth.authorize()
    assert details.client_id == params.get("clientId")
