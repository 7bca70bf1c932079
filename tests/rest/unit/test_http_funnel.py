"""The REST funnel: headers, formats, fallback hosts, retries, stickiness, errors (RSC7-RSC15)."""

from __future__ import annotations

import base64
import threading
from typing import Any

import msgpack
import pytest

from ably_bridge.clock import FakeClock
from ably_bridge.errors import AblyException
from ably_bridge.transports.http import HttpTransportError
from ably_bridge.transports.mock_http import (
    MockHttpTransport,
    RecordedRequest,
    error_body,
    response,
)
from tests.rest.conftest import KEY, PRIMARY, MakeRest

DEFAULT_FALLBACKS = {f"main.{c}.fallback.ably-realtime.com" for c in "abcde"}


def test_standard_headers_msgpack(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", msgpack_body=[1])
    assert make_rest().time() == 1
    headers = mock.last.headers
    assert headers["X-Ably-Version"] == "6"  # RSC7e
    assert headers["Ably-Agent"].startswith("ably-bridge/")  # RSC7d
    assert "python/" in headers["Ably-Agent"]
    assert headers["Accept"] == "application/x-msgpack"  # RSC8a
    assert "Content-Type" not in headers
    assert mock.last.host == PRIMARY
    assert mock.last.scheme == "https"


def test_agents_option_is_appended(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", json=[1])
    make_rest(agents={"celery": "5.3", "bare": None}).time()
    agent = mock.last.headers["Ably-Agent"]
    assert agent.endswith("celery/5.3 bare")  # RSC7d6a


def test_json_protocol_headers_and_body(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/channels/c/messages", status=201, json={"serials": ["s"]})
    make_rest(use_binary_protocol=False).channels.get("c").publish("n", "d")
    sent = mock.last
    assert sent.headers["Accept"] == "application/json"  # RSC8b
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.decoded_body()["data"] == "d"


def test_msgpack_request_body(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/channels/c/messages", status=201, msgpack_body={"serials": ["s"]})
    make_rest().channels.get("c").publish("n", b"\x00\x01")
    sent = mock.last
    assert sent.headers["Content-Type"] == "application/x-msgpack"
    assert msgpack.unpackb(sent.body or b"", raw=False)["data"] == b"\x00\x01"


def test_response_decoded_by_its_own_content_type(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    # RSC8d: JSON answer to a msgpack client is still read.
    mock.add(path="/time", json=[42])
    assert make_rest(use_binary_protocol=True).time() == 42


@pytest.mark.parametrize(
    ("status", "code", "expected_status"),
    [(200, 40013, 400), (500, 50000, 500), (401, 40100, 401)],
)
def test_unsupported_content_type(
    make_rest: MakeRest, mock: MockHttpTransport, status: int, code: int, expected_status: int
) -> None:
    # RSC8e1/RSC8e2
    mock.add(path="/time", status=status, body=b"<html>", headers={"Content-Type": "image/png"})
    with pytest.raises(AblyException) as info:
        make_rest(fallback_hosts=[]).time()
    assert info.value.status_code == expected_status
    assert info.value.code == code
    if status < 400:
        assert "content type" in info.value.message


def test_error_from_body(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", status=401, json=error_body(40160, 401, "denied"))
    with pytest.raises(AblyException) as info:
        make_rest().stats()
    assert (info.value.code, info.value.status_code, info.value.message) == (40160, 401, "denied")


def test_error_from_msgpack_body(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", status=404, msgpack_body=error_body(40400, 404, "nope"))
    with pytest.raises(AblyException) as info:
        make_rest().stats()
    assert info.value.code == 40400


def test_error_from_headers_when_body_is_empty(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(
        path="/stats",
        status=400,
        headers={"X-Ably-Errorcode": "40003", "X-Ably-Errormessage": "bad limit"},
    )
    with pytest.raises(AblyException) as info:
        make_rest().stats()
    assert (info.value.code, info.value.status_code, info.value.message) == (
        40003,
        400,
        "bad limit",
    )


def test_error_without_details_uses_status(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", status=404)
    with pytest.raises(AblyException) as info:
        make_rest().stats()
    assert (info.value.code, info.value.status_code) == (40400, 404)


def test_errors_carry_the_response_headers(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/stats",
        status=429,
        json=error_body(42910, 429, "rate limit"),
        headers={"Retry-After": "7", "X-Ably-Serverid": "s1"},
    )
    mock.add(path="/stats", status=400, headers={"X-Ably-Errorcode": "40003"})
    mock.add(path="/stats", status=502, body=b"\x93garbage", headers={"Content-Type": "x/y"})
    rest = make_rest(fallback_hosts=[])
    errors = []
    for _ in range(3):
        with pytest.raises(AblyException) as info:
            rest.stats()
        errors.append(info.value)
    limited, by_header, undecodable = errors
    assert limited.code == 42910 and limited.headers is not None
    assert limited.headers.get("retry-after") == "7"  # case-insensitive, no thread-local
    assert "Retry-After" not in str(limited) + repr(limited) + str(limited.to_dict())
    assert by_header.headers is not None and by_header.headers["X-Ably-Errorcode"] == "40003"
    assert undecodable.status_code == 502 and undecodable.headers is not None
    assert AblyException("local", 40000).headers is None


# -- fallback (RSC15) -----------------------------------------------------------------
def test_no_fallback_when_fallback_hosts_empty(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/time", status=500, json=error_body(50000, 500), times=None)
    with pytest.raises(AblyException) as info:
        make_rest(fallback_hosts=[]).time()  # RSC15m
    assert info.value.code == 50000
    assert mock.hosts == [PRIMARY]


def test_no_fallback_for_explicit_endpoint_host(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/time", status=503, times=None)
    with pytest.raises(AblyException):
        make_rest(endpoint="example.com").time()  # REC2c2
    assert mock.hosts == ["example.com"]


def test_fallbacks_tried_in_random_order_up_to_retry_count(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/time", status=500, json=error_body(50000, 500), times=None)
    orders = set()
    for _ in range(8):
        mock.requests.clear()
        with pytest.raises(AblyException):
            make_rest().time()
        assert mock.hosts[0] == PRIMARY
        assert len(mock.hosts) == 4  # 1 + http_max_retry_count (3)
        assert set(mock.hosts[1:]) <= DEFAULT_FALLBACKS
        assert len(set(mock.hosts[1:])) == 3
        orders.add(tuple(mock.hosts[1:]))
    assert len(orders) > 1  # RSC15a: random, not fixed


def test_retry_count_option(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", status=502, times=None)
    with pytest.raises(AblyException):
        make_rest(http_max_retry_count=1).time()
    assert len(mock.hosts) == 2
    mock.requests.clear()
    with pytest.raises(AblyException):
        make_rest(http_max_retry_count=10).time()
    assert len(mock.hosts) == 6  # primary + all five fallbacks


def test_custom_fallback_hosts(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host=PRIMARY, path="/time", status=500)
    mock.add(path="/time", json=[5])
    assert make_rest(fallback_hosts=["fb.example.com"]).time() == 5  # REC2a2
    assert mock.hosts == [PRIMARY, "fb.example.com"]
    assert mock.last.headers["Host"] == "fb.example.com"  # RSC15j


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504])
def test_5xx_qualifies(make_rest: MakeRest, mock: MockHttpTransport, status: int) -> None:
    mock.add(host=PRIMARY, path="/time", status=status)
    mock.add(path="/time", json=[7])
    assert make_rest().time() == 7
    assert mock.hosts[0] == PRIMARY and mock.hosts[1] in DEFAULT_FALLBACKS


@pytest.mark.parametrize("status", [400, 401, 404, 505])
def test_other_statuses_do_not_qualify(
    make_rest: MakeRest, mock: MockHttpTransport, status: int
) -> None:
    mock.add(path="/time", status=status, json=error_body(status * 100, status), times=None)
    with pytest.raises(AblyException):
        make_rest().time()
    assert mock.hosts == [PRIMARY]


def test_cloudfront_4xx_qualifies(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host=PRIMARY, path="/time", status=403, headers={"Server": "CloudFront"})
    mock.add(path="/time", json=[8])
    assert make_rest().time() == 8  # RSC15l4
    assert len(mock.hosts) == 2


@pytest.mark.parametrize("timeout", [True, False])
def test_network_errors_qualify(
    make_rest: MakeRest, mock: MockHttpTransport, timeout: bool
) -> None:
    error = HttpTransportError("boom", retryable=True, timeout=timeout)
    mock.add(host=PRIMARY, path="/time", error=error)
    mock.add(path="/time", json=[9])
    assert make_rest().time() == 9  # RSC15l1, RSC15l2
    assert len(mock.hosts) == 2


def test_network_error_on_every_host_raises_with_cause(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(
        path="/time", error=HttpTransportError("slow", retryable=True, timeout=True), times=None
    )
    with pytest.raises(AblyException) as info:
        make_rest().time()
    assert info.value.code == 50003
    assert isinstance(info.value.cause, HttpTransportError)
    assert len(mock.hosts) == 4


def test_non_retryable_transport_error_is_not_retried(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/time", error=HttpTransportError("bad url", retryable=False), times=None)
    with pytest.raises(AblyException) as info:
        make_rest().time()
    assert info.value.code == 50002
    assert mock.hosts == [PRIMARY]


def test_timeouts_passed_to_transport(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", json=[1])
    make_rest(http_open_timeout=1.5, http_request_timeout=7.0).time()
    assert mock.last.timeout == (1.5, 7.0)  # RSC13


def test_retry_duration_bounds_fallbacks(
    make_rest: MakeRest, mock: MockHttpTransport, clock: FakeClock
) -> None:
    def slow_failure(request: RecordedRequest) -> Any:
        clock.advance(6.0)  # each attempt takes 6 s
        return response(500)

    mock.add(path="/time", handler=slow_failure, times=None)
    with pytest.raises(AblyException):
        make_rest(http_max_retry_duration=10.0).time()
    assert len(mock.hosts) == 2  # the third attempt would start after 12 s > 10 s


def test_successful_fallback_is_remembered(
    make_rest: MakeRest, mock: MockHttpTransport, clock: FakeClock
) -> None:
    mock.add(host=PRIMARY, path="/time", status=500)
    mock.add(path="/time", json=[1], times=None)
    rest = make_rest(fallback_retry_timeout=60.0)
    rest.time()
    fallback = mock.hosts[1]
    rest.time()
    rest.time()
    assert mock.hosts == [PRIMARY, fallback, fallback, fallback]  # RSC15f
    clock.advance(61.0)
    rest.time()
    assert mock.hosts[-1] == PRIMARY  # expired: primary again


def test_remembered_fallback_dropped_on_failure(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(host=PRIMARY, path="/time", status=500)
    mock.add(path="/time", json=[1])
    rest = make_rest()
    rest.time()
    fallback = mock.hosts[1]
    mock.add(host=fallback, path="/time", status=503)
    mock.add(host=PRIMARY, path="/time", json=[2])
    assert rest.time() == 2
    assert mock.hosts[2:] == [fallback, PRIMARY]  # RSC15f: sequence starts again at primary
    mock.add(path="/time", json=[3])
    rest.time()
    assert mock.hosts[-1] == PRIMARY


def test_expired_fallback_not_revived_by_late_success(
    make_rest: MakeRest, mock: MockHttpTransport, clock: FakeClock
) -> None:
    release = threading.Event()
    arrived = threading.Event()
    calls = {"n": 0}

    def handler(request: RecordedRequest) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return response(500)
        if calls["n"] == 3:
            arrived.set()
            assert release.wait(5)
        return response(json=[1])

    mock.handler = handler
    rest = make_rest(fallback_retry_timeout=0.1)
    rest.time()
    fallback = mock.hosts[1]
    held = threading.Thread(target=rest.time)
    held.start()
    assert arrived.wait(5)
    clock.advance(0.15)
    rest.time()  # request 4: pin expired -> primary
    release.set()
    held.join(5)
    rest.time()  # request 5: the late success did not re-pin
    assert mock.hosts == [PRIMARY, fallback, fallback, PRIMARY, PRIMARY]


def test_request_id_same_on_fallback(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host=PRIMARY, path="/time", status=500)
    mock.add(path="/time", json=[1])
    make_rest(add_request_ids=True).time()
    ids = [r.query["request_id"] for r in mock.requests]
    assert len(ids) == 2 and ids[0] == ids[1]  # RSC7c
    assert len(base64.urlsafe_b64decode(ids[0] + "==")) >= 9


def test_no_request_id_by_default(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", json=[1])
    make_rest().time()
    assert "request_id" not in mock.last.query


# -- Basic auth over plain HTTP (RSA1, RSC18) ----------------------------------------
def test_basic_over_http_refused_before_sending(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    with pytest.raises(AblyException) as info:
        make_rest(tls=False, endpoint="example.com").stats()
    assert info.value.code == 40103
    assert mock.requests == []


def test_basic_over_http_allowed_to_loopback(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[])
    make_rest(tls=False, endpoint="127.0.0.1", port=8080).stats()
    assert mock.last.scheme == "http" and mock.last.port == 8080
    assert mock.last.headers["Authorization"].startswith("Basic ")
    assert mock.last.headers["Host"] == "127.0.0.1:8080"


def test_basic_over_http_allowed_with_insecure_option(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/stats", json=[])
    make_rest(tls=False, endpoint="example.com", insecure_allow_basic_over_http=True).stats()
    assert mock.last.headers["Authorization"] == "Basic " + base64.b64encode(KEY.encode()).decode()


def test_token_over_http_allowed(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[])
    make_rest(tls=False, endpoint="example.com", token="tok").stats()  # RSA3a
    assert mock.last.headers["Authorization"].startswith("Bearer ")
