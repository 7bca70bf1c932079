"""Connection failures name where the client went and the likely cause (real sockets)."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator

import pytest

from ably_bridge.emulator import Emulator
from ably_bridge.errors import AblyException
from ably_bridge.rest import AblyRest
from ably_bridge.transports.failures import describe_failure, origin_of
from ably_bridge.transports.http import HttpTransportError, RequestsTransport


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def plain() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def tls() -> Iterator[Emulator]:
    with Emulator(tls=True) as emulator:
        yield emulator


def _fail(url: str) -> HttpTransportError:
    transport = RequestsTransport()
    try:
        with pytest.raises(HttpTransportError) as info:
            transport.request("GET", url, {}, None, (2.0, 2.0))
    finally:
        transport.close()
    return info.value


def test_a_refused_connection_names_the_port() -> None:
    port = _free_port()
    error = _fail(f"http://127.0.0.1:{port}/time")
    assert error.message.startswith(f"cannot connect to 127.0.0.1:{port}: connection refused")
    assert error.retryable and not error.timeout


def test_tls_to_a_plain_http_server_says_to_turn_tls_off(plain: Emulator) -> None:
    error = _fail(f"https://127.0.0.1:{plain.port}/time")
    assert f"127.0.0.1:{plain.port}" in error.message
    assert "plain HTTP" in error.message and "tls=False" in error.message


def test_plain_http_to_a_tls_server_says_to_turn_tls_on(tls: Emulator) -> None:
    error = _fail(f"http://127.0.0.1:{tls.port}/time")
    assert "expects TLS" in error.message and "tls=True" in error.message


def test_an_untrusted_certificate_is_named(tls: Emulator) -> None:
    error = _fail(f"https://127.0.0.1:{tls.port}/time")
    assert "certificate is not trusted" in error.message


def test_the_rest_client_error_carries_it_without_inventing_a_response() -> None:
    port = _free_port()
    rest = AblyRest(key="a.b:c", endpoint="127.0.0.1", port=port, tls=False)
    with pytest.raises(AblyException) as info:
        rest.time()
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in info.value.message
    assert isinstance(info.value.__cause__, HttpTransportError)
    rest.close()


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "does not resolve"),
        (ssl.SSLCertVerificationError("certificate verify failed"), "not trusted"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "plain HTTP"),
        (http.client.RemoteDisconnected("closed"), "expects TLS"),
        (ConnectionResetError(104, "reset"), "reset the connection"),
        (ssl.SSLError(1, "[SSL] something else"), "TLS failed"),
        (TimeoutError("timed out"), "no answer in time"),
        (ValueError("odd"), "ValueError: odd"),
        (ValueError(), "ValueError"),
    ],
)
def test_describe_failure(exc: BaseException, words: str) -> None:
    assert words in describe_failure(exc)


def test_describe_failure_follows_the_chain() -> None:
    outer = RuntimeError("wrapped")
    outer.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert describe_failure(outer).startswith("connection refused")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
        ("https://rest.ably.io/time", "rest.ably.io:443"),
        ("ws://h/", "h:80"),
        ("wss://[::1]:9/", "[::1]:9"),
        ("http://[bad", "http://[bad"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin
