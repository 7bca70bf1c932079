"""Pure parts: the retry classification, settings from the environment, 429s."""

from __future__ import annotations

import random

import pytest
from celery import Celery

from ably_bridge.errors import AblyException
from ably_bridge.rest import AblyRest
from ably_bridge.transports.mock_http import MockHttpTransport
from workers import AblyTaskError, RetryPolicy, WorkerSettings
from workers.app import configure_app
from workers.errors import task_error
from workers.retry import classify, countdown
from workers.tasks import derived_base, with_ids


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(1.0, multiplier=2.0, max_delay=8, jitter=0.5, max_retries=8)
    rng = random.Random(7)
    for retries, ceiling in enumerate([1, 2, 4, 8, 8, 8]):
        delay = countdown(policy, retries, classify(ConnectionError()), rng)
        assert ceiling * 0.5 <= delay <= ceiling
    assert policy.schedule_bound() == 1 + 2 + 4 + 8 * 5


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (AblyException("unavailable", 50300, 503), True),
        (AblyException("timeout", 50003, 500), True),
        (AblyException("unreachable", 50002, 500), True),
        (AblyException("slow down", 42910, 429), True),
        (AblyException("bad key", 40101, 401), False),
        (AblyException("forbidden", 40160, 401), False),
        (AblyException("too big", 40009, 400), False),
        (ValueError("bug"), False),
        (ConnectionError("reset"), True),
    ],
)
def test_classification(exc: BaseException, retry: bool) -> None:
    assert classify(exc).retryable is retry


def test_rate_limit_honours_retry_after_else_the_configured_floor() -> None:
    policy = RetryPolicy(0.01, multiplier=2.0, max_delay=0.02, rate_limit_delay=0.5)
    limited = AblyException("slow down", 42910, 429)
    assert countdown(policy, 0, classify(limited, retry_after=3.0)) == 3.0
    assert countdown(policy, 0, classify(limited)) == 0.5


def test_the_retry_after_of_a_429_travels_on_the_rest_error() -> None:
    transport = MockHttpTransport()
    body = {"error": {"message": "slow down", "code": 42910, "statusCode": 429}}
    transport.add(path="/channels/c/messages", status=429, json=body, headers={"Retry-After": "2"})
    rest = AblyRest(key="app.key:secret", transport=transport, use_binary_protocol=False)
    with pytest.raises(AblyException) as info:
        rest.channels.get("c").publish("n", "d")
    decision = classify(info.value)
    assert decision.rate_limited and decision.min_delay == 2.0
    assert "Retry-After" not in repr(info.value)  # headers stay out of the repr


def test_settings_from_env_and_the_idempotency_bound() -> None:
    settings = WorkerSettings.from_env(
        {
            "ABLY_KEY": "app.key:secret",
            "ABLY_ENDPOINT": "127.0.0.1",
            "ABLY_PORT": "8080",
            "ABLY_TLS": "false",
            "ABLY_USE_BINARY_PROTOCOL": "false",
            "CELERY_BROKER_URL": "amqp://guest:pw@host//",
            "ABLY_WORKER_MAX_RETRIES": "3",
        }
    )
    options = settings.client_options_value()
    assert (options.endpoint, options.port, options.tls) == ("127.0.0.1", 8080, False)
    assert options.use_binary_protocol is False and settings.retry.max_retries == 3
    assert settings.result_backend == "rpc://"
    assert "secret" not in repr(settings) and "pw" not in repr(settings)
    with pytest.raises(ValueError, match="idempotency window"):
        WorkerSettings.from_env({"ABLY_WORKER_PUBLISH_DEADLINE": "110"})
    with pytest.raises(ValueError, match="ABLY_TLS"):
        WorkerSettings.from_env({"ABLY_TLS": "maybe"})


