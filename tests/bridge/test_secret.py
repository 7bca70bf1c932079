"""Redaction: one parser for every URL form, applied to reprs, logs, labels and errors."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ably_bridge.bridge.jsonlog import JsonFormatter, TextFormatter, configure_logging
from ably_bridge.bridge.metrics import Counter
from ably_bridge.bridge.secret import (
    MIN_KNOWN_LENGTH,
    Secret,
    known_secrets,
    redact_text,
    redact_url,
    remember_secret,
    url_credentials,
    url_has_password,
)
from tests.bridge.log_support import root_logging_restored

PW = "s3cr3t-Pa55"

# (url, what it must print as)
FORMS = [
    (f"redis://:{PW}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    (f"redis://default:{PW}@h:6379/0", "redis://default:***@h:6379/0"),
    (f"rediss://user:{PW}@h:6380/1", "rediss://user:***@h:6380/1"),
    (f"redis://127.0.0.1:6379/0?password={PW}", "redis://127.0.0.1:6379/0?password=***"),
    (f"redis://h/0?db=1&Password={PW}&x=1", "redis://h/0?db=1&Password=***&x=1"),
    (f"rediss://h:6380/0?ssl_cert_reqs=none&password={PW}",
     "rediss://h:6380/0?ssl_cert_reqs=none&password=***"),
    (f"redis://h/0?sentinel_password={PW}", "redis://h/0?sentinel_password=***"),
    (f"redis://h/0?token={PW}&api-key={PW}", "redis://h/0?token=***&api-key=***"),
    (f"redis://h/0?pass%77ord={PW}", "redis://h/0?pass%77ord=***"),
    (f"amqp://guest:{PW}@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
    (f"amqps://u:{PW}@broker:5671/vhost?heartbeat=10", "amqps://u:***@broker:5671/vhost?heartbeat=10"),
    (f"pyamqp://u:{PW}@h//", "pyamqp://u:***@h//"),
    (f"sentinel://:{PW}@h1:26379;sentinel://:{PW}@h2:26379",
     "sentinel://:***@h1:26379;sentinel://:***@h2:26379"),
    (f"amqp://u:{PW}@h1//;amqp://u:{PW}@h2//", "amqp://u:***@h1//;amqp://u:***@h2//"),
    (f"unix://:{PW}@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
    (f"unix:///run/redis.sock?password={PW}", "unix:///run/redis.sock?password=***"),
    (f"redis://[::1]:6379/0?password={PW}", "redis://[::1]:6379/0?password=***"),
    # Special characters a careless operator leaves unencoded in a password.
    ("redis://:pa;ss@h:1/0", "redis://:***@h:1/0"),
    ("redis://:p@ss@h:1/0", "redis://:***@h:1/0"),
    ("redis://:pa/ss@h:1/0", "redis://***@h:1/0"),
    ("redis://:pa?ss@h:1/0", "redis://***@h:1/0"),
    ("redis://:pa#ss@h:1/0", "redis://***@h:1/0"),
]  # fmt: skip
PLAIN = [
    "redis://127.0.0.1:6379/0",
    "redis://user@h/0",
    "amqp://127.0.0.1:5672//",
    "memory://",
    "redis://:@h/0",
    "redis://h/0?db=1&ssl_keyfile=/etc/k.pem",
]


@pytest.mark.parametrize(("url", "shown"), FORMS)
def test_every_credential_form_is_found_and_redacted(url: str, shown: str) -> None:
    assert url_has_password(url)
    assert redact_url(url) == shown
    found = url_credentials(url)
    assert found.forms and all(v and v not in shown for v in found.values)
    secret = Secret.url(url)
    assert repr(secret) == f"Secret({shown!r})" and str(secret) == shown
    assert secret.reveal() == url
    assert redact_text(f"connecting to {url} failed.") == f"connecting to {shown} failed."


@pytest.mark.parametrize("url", PLAIN)
def test_urls_without_credentials_print_as_they_are(url: str) -> None:
    assert not url_has_password(url)
    assert redact_url(url) == url


def test_a_password_with_a_space_is_hidden_in_a_url() -> None:
    assert redact_url("redis://:pa ss@h:1/0") == "redis://:***@h:1/0"


def test_a_fragment_is_hidden_but_is_not_a_credential_form() -> None:
    assert redact_url("redis://h/0#anything") == "redis://h/0#***"
    assert not url_has_password("redis://h/0#anything")


def test_known_secret_values_are_scrubbed_from_any_text() -> None:
    key = Secret("appId.keyId:" + "K" * 30, "appId.keyId:<redacted>")
    assert "K" * 30 not in redact_text(f"a library printed key={key.reveal()} here")
    remember_secret("short")  # under MIN_KNOWN_LENGTH: ordinary words stay readable
    assert "short" not in known_secrets() and len("short") < MIN_KNOWN_LENGTH
    url = Secret.url(f"redis://h/0?password={PW}")
    assert PW in known_secrets() and url.reveal() not in known_secrets()
    assert redact_text(f"AUTH {PW!r} failed") == "AUTH '***' failed"


def test_log_lines_never_hold_a_credential_whatever_the_logger() -> None:
    url = f"redis://127.0.0.1:6379/0?password={PW}"
    stream = io.StringIO()
    with root_logging_restored():
        configure_logging("DEBUG", stream=stream)
        log = logging.getLogger("some.library")
        log.warning("connected to %s", url)
        log.info("sink %s ready", f"redis_stream:{url}", extra={"sink": url})
        try:
            raise ConnectionError(f"Error connecting to {url}")
        except ConnectionError:
            log.exception("failed")
    text = stream.getvalue()
    assert PW not in text and text.count("password=***") == 4
    assert [json.loads(line)["level"] for line in text.splitlines()] == ["WARNING", "INFO", "ERROR"]
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", (url,), None)
    assert PW not in TextFormatter().format(record)


def test_metric_labels_never_hold_a_credential() -> None:
    counter = Counter("c_total", "help", ["sink"])
    counter.inc(1, f"redis_stream:redis://h:1/0?password={PW}")
    counter.inc(1, f"celery:amqp://u:{PW}@h//")
    rendered = "\n".join(counter.render())
    assert PW not in rendered
    assert 'sink="redis_stream:redis://h:1/0?password=***"' in rendered
    assert 'sink="celery:amqp://u:***@h//"' in rendered


def test_payloads_are_logged_only_when_asked_and_cut() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "dead-lettered", (), None)
    record.payload = {"data": "x" * 10}
    assert "payload" not in json.loads(JsonFormatter().format(record))
    assert json.loads(JsonFormatter(payloads=True).format(record))["payload"] == {"data": "x" * 10}
    assert "payload=" not in TextFormatter().format(record)
    assert TextFormatter(payloads=True).format(record).endswith(' payload={"data": "xxxxxxxxxx"}')
    record.payload = "y" * 20_000
    shown = json.loads(JsonFormatter(payloads=True).format(record))["payload"]
    assert shown.startswith("y" * 16_384) and shown.endswith("...(20000 characters)")
    record.payload = b"\x00\x01"
    assert json.loads(JsonFormatter(payloads=True).format(record))["payload"] == "0001"


def test_cipher_for_makes_one_cipher_per_key_and_never_shows_the_key() -> None:
    import base64

    from ably_bridge.bridge.secret import cipher_for
    from ably_bridge.encoding.crypto import generate_random_key

    raw = base64.b64encode(generate_random_key()).decode()
    key, same, other = (
        Secret(raw),
        Secret(raw),
        Secret(base64.b64encode(generate_random_key()).decode()),
    )
    assert cipher_for(key) is cipher_for(same)  # made once, whichever Secret object asks
    assert cipher_for(other) is not cipher_for(key)
    assert raw not in repr(cipher_for(key)) and raw not in repr(key)
