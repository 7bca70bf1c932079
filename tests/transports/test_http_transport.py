"""The HTTP seam: requests' errors translated once, headers, and the shipped mock transport."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests

from ably_bridge.emulator.server import Emulator
from ably_bridge.transports.http import (
    Headers,
    HttpTransportError,
    RequestsTransport,
    translate_error,
)
from ably_bridge.transports.mock_http import MockHttpTransport, error_body, response


def test_headers_are_case_insensitive_and_redact_auth() -> None:
    headers = Headers({"Content-Type": "a/b", "Authorization": "Basic c2VjcmV0"})
    assert headers["content-type"] == "a/b" and "CONTENT-TYPE" in headers and len(headers) == 2
    assert list(headers) == ["Content-Type", "Authorization"]
    assert "c2VjcmV0" not in repr(headers)


@pytest.mark.parametrize(
    ("exc", "retryable", "timeout"),
    [
        (requests.exceptions.ConnectTimeout(), True, True),
        (requests.exceptions.ReadTimeout(), True, True),
        (requests.exceptions.ConnectionError(), True, False),
        (requests.exceptions.SSLError(), True, False),
        (requests.exceptions.InvalidURL(), False, False),
        (requests.exceptions.MissingSchema(), False, False),
    ],
)
def test_error_translation(
    exc: requests.exceptions.RequestException, retryable: bool, timeout: bool
) -> None:
    error = translate_error(exc)
    assert (error.retryable, error.timeout) == (retryable, timeout)
    assert error.cause is exc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_retryable() -> None:
    transport = RequestsTransport()
    with pytest.raises(HttpTransportError) as info:
        transport.request("GET", f"http://127.0.0.1:{_free_port()}/time", {}, None, (1.0, 1.0))
    assert info.value.retryable and not info.value.timeout
    transport.close()


def test_real_request_against_emulator() -> None:
    session = requests.Session()
    transport = RequestsTransport(session)
    with Emulator() as emu:
        answer = transport.request(
            "GET", emu.url + "/time", {"Accept": "application/json"}, None, (2.0, 2.0)
        )
    assert answer.status == 200 and answer.content_type == "application/json"
    assert answer.body.startswith(b"[")
    transport.close()  # a given session is not closed by the transport
    assert session.adapters


def test_proxy_environment_is_honoured_and_read_once_per_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead_proxy = f"http://127.0.0.1:{_free_port()}"
    with Emulator() as emu:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", dead_proxy)
        through_proxy = RequestsTransport()
        with pytest.raises(HttpTransportError):  # the unreachable proxy was used
            through_proxy.request("GET", emu.url + "/time", {}, None, (1.0, 1.0))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        # Same transport: the origin's settings were read once, so still the proxy.
        with pytest.raises(HttpTransportError):
            through_proxy.request("GET", emu.url + "/time", {}, None, (1.0, 1.0))
        through_proxy.close()
        direct = RequestsTransport()  # a new transport reads NO_PROXY and goes direct
        assert direct.request("GET", emu.url + "/time", {}, None, (2.0, 2.0)).status == 200
        direct.close()


def test_mock_rules_order_counts_and_recording() -> None:
    mock = MockHttpTransport()
    mock.add(host="a.example", path="/x", status=500, times=2)
    mock.add(path="/x", json={"ok": 1}, times=None)
    mock.add(path="/err", error=HttpTransportError("down", retryable=True))
    codes = [mock.request("GET", "https://a.example/x", {}, None, (1, 1)).status for _ in range(3)]
    assert codes == [500, 500, 200]
    with pytest.raises(HttpTransportError):
        mock.request("GET", "https://b.example/err", {}, None, (1, 1))
    with pytest.raises(LookupError):
        mock.request("GET", "https://b.example/none", {}, None, (1, 1))
    assert mock.hosts == ["a.example"] * 3 + ["b.example"] * 2
    assert mock.last.path == "/none"
    mock.reset()
    assert mock.requests == []


def test_mock_handler_and_helpers() -> None:
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request.query)
        return response(201, msgpack_body={"a": b"\x00"})

    mock = MockHttpTransport(handler=handler)
    answer = mock.request(
        "POST", "https://h/p?q=1", {"Content-Type": "application/json"}, b'{"b":2}', (1.0, 2.0)
    )
    assert answer.status == 201 and answer.content_type == "application/x-msgpack"
    assert seen == [{"q": "1"}] and mock.last.decoded_body() == {"b": 2}
    assert mock.last.timeout == (1.0, 2.0)
    assert error_body(40000, 400)["error"]["code"] == 40000
    assert response(body="t").headers["Content-Type"] == "text/plain"
