"""AblyRest: construction, time, stats, request, batch publish, pagination, logging, close."""

from __future__ import annotations

import logging

import pytest

from ably_bridge.errors import AblyException
from ably_bridge.options import ClientOptions
from ably_bridge.protocol.models import Message
from ably_bridge.protocol.stats import Stats
from ably_bridge.rest import AblyRest, BatchPublishSpec, BatchResult, HttpPaginatedResponse
from ably_bridge.rest.pagination import parse_links
from ably_bridge.transports.mock_http import MockHttpTransport, error_body
from tests.rest.conftest import KEY, PRIMARY, MakeRest, bearer_token


# -- construction (RSC1) -----------------------------------------------------------------
def test_construction_forms(mock: MockHttpTransport) -> None:
    assert AblyRest(KEY, transport=mock).options.key == KEY
    assert AblyRest(key=KEY, transport=mock).options.key == KEY
    opts = ClientOptions(key=KEY, client_id="x")
    rest = AblyRest(opts, transport=mock, tls=False)
    assert rest.options.client_id == "x" and rest.options.tls is False
    with pytest.raises(TypeError):
        AblyRest(42, transport=mock)  # type: ignore[arg-type]
    with pytest.raises(AblyException) as info:
        AblyRest("bad:key", transport=mock)
    assert info.value.code == 40005


def test_context_manager_closes_transport(mock: MockHttpTransport) -> None:
    with AblyRest(KEY, transport=mock) as rest:
        assert "keySecret" not in repr(rest)
    assert mock.closed
    rest.close()  # idempotent


def test_real_transport_is_default() -> None:
    rest = AblyRest(KEY)
    assert type(rest.http.transport).__name__ == "RequestsTransport"
    rest.close()