def test_queue_type_settings() -> None:
    amqp = {"CELERY_BROKER_URL": "amqp://guest:pw@host//"}
    quorum = WorkerSettings.from_env({**amqp, "ABLY_WORKER_QUEUE_TYPE": "Quorum"})
    app = Celery("queue-type-test", set_as_current=False)
    configure_app(app, quorum)
    assert app.conf.task_default_queue_type == "quorum"
    assert app.conf.task_create_missing_queue_type == "quorum"
    assert app.conf.task_default_exchange_type == "topic"  # native delayed delivery
    (default_queue,) = app.amqp.queues.values()
    assert default_queue.queue_arguments == {"x-queue-type": "quorum"}
    assert app.amqp.queues.new_missing("other").queue_arguments == {"x-queue-type": "quorum"}
    classic = Celery("queue-type-test-2", set_as_current=False)
    configure_app(classic, WorkerSettings.from_env(amqp))
    assert classic.conf.task_default_exchange_type == "direct"
    assert classic.amqp.queues.new_missing("other").queue_arguments is None
    with pytest.raises(ValueError, match="ABLY_WORKER_QUEUE_TYPE must be one of classic, quorum"):
        WorkerSettings.from_env({**amqp, "ABLY_WORKER_QUEUE_TYPE": "stream"})
    with pytest.raises(ValueError, match="AMQP"):
        WorkerSettings.from_env({"ABLY_WORKER_QUEUE_TYPE": "quorum"})  # (default: Redis)


def test_ids_derived_from_the_task_id_are_stable() -> None:
    first = with_ids([{"data": "a"}, {"data": "b"}], "task-1")
    assert [m["id"] for m in first] == [f"{derived_base('task-1')}:{i}" for i in (0, 1)]
    assert with_ids([{"data": "a"}], "task-1") == with_ids([{"data": "a"}], "task-1")
    assert with_ids([{"id": "given:0"}], "task-1") == [{"id": "given:0"}]


def test_task_error_keeps_the_code_and_survives_celery_serialisation() -> None:
    error = task_error(AblyException("forbidden", 40160, 401))
    rebuilt = AblyTaskError(*error.args)
    assert (rebuilt.code, rebuilt.status_code, rebuilt.retryable) == (40160, 401, False)
    assert task_error(KeyError("ABLY_KEY=app.key:secret")).message == "unexpected KeyError"


def test_a_sentinel_broker_needs_its_primary_name_and_passes_it_to_kombu_and_celery() -> None:
    url = "sentinel://:pw@127.0.0.1:26379/2;sentinel://127.0.0.1:26380/2"
    with pytest.raises(ValueError, match="ABLY_WORKER_SENTINEL_MASTER"):
        WorkerSettings.from_env({"CELERY_BROKER_URL": url})
    settings = WorkerSettings.from_env(
        {"CELERY_BROKER_URL": url, "ABLY_WORKER_SENTINEL_MASTER": "svc"}
    )
    assert settings.result_backend == url  # a Redis-like broker is the default backend
    app = Celery("sentinel-units", set_as_current=False)
    configure_app(app, settings)
    assert app.conf.broker_transport == "workers.redis_fetch:SentinelTransport"
    assert app.conf.broker_transport_options["master_name"] == "svc"
    assert app.conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout
    assert app.conf.result_backend_transport_options == {"master_name": "svc"}
    assert settings.dedup_url() == "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/svc/2"
    assert "pw" not in repr(settings)


def test_a_rediss_broker_keeps_kombus_tls_default_with_the_atomic_fetch() -> None:
    """kombu skips its rediss:// default (TLS, certificates unchecked) for a transport
    class given explicitly; the app sets it, unless the URL has its own ssl_ options."""
    import ssl

    plain = Celery("tls-default", set_as_current=False)
    configure_app(plain, WorkerSettings(broker_url="rediss://127.0.0.1:1/0"))
    assert plain.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
    checked = Celery("tls-checked", set_as_current=False)
    url = "rediss://127.0.0.1:1/0?ssl_cert_reqs=required"
    configure_app(checked, WorkerSettings(broker_url=url))
    assert not checked.conf.broker_use_ssl
