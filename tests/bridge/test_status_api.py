"""GET /status and GET / on a real bridge: the emulator, a redis-server of the test's own, the
realtime client; every answer is validated against docs/status.schema.json.

The bridge runs in a thread (tests/bridge/test_daemon_integration.py's ``Running``);
the test stops its own Redis (the sink and the checkpoints) and starts it again,
and waits on what /status says with deadlines, never fixed sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
import requests

from ably_bridge.bridge.config import ConfigError, parse_config
from ably_bridge.emulator import Emulator
from tests.bridge.status_support import get_status
from tests.bridge.test_daemon_integration import (
    Running,
    bridge_config,
    message_ids,
    publish_n,
    rest_for,
)
from tests.support.redis_server import PrivateRedis
from tests.support.services import redis_available
from tests.support.wait import eventually

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

HOSTILE = '<img src=x onerror="document.title=1">'
TOKEN = "s3cret-status-token-0123456789"


def channel(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in doc["channels"]["items"] if c["name"] == name]
    return found


def routes(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": "orders",
            "channels": ["orders", HOSTILE],
            "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
        }
    ]


def test_status_follows_messages_an_outage_and_the_catch_up(
    emulator: Emulator, key: str, prefix: str, durable_redis: PrivateRedis
) -> None:
    own = durable_redis
    config = bridge_config(
        emulator, key, prefix, redis_url=own.url, routes=routes(prefix),
        delivery={"buffer_size": 30, "drain_timeout": 5,
                  "retry": {"initial": 0.1, "max_delay": 0.3, "jitter": 0}},
    )  # fmt: skip
    rest = rest_for(emulator, key)
    client = redis.Redis.from_url(own.url)
    with Running(config) as run:
        run.wait_live()
        assert run.app.health is not None
        url = run.app.health.url
        sent = publish_n(rest, "orders", 5, "pre")
        eventually(lambda: message_ids(client, f"{prefix}:s:orders") == sent, what="delivery")
        doc = get_status(url)
        eventually(
            lambda: (
                (channel(get_status(url), "orders")["routes"][0]["last_delivered"] or {}).get("id")
                == sent[-1]
            ),
            what="last delivered id",
        )
        assert doc["process"]["app_id"] == config.app_id and doc["process"]["ready"]
        assert doc["connections"][0]["state"] == "connected"
        assert doc["connections"][0]["channels"] == 2
        assert channel(doc, HOSTILE)["phase"] == "live"  # names come back as sent, as data

        own.stop()
        publish_n(rest, "orders", 80, "during")

        def paused() -> bool:
            doc = get_status(url, "?state=attention")
            target = doc["routes"][0]["targets"][0]
            return (
                "orders" in [c["name"] for c in doc["attention"]]
                and target["last_error"] is not None
                and not doc["process"]["ready"]
            )

        eventually(paused, timeout=30, what="the outage on /status")
        doc = get_status(url, "?state=paused")
        assert [c["name"] for c in doc["channels"]["items"]] == ["orders"]
        assert doc["totals"]["phases"]["paused"] == 1
        assert doc["routes"][0]["targets"][0]["outcomes"].get("retry", 0) >= 1
        assert any("pausing orders" in e["message"] for e in doc["recent_errors"])

        own.start()
        client = redis.Redis.from_url(own.url)
        sent = message_ids_after_catch_up(rest, client, prefix, run)
        final = get_status(url)
        assert channel(final, "orders")["routes"][0]["last_delivered"]["id"] == sent[-1]
        assert final["totals"]["buffered_events"] == 0 and final["attention"] == []
    rest.close()


def message_ids_after_catch_up(
    rest: Any, client: redis.Redis, prefix: str, run: Running
) -> list[str]:
    after = publish_n(rest, "orders", 3, "post")
    eventually(
        lambda: message_ids(client, f"{prefix}:s:orders")[-3:] == after, timeout=30,
        what="catch-up",
    )  # fmt: skip
    run.wait_live(30)
    return after


def test_status_guards_token_host_and_bad_queries(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    config = bridge_config(emulator, key, prefix, routes=routes(prefix), env={
        "ABLY_BRIDGE_HEALTH_TOKEN": TOKEN})  # fmt: skip
    with Running(config) as run:
        run.wait_live()
        assert run.app.health is not None
        url = run.app.health.url
        refused = requests.get(f"{url}/status", timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == 40100
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = requests.get(f"{url}/status", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        doc = get_status(url, "?limit=1", **auth)
        assert doc["channels"]["total"] == 2 and len(doc["channels"]["items"]) == 1
        second = get_status(url, f"?limit=1&cursor={doc['channels']['next_cursor']}", **auth)
        assert second["channels"]["next_cursor"] is None
        names = [doc["channels"]["items"][0]["name"], second["channels"]["items"][0]["name"]]
        assert names == sorted(["orders", HOSTILE])
        # A token-protected status is reachable through a name (a proxy, an ingress).
        assert (
            get_status(url, "", Host="bridge.example", **auth)["schema"] == "ably-bridge/status/1"
        )
        bad = requests.get(f"{url}/status?limit=x", headers=auth, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == 40003
        page = requests.get(f"{url}/", timeout=10)  # the page holds no data: no token needed
        assert page.status_code == 200 and TOKEN not in page.text
        assert "script-src 'sha256-" in page.headers["Content-Security-Policy"]
        assert requests.post(f"{url}/status", headers=auth, timeout=10).status_code == 405
        # Nothing in the page or the status names a credential.
        text = requests.get(f"{url}/status", headers=auth, timeout=10).text
        assert key.split(":")[1] not in text and TOKEN not in text


def test_without_a_token_status_answers_literal_hosts_only(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis
) -> None:
    with Running(bridge_config(emulator, key, prefix, routes=routes(prefix))) as run:
        run.wait_live()
        assert run.app.health is not None
        url = run.app.health.url
        for host in ("127.0.0.1", f"127.0.0.1:{run.app.health.port}", "localhost:1", "[::1]:8"):
            assert get_status(url, "", Host=host)["process"]["site"] == "ably-bridge"
        rebound = requests.get(f"{url}/status", headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == 40300
        assert (
            requests.get(f"{url}/", headers={"Host": "evil.example:80"}, timeout=10).status_code
            == 403
        )
        assert requests.get(f"{url}/healthz", headers={"Host": "evil.example"}, timeout=10).ok


@pytest.mark.parametrize(
    ("env", "raw", "problem"),
    [
        ({"ABLY_BRIDGE_HEALTH_TOKEN": "short"}, {}, "ABLY_BRIDGE_HEALTH_TOKEN"),
        ({}, {"token": "0123456789abcdef0123"}, "health.token"),
    ],
)
def test_a_weak_or_written_token_is_refused(
    env: dict[str, str], raw: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"redis": {"url": "redis://127.0.0.1:6379/0"}, "health": raw,
             "routes": [{"id": "r", "channels": ["a"],
                         "targets": [{"type": "redis_stream", "key": "s"}]}]},
            {"ABLY_KEY": "app.key:secret", **env},
        )  # fmt: skip
    assert problem in str(caught.value)
    assert "0123456789abcdef0123" not in str(caught.value)


def test_a_token_file_is_read(tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    config = parse_config(
        {"redis": {"url": "redis://127.0.0.1:6379/0"}, "health": {"token_file": str(path)},
         "routes": [{"id": "r", "channels": ["a"],
                     "targets": [{"type": "redis_stream", "key": "s"}]}]},
        {"ABLY_KEY": "app.key:secret"},
    )  # fmt: skip
    assert config.health.token is not None and config.health.token.reveal() == TOKEN
    assert TOKEN not in repr(config)
