"""The status page in a real browser (Debian's headless chromium) against a real bridge.

The bridge runs in a thread with the emulator and a redis-server of the test's
own; the page at ``/`` is loaded in chromium and what it renders is read from
its DOM and compared with ``/status`` while messages flow, while Redis (the
sink and the checkpoints) is stopped, and after it is started again. One
channel's name is markup (``<img onerror=...>``): it must show as text. The
three screenshots are saved as test artifacts (``$ABLY_BRIDGE_TEST_ARTIFACTS``,
else the test's tmp folder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ably_bridge.emulator import Emulator
from tests.bridge.browser_support import Chromium, artifacts_dir
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

HOSTILE = "<img src=x onerror=\"document.title='owned'\">"

# The page's channel rows and attention rows, as data (what a person reads there).
ROWS = """JSON.stringify(Array.from(document.querySelectorAll('#%s tr[data-channel]')).map(
  (tr) => ({name: tr.dataset.channel, phase: tr.dataset.phase,
            cells: Array.from(tr.cells).map((td) => td.textContent)})))"""
TARGETS = """JSON.stringify(Array.from(document.querySelectorAll('#routes tr')).map(
  (tr) => Array.from(tr.cells).map((td) => td.textContent)))"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    chromium = Chromium(tmp_path / "chromium")
    yield chromium
    chromium.close()


def rows(page: Chromium, table: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(page.evaluate(ROWS % table))
    return found


def test_the_page_shows_what_status_says_through_an_outage(
    emulator: Emulator, key: str, prefix: str, durable_redis: PrivateRedis,
    browser: Chromium, tmp_path: Path,
) -> None:  # fmt: skip
    shots = artifacts_dir(tmp_path / "artifacts")
    config = bridge_config(
        emulator, key, prefix, redis_url=durable_redis.url,
        routes=[{"id": "orders", "channels": ["orders", "audit", HOSTILE],
                 "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}]}],
        delivery={"buffer_size": 30, "drain_timeout": 5,
                  "retry": {"initial": 0.1, "max_delay": 0.3, "jitter": 0}},
    )  # fmt: skip
    rest = rest_for(emulator, key)
    client = redis.Redis.from_url(durable_redis.url)
    with Running(config) as run:
        run.wait_live()
        assert run.app.health is not None
        url = run.app.health.url
        browser.navigate(url + "/")
        browser.wait_for("document.body?.dataset.generatedAt", what="a first render")

        # Messages flow: the page shows each channel as /status does, and the last id.
        sent = publish_n(rest, "orders", 5, "flow")
        eventually(lambda: message_ids(client, f"{prefix}:s:orders") == sent, what="delivery")
        browser.wait_for(
            f"document.querySelector('#channels tr[data-channel=\"orders\"]')"
            f".textContent.includes({json.dumps(sent[-1])})",
            what="the last delivered id on the page",
        )
        shown = rows(browser, "channels")
        doc = get_status(url, "?limit=50")
        assert [(r["name"], r["phase"]) for r in shown] == [
            (c["name"], c["phase"]) for c in doc["channels"]["items"]
        ]
        # The hostile name is text: no element made from it, no script run.
        assert HOSTILE in [r["name"] for r in shown]
        assert [r["cells"][0] for r in shown if r["name"] == HOSTILE] == [HOSTILE]
        assert browser.evaluate("document.querySelectorAll('img').length") == 0
        assert browser.evaluate("document.title") == "ably-bridge status"
        assert browser.wait_for(
            "document.querySelector('#attention').textContent.includes('every channel is live')"
        )
        browser.screenshot(shots / "status-page-1-flowing.png")

        # Redis stops: the page shows the paused channel and the target's error.
        durable_redis.stop()
        publish_n(rest, "orders", 80, "during")
        browser.wait_for(
            "document.querySelector('#attention tr[data-channel=\"orders\"]')?.dataset.phase"
            " === 'paused'",
            timeout=40, what="orders paused on the page",
        )  # fmt: skip

        def same_error() -> bool:
            error = get_status(url)["routes"][0]["targets"][0]["last_error"]
            cells = json.loads(browser.evaluate(TARGETS))
            expected = (f"{error['code']}: " if error and error["code"] is not None else "") + (
                error["message"] if error else "-"
            )
            return error is not None and cells[0][9] == expected

        eventually(same_error, timeout=30, what="the target's last error, as /status says")
        assert browser.evaluate("document.querySelector('#process').textContent").count("not ready")
        browser.screenshot(shots / "status-page-2-redis-stopped.png")

        # Redis is back: the channel catches up and the attention list empties.
        durable_redis.start()
        client = redis.Redis.from_url(durable_redis.url)
        after = publish_n(rest, "orders", 3, "post")
        eventually(
            lambda: message_ids(client, f"{prefix}:s:orders")[-3:] == after, timeout=40,
            what="catch-up",
        )  # fmt: skip
        browser.wait_for(
            "document.querySelector('#attention').textContent.includes('every channel is live')"
            f" && document.querySelector('#channels tr[data-channel=\"orders\"]')"
            f".textContent.includes({json.dumps(after[-1])})",
            timeout=40, what="the catch-up on the page",
        )  # fmt: skip
        shown = rows(browser, "channels")
        assert {r["phase"] for r in shown} == {"live"}
        browser.screenshot(shots / "status-page-3-caught-up.png")
    rest.close()
    for name in ("1-flowing", "2-redis-stopped", "3-caught-up"):
        assert (shots / f"status-page-{name}.png").stat().st_size > 10_000


def test_with_a_token_the_page_asks_for_it_and_then_shows_the_status(
    emulator: Emulator, key: str, prefix: str, rclient: redis.Redis, browser: Chromium,
    tmp_path: Path,
) -> None:  # fmt: skip
    token = "page-token-0123456789abcdef"
    config = bridge_config(
        emulator, key, prefix, env={"ABLY_BRIDGE_HEALTH_TOKEN": token},
        routes=[{"id": "orders", "channels": ["orders"],
                 "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}]}],
    )  # fmt: skip
    with Running(config) as run:
        run.wait_live()
        assert run.app.health is not None
        browser.navigate(run.app.health.url + "/")
        browser.wait_for(
            "document.querySelector('#status')?.textContent === 'a token is required'",
            what="the token prompt",
        )
        assert browser.evaluate("getComputedStyle(document.querySelector('#auth')).display") == (
            "flex"
        )
        assert (
            browser.evaluate("document.querySelectorAll('#channels tr[data-channel]').length") == 0
        )
        browser.evaluate(
            f"document.querySelector('#token').value = {json.dumps(token)};"
            "document.querySelector('#auth').requestSubmit(); true"
        )
        browser.wait_for(
            "document.querySelector('#channels tr[data-channel=\"orders\"]')?.dataset.phase"
            " === 'live'",
            what="the status after the token",
        )  # fmt: skip
        assert browser.evaluate("getComputedStyle(document.querySelector('#auth')).display") == (
            "none"
        )
        # Kept for this tab only, never in the page's address or markup.
        assert browser.evaluate("sessionStorage.getItem('ably-bridge-token')") == token
        assert token not in browser.evaluate("location.href + document.documentElement.outerHTML")
        browser.screenshot(artifacts_dir(tmp_path / "artifacts") / "status-page-4-token.png")