# -- time (RSC16) -----------------------------------------------------------------------
def test_time_is_unauthenticated(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", json=[1_700_000_123_456])
    assert make_rest(token="t").time() == 1_700_000_123_456
    assert "Authorization" not in mock.last.headers and mock.last.method == "GET"


def test_time_error(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", status=404, json=error_body(40400, 404))
    with pytest.raises(AblyException):
        make_rest().time()


# -- stats (RSC6) ------------------------------------------------------------------------
def test_stats_params_and_items(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/stats",
        json=[
            {
                "intervalId": "2024-01-01:10:05",
                "unit": "minute",
                "entries": {"messages.all.all.count": 5},
            }
        ],
    )
    page = make_rest().stats(start=1, end=2, direction="forwards", limit=5, unit="hour")
    assert mock.last.query == {
        "start": "1",
        "end": "2",
        "direction": "forwards",
        "limit": "5",
        "unit": "hour",
    }
    assert isinstance(page.items[0], Stats)
    assert page.items[0].entries["messages.all.all.count"] == 5


def test_stats_no_params_and_bad_unit(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[])
    assert make_rest().stats().items == []
    assert mock.last.query == {}
    with pytest.raises(AblyException):
        make_rest().stats(unit="week")


# -- pagination (TG) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected_next"),
    [
        ('<./messages?start=1&limit=2>; rel="next"', "/channels/ch/messages?start=1&limit=2"),
        ('</channels/ch/messages?page=2>; rel="next"', "/channels/ch/messages?page=2"),
        (
            '<https://x.example.com/channels/ch/messages?page=3>; rel="next"',
            "/channels/ch/messages?page=3",
        ),
        ("<./messages?p=4>; rel=next", "/channels/ch/messages?p=4"),
    ],
)
def test_parse_links_forms(header: str, expected_next: str) -> None:
    assert parse_links(header, "/channels/ch/messages")["next"] == expected_next


def test_parse_links_several() -> None:
    header = (
        '<./messages?a=1>; rel="first", <./messages?a=2>; rel="current", '
        '<./messages?a=3>; rel="next"'
    )
    links = parse_links(header, "/channels/ch/messages")
    assert links == {
        "first": "/channels/ch/messages?a=1",
        "current": "/channels/ch/messages?a=2",
        "next": "/channels/ch/messages?a=3",
    }
    assert parse_links('<./x?y=1>; rel="first current"', "/a/b") == {
        "first": "/a/x?y=1",
        "current": "/a/x?y=1",
    }
    assert parse_links(None, "/x") == {}
    assert parse_links([header], "/channels/ch/messages")["first"].endswith("a=1")


def test_pages_next_first_and_iteration(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    path = "/channels/ch/messages"
    mock.add(
        path=path,
        json=[{"id": "1", "data": "a"}, {"id": "2", "data": "b"}],
        headers={
            "Link": '<./messages?limit=2&cursor=0>; rel="first", '
            '<./messages?limit=2&cursor=2>; rel="next"'
        },
    )
    mock.add(
        path=path,
        json=[{"id": "3", "data": "c"}],
        headers={"Link": '<./messages?limit=2&cursor=0>; rel="first"'},
    )
    mock.add(path=path, json=[{"id": "1", "data": "a"}, {"id": "2", "data": "b"}], times=None)
    rest = make_rest(token="tok")
    page = rest.channels.get("ch").history(limit=2)
    assert [m.data for m in page.items] == ["a", "b"] and page.has_next() and not page.is_last()
    second = page.next()
    assert second is not None and [m.data for m in second.items] == ["c"] and second.is_last()
    assert mock.last.query == {"limit": "2", "cursor": "2"}
    assert bearer_token(mock.last.headers["Authorization"]) == "tok"  # pages keep auth
    assert mock.last.headers["X-Ably-Version"] == "6"
    assert second.next() is None  # TG4
    first = second.first()
    assert first is not None and [m.id for m in first.items] == ["1", "2"]
    assert mock.last.query == {"limit": "2", "cursor": "0"}


def test_iterating_walks_all_pages(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/stats",
        json=[{"intervalId": "2024-01-01:10:05"}],
        headers={"Link": '<./stats?p=2>; rel="next"'},
    )
    mock.add(path="/stats", json=[{"intervalId": "2024-01-01:10:06"}])
    ids = [s.interval_id for s in make_rest().stats()]
    assert ids == ["2024-01-01:10:05", "2024-01-01:10:06"]
    assert mock.last.query == {"p": "2"}


def test_error_on_next(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/stats", json=[], headers={"Link": '<./stats?p=2>; rel="next"'})
    mock.add(path="/stats", status=400, json=error_body(40011, 400, "stale"))
    page = make_rest().stats()
    with pytest.raises(AblyException) as info:
        page.next()
    assert info.value.code == 40011


# -- request (RSC19) ---------------------------------------------------------------------
def test_request_success(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(method="POST", path="/custom", status=201, json={"ok": True}, headers={"X-Test": "1"})
    response = make_rest(use_binary_protocol=False).request(
        "post",
        "custom",
        3,
        params={"a": "b"},
        body={"x": 1},
        headers={"X-H": "v", "Authorization": "no"},
    )
    assert isinstance(response, HttpPaginatedResponse)
    assert response.status_code == 201 and response.success and response.items == [{"ok": True}]
    assert response.headers["X-Test"] == "1" and response.error_code is None
    sent = mock.last
    assert sent.method == "POST" and sent.path == "/custom" and sent.query == {"a": "b"}
    assert sent.headers["X-Ably-Version"] == "3"  # RSC19f1
    assert sent.headers["X-H"] == "v"
    assert sent.headers["Authorization"].startswith("Basic ")  # RSC19b
    assert sent.decoded_body() == {"x": 1}


def test_request_error_is_returned(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/bad",
        status=404,
        json=error_body(40400, 404, "nope"),
        headers={"X-Ably-Errorcode": "40400", "X-Ably-Errormessage": "nope"},
    )
    response = make_rest().request("GET", "/bad")
    assert not response.success and response.status_code == 404
    assert response.error_code == 40400 and response.error_message == "nope"  # HP6, HP7
    assert mock.hosts == [PRIMARY]  # 4xx: no fallback


def test_request_items_forms_and_pagination(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/list", json=[1, 2], headers={"Link": '<./list?p=2>; rel="next"'})
    mock.add(path="/list", status=204)
    response = make_rest().request("GET", "/list")
    assert response.items == [1, 2] and response.has_next()
    following = response.next()
    assert isinstance(following, HttpPaginatedResponse)
    assert following.items == [] and following.status_code == 204  # HP3 empty


def test_request_falls_back_on_5xx(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(host=PRIMARY, path="/x", status=503)
    mock.add(path="/x", json={"a": 1})
    assert make_rest().request("GET", "/x").items == [{"a": 1}]
    assert len(mock.requests) == 2


# -- batch publish (RSC22) ----------------------------------------------------------------
def test_batch_publish_single_spec(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        method="POST",
        path="/messages",
        status=201,
        json=[
            {
                "successCount": 1,
                "failureCount": 1,
                "results": [
                    {"channel": "a", "messageId": "m", "serials": ["s"]},
                    {"channel": "b", "error": {"code": 40160, "statusCode": 401, "message": "no"}},
                ],
            }
        ],
    )
    rest = make_rest(use_binary_protocol=False)
    result = rest.batch_publish(BatchPublishSpec(["a", "b"], [Message("n", "d")]))
    assert isinstance(result, BatchResult)
    assert (result.success_count, result.failure_count) == (1, 1)
    assert result.results[0]["serials"] == ["s"]
    assert (
        isinstance(result.results[1]["error"], AblyException)
        and result.results[1]["error"].code == 40160
    )
    body = mock.last.decoded_body()
    assert body[0]["channels"] == ["a", "b"] and body[0]["messages"][0]["data"] == "d"
    assert body[0]["messages"][0]["id"].endswith(":0")  # RSC22d


def test_batch_publish_many_specs_from_dicts(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(
        path="/messages",
        json=[
            {"successCount": 1, "failureCount": 0, "results": [{"channel": "a"}]},
            {"successCount": 1, "failureCount": 0, "results": [{"channel": "b"}]},
        ],
    )
    results = make_rest().batch_publish(
        [
            {"channels": "a", "messages": {"name": "x", "data": "1"}},
            {"channels": ["b"], "messages": [Message("y", "2")]},
        ]
    )
    assert isinstance(results, list) and [r.results[0]["channel"] for r in results] == ["a", "b"]
    with pytest.raises(AblyException):
        make_rest().batch_publish([])
    with pytest.raises(AblyException):
        make_rest().batch_publish({"channels": [], "messages": [Message("x", "y")]})


# -- logging (TO3b, TO3c) ----------------------------------------------------------------------
class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_log_handler_and_level_and_no_secrets(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    handler = _ListHandler()
    mock.add(host=PRIMARY, path="/stats", status=500)
    mock.add(
        path="/keys/appId.keyId/requestToken",
        json={"token": "tok-SECRET-123", "expires": 1_800_000_000_000},
    )
    mock.add(path="/stats", json=[])
    rest = make_rest(
        log_handler=handler, log_level=logging.DEBUG, use_token_auth=True, add_request_ids=True
    )
    rest.stats()
    rest.close()
    text = "\n".join(handler.lines)
    assert "fallback" in text  # something was logged through the handler
    for secret in ("keySecret", "tok-SECRET-123", "dG9rLVNFQ1JFVC0xMjM"):
        assert secret not in text
    assert handler not in logging.getLogger("ably_bridge").handlers  # on the client's logger
