"""AblyRest against the local emulator, every call in JSON and msgpack."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from ably_bridge.emulator.server import Emulator
from ably_bridge.encoding.crypto import generate_random_key
from ably_bridge.errors import AblyException, AuthenticationError
from ably_bridge.protocol.models import Message
from ably_bridge.protocol.stats import Stats
from ably_bridge.protocol.tokens import TokenDetails, TokenParams
from ably_bridge.rest import AblyRest, BatchPublishSpec


@pytest.fixture(params=[False, True], ids=["json", "msgpack"])
def binary(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def connect(emulator: Emulator, binary: bool) -> Iterator[Any]:
    clients: list[AblyRest] = []

    def make(**options: Any) -> AblyRest:
        if not {"key", "token", "token_details", "auth_callback", "auth_url"} & set(options):
            options["key"] = emulator.root_key
        options.setdefault("use_binary_protocol", binary)
        rest = AblyRest(endpoint="127.0.0.1", port=emulator.port, tls=False, **options)
        clients.append(rest)
        return rest

    yield make
    for client in clients:
        client.close()


def channel_name(prefix: str = "ch") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_time(connect: Any) -> None:
    assert connect().time() > 1_600_000_000_000


def test_publish_and_history_payload_types(connect: Any) -> None:
    rest = connect()
    channel = rest.channels.get(channel_name())
    payloads: list[Any] = ["text", b"\x00\xffbin", {"a": [1, 2]}, [1, "x"], None]
    for index, data in enumerate(payloads):
        channel.publish(f"m{index}", data, extras={"headers": {"i": str(index)}})
    items = channel.history(direction="forwards").items
    assert [m.data for m in items] == payloads
    assert [m.name for m in items] == [f"m{i}" for i in range(5)]
    assert items[0].extras == {"headers": {"i": "0"}}


def test_encrypted_round_trip_across_formats(connect: Any, binary: bool) -> None:
    key = generate_random_key(256)
    name = channel_name("enc")
    writer = connect()
    writer.channels.get(name, cipher=key).publish(
        messages=[Message("s", "secret text"), Message("b", b"\x01\x02"), Message("j", {"k": "v"})]
    )
    reader = connect(use_binary_protocol=not binary)  # written in one format, read in the other
    items = reader.channels.get(name, cipher=key).history(direction="forwards").items
    assert [m.data for m in items] == ["secret text", b"\x01\x02", {"k": "v"}]
    plain = connect().channels.get(name).history().items  # no cipher: data stays encrypted
    assert all(m.encoding and "cipher" in m.encoding for m in plain)


def test_pagination_both_directions(connect: Any) -> None:
    channel = connect().channels.get(channel_name("page"))
    channel.publish(messages=[Message("n", str(i)) for i in range(7)])
    channel.publish(messages=[Message("n", str(i)) for i in range(7, 10)])
    forwards = channel.history(direction="forwards", limit=3)
    assert [m.data for m in forwards.items] == ["0", "1", "2"] and forwards.has_next()
    second = forwards.next()
    assert second is not None and [m.data for m in second.items] == ["3", "4", "5"]
    assert [m.data for m in forwards] == [str(i) for i in range(10)]
    backwards = channel.history(limit=4)
    assert [m.data for m in backwards] == [str(i) for i in reversed(range(10))]
    first = second.first()
    assert first is not None and [m.data for m in first.items] == ["0", "1", "2"]


def test_idempotent_publish_is_deduplicated(connect: Any) -> None:
    channel = connect().channels.get(channel_name("idem"))
    channel.publish(Message("a", "once", id="fixed-id"))
    channel.publish(Message("a", "once", id="fixed-id"))  # RSL1k5
    assert len(channel.history().items) == 1


def test_fallback_retry_keeps_ids(emulator: Emulator, connect: Any) -> None:
    rest = connect(fallback_hosts=["localhost"])  # the same server under another name
    channel = rest.channels.get(channel_name("retry"))
    emulator.faults.fail_rest(count=1, status=503, code=50300, path_prefix="/channels/")
    channel.publish(messages=[Message("a", "1"), Message("b", "2")])
    items = channel.history(direction="forwards").items
    assert [m.data for m in items] == ["1", "2"]
    assert items[0].id is not None and items[0].id.endswith(":0")


def test_presence_get_and_history_empty(connect: Any) -> None:
    channel = connect().channels.get(channel_name("pres"))
    assert channel.presence.get(limit=10).items == []
    assert channel.presence.history(limit=10).items == []


def test_status_stats_request_and_batch(connect: Any) -> None:
    rest = connect()
    name = channel_name("st")
    rest.channels.get(name).publish("x", "y")
    assert rest.channels.get(name).status().channel_id == name
    stats = rest.stats(limit=5, unit="minute")
    assert isinstance(stats.items, list)
    response = rest.request("GET", "/time")
    assert response.success and response.status_code == 200 and isinstance(response.items[0], int)
    missing = rest.request("GET", "/no/such/path")
    assert not missing.success and missing.status_code == 404
    other = channel_name("batch")
    result = rest.batch_publish(BatchPublishSpec([name, other], [Message("b", "1")]))
    assert not isinstance(result, list) and result.success_count == 2
    assert [m.data for m in rest.channels.get(other).history().items] == ["1"]


# -- auth paths ----------------------------------------------------------------------------
def test_token_from_key_and_explicit_token(connect: Any) -> None:
    rest = connect(use_token_auth=True)
    rest.channels.get(channel_name()).publish("a", "b")
    assert rest.auth.auth_mechanism == "token" and rest.auth.token_details is not None
    details = connect().auth.request_token(TokenParams(ttl=60, client_id="tok-client"))
    assert details.client_id == "tok-client"
    assert connect(token=details.token).auth.client_id is None  # a bare token string
    with_details = connect(token_details=details)
    with_details.channels.get(channel_name()).publish("a", "b")
    assert with_details.auth.client_id == "tok-client"


def test_auth_callback_kinds(connect: Any) -> None:
    signer = connect()
    kinds = [
        lambda p: signer.auth.create_token_request(p),
        lambda p: signer.auth.request_token(p),
        lambda p: signer.auth.request_token(p).token,
    ]
    for callback in kinds:
        rest = connect(auth_callback=callback)
        rest.channels.get(channel_name()).publish("a", "b")
        assert rest.auth.token_details is not None


class _AuthServer(BaseHTTPRequestHandler):
    signer: AblyRest
    seen: list[dict[str, str]]

    def _answer(self, params: dict[str, str]) -> None:
        self.seen.append(params)
        if params.get("as") == "text":
            body = self.signer.auth.request_token().token.encode()
            kind = "text/plain"
        else:
            body = json.dumps(
                self.signer.auth.create_token_request(TokenParams.from_dict(params)).to_dict()
            ).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(dict(parse_qsl(urlsplit(self.path).query)))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self._answer(dict(parse_qsl(self.rfile.read(length).decode())))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def auth_server(connect: Any) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_AuthServer,), {"signer": connect(), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/auth", seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_auth_url(connect: Any, auth_server: tuple[str, list[dict[str, str]]], method: str) -> None:
    url, seen = auth_server
    rest = connect(
        auth_url=url, auth_method=method, auth_params={"as": "request"}, client_id="url-client"
    )
    rest.channels.get(channel_name()).publish("a", "b")
    assert seen[-1]["clientId"] == "url-client" and seen[-1]["as"] == "request"
    assert rest.auth.client_id == "url-client"
    text = connect(auth_url=url, auth_method=method, auth_params={"as": "text"})
    text.channels.get(channel_name()).publish("a", "b")
    assert text.auth.token_details is not None


def test_renewal_after_server_expiry(emulator: Emulator, connect: Any) -> None:
    signer = connect()
    calls: list[int] = []

    def callback(params: TokenParams) -> TokenDetails:
        calls.append(1)
        details: TokenDetails = signer.auth.request_token(params)
        return details

    rest = connect(auth_callback=callback)
    channel = rest.channels.get(channel_name("renew"))
    channel.publish("a", "1")
    emulator.faults.expire_tokens()
    channel.publish("a", "2")  # 40142 -> renew -> retry (RSA4b)
    assert len(calls) == 2
    assert len(channel.history().items) == 2


def test_expired_token_without_renewal(emulator: Emulator, connect: Any) -> None:
    details = connect().auth.request_token()
    rest = connect(token=details.token)
    emulator.faults.expire_tokens()
    with pytest.raises(AblyException) as info:
        rest.channels.get(channel_name()).publish("a", "b")
    assert info.value.code == 40171


def test_client_id_rules(connect: Any) -> None:
    signer = connect()
    with pytest.raises(AuthenticationError) as info:
        connect(
            client_id="alice",
            auth_callback=lambda p: signer.auth.request_token(TokenParams(client_id="bob")),
        ).channels.get("x").publish("a", "b")
    assert info.value.code == 40102
    anonymous = connect(auth_callback=lambda p: signer.auth.request_token(TokenParams()))
    with pytest.raises(AblyException) as refused:
        anonymous.channels.get(channel_name()).publish(Message("a", "b", client_id="someone"))
    assert refused.value.code == 40012  # RSA8f2: the server refuses it
    wildcard = connect(
        auth_callback=lambda p: signer.auth.request_token(TokenParams(client_id="*"))
    )
    channel = wildcard.channels.get(channel_name())
    channel.publish(Message("a", "b", client_id="someone"))  # RSA8f4
    assert channel.history().items[0].client_id == "someone"
    assert wildcard.auth.client_id == "*"


def test_bad_key_is_refused(emulator: Emulator, connect: Any) -> None:
    key_name = emulator.root_key.split(":")[0]
    with pytest.raises(AuthenticationError) as info:
        connect(key=f"{key_name}:wrong-secret").channels.get("x").publish("a", "b")
    assert info.value.code == 40101


def test_typed_stats_read_the_emulators_current_and_older_forms(
    emulator: Emulator, binary: bool
) -> None:
    app = emulator.create_app({"keys": [{}]})
    rest = AblyRest(
        key=app["keys"][0]["keyStr"],
        endpoint="127.0.0.1",
        port=emulator.port,
        tls=False,
        use_binary_protocol=binary,
    )
    try:
        channel = rest.channels.get("typed-stats")
        for index in range(3):
            channel.publish("m", f"v{index}")
        rest.auth.request_token()
        current = rest.stats(limit=10).items  # X-Ably-Version 6: the ``entries`` form
        assert current and all(s.app_id == app["appId"] and s.schema for s in current)
        older = [Stats.from_dict(item) for item in rest.request("GET", "/stats", 2).items]
        assert older and all(s.schema is None and s.entries for s in older)
        for items in (current, older):
            assert sum(s.inbound.rest.messages.count for s in items) == 3
            assert sum(s.token_requests.succeeded for s in items) == 1
            assert sum(s.api_requests.succeeded for s in items) >= 4
            assert all(s.raw for s in items)
    finally:
        rest.close()
        emulator.delete_app(app["appId"])
