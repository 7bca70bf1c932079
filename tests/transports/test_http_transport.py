"""The HTTP seam: requests' errors translated once, headers, and the shipped mock transport."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3 import exceptions as u3

from ably_bridge.emulator.server import Emulator
from ably_bridge.transports.http import (
    Headers,
    HttpTransportError,
    RequestsTransport,
    translate_error,
    translate_urllib3_error,
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


@pytest.mark.parametrize(
    ("exc", "retryable", "timeout"),
    [
        (u3.ConnectTimeoutError("slow"), True, True),
        (u3.ReadTimeoutError(None, "/", "slow"), True, True),  # type: ignore[arg-type]
        (u3.NewConnectionError(None, "refused"), True, False),  # type: ignore[arg-type]
        (u3.ProtocolError("reset"), True, False),
        (u3.SSLError("bad certificate"), True, False),
        (ConnectionResetError(), True, False),
        (u3.LocationParseError("http://[bad"), False, False),
    ],
)
def test_urllib3_error_translation(exc: BaseException, retryable: bool, timeout: bool) -> None:
    error = translate_urllib3_error(exc)
    assert (error.retryable, error.timeout) == (retryable, timeout)
    assert error.cause is exc


class _Handler(BaseHTTPRequestHandler):
    """Answers every request with two Link headers and echoes what it received."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Handler.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Link", '<./messages?page=2>; rel="next"')
        self.send_header("Link", '<./messages?page=1>; rel="first"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def plain_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_direct_path_sends_headers_and_body_and_joins_repeated_headers(plain_server: str) -> None:
    transport = RequestsTransport()
    headers = {"Host": "rest.example", "X-Ably-Version": "2", "Content-Type": "a/b"}
    answer = transport.request("POST", plain_server + "/c/x?y=1", headers, b"payload", (2.0, 2.0))
    assert (answer.status, answer.body) == (200, b"ok")
    # Two Link headers read as one comma-joined value, as requests presents them.
    assert answer.headers["link"] == (
        '<./messages?page=2>; rel="next", <./messages?page=1>; rel="first"'
    )
    method, path, sent, body = _Handler.seen[0]
    assert (method, path, body) == ("POST", "/c/x?y=1", b"payload")
    assert sent["Host"] == "rest.example" and sent["X-Ably-Version"] == "2"
    assert "Cookie" not in sent and "Authorization" not in sent
    transport.close()


def test_a_proxied_origin_goes_through_the_proxy(
    plain_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", plain_server)  # the test server plays the proxy
    transport = RequestsTransport()
    answer = transport.request(
        "POST", "http://rest.example.invalid/channels/x/messages", {}, b"{}", (2.0, 2.0)
    )
    assert answer.status == 200
    method, path, _, body = _Handler.seen[0]
    assert (method, path, body) == (
        "POST",
        "http://rest.example.invalid/channels/x/messages",
        b"{}",
    )
    transport.close()


def test_a_pool_closed_under_the_transport_is_reopened(plain_server: str) -> None:
    transport = RequestsTransport()
    assert transport.request("GET", plain_server + "/1", {}, None, (2.0, 2.0)).status == 200
    # What the adapter's pool manager does to a pool it evicts, or on close().
    transport._session.close()
    assert transport.request("GET", plain_server + "/2", {}, None, (2.0, 2.0)).status == 200
    assert [path for _, path, _, _ in _Handler.seen] == ["/1", "/2"]
    transport.close()


def test_a_silent_server_is_a_retryable_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts into the backlog and never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/time"
        transport = RequestsTransport()
        with pytest.raises(HttpTransportError) as info:
            transport.request("GET", url, {}, None, (1.0, 0.2))
        assert info.value.retryable and info.value.timeout
        transport.close()


def test_tls_is_verified_against_the_configured_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with Emulator(tls=True, cert_dir=tmp_path) as emu:
        untrusting = RequestsTransport()  # the system bundle does not know the emulator
        with pytest.raises(HttpTransportError) as info:
            untrusting.request("GET", emu.url + "/time", {}, None, (2.0, 2.0))
        # (urllib3's error on the direct path, requests' wrapping it on the public path)
        cause = info.value.cause
        assert info.value.retryable
        assert isinstance(cause, u3.SSLError | requests.exceptions.SSLError)
        untrusting.close()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.ca_file))
        trusting = RequestsTransport()
        assert trusting.request("GET", emu.url + "/time", {}, None, (2.0, 2.0)).status == 200
        trusting.close()


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
