"""Per-client logging (TO3b, TO3c): each client's level and handler apply to it alone."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ably_bridge.rest.logs import ClientLogger, client_logger
from ably_bridge.transports.mock_http import MockHttpTransport

from ..conftest import MakeRest


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def levels(self) -> set[int]:
        return {r.levelno for r in self.records}

    def loggers(self) -> set[str]:
        return {r.name for r in self.records}


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The ``ably_bridge`` logger, restored after the test."""
    logger = logging.getLogger("ably_bridge")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_two_clients_log_at_their_own_levels_to_their_own_handlers(
    make_rest: MakeRest, mock: MockHttpTransport
) -> None:
    mock.add(path="/time", json=[1], times=None)
    chatty, quiet = Records(), Records()
    a = make_rest(log_level=logging.DEBUG, log_handler=chatty)
    b = make_rest(log_level=logging.WARNING, log_handler=quiet)
    a.time()
    b.time()
    assert a.log.name != b.log.name
    assert chatty.loggers() == {a.log.name}  # never the other client's records
    assert logging.DEBUG in chatty.levels()
    assert any(r.getMessage().startswith("GET ") for r in chatty.records)
    assert quiet.records == []  # its debug records are below its own level
    b.log.warning("for b only")
    assert [r.getMessage() for r in quiet.records] == ["for b only"]
    assert "for b only" not in [r.getMessage() for r in chatty.records]


def test_client_loggers_are_children_of_the_package_logger(
    make_rest: MakeRest, mock: MockHttpTransport, package_logger: logging.Logger
) -> None:
    mock.add(path="/time", json=[1], times=None)
    seen = Records()
    package_logger.addHandler(seen)
    rest = make_rest()  # no log_level: the level comes from ``ably_bridge``
    assert rest.log.name.startswith("ably_bridge.client.rest-")
    assert rest.log.parent is package_logger
    package_logger.setLevel(logging.WARNING)
    rest.time()
    assert seen.records == []
    package_logger.setLevel(logging.DEBUG)  # a later change is seen at once (no stale cache)
    rest.time()
    assert rest.log.name in seen.loggers()


def test_client_loggers_are_not_kept_by_the_logging_registry(make_rest: MakeRest) -> None:
    rest = make_rest()
    assert isinstance(rest.log, ClientLogger)
    assert rest.log.name not in logging.Logger.manager.loggerDict
    logging.disable(logging.CRITICAL)
    try:
        assert not rest.log.isEnabledFor(logging.ERROR)  # logging.disable applies too
    finally:
        logging.disable(logging.NOTSET)


def test_a_given_logger_is_used_as_it_is(make_rest: MakeRest, mock: MockHttpTransport) -> None:
    mock.add(path="/time", json=[1], times=None)
    mine = logging.getLogger("tests.my_ably_client")
    seen = Records()
    mine.addHandler(seen)
    mine.setLevel(logging.DEBUG)
    try:
        rest = make_rest(logger=mine)
        rest.time()
        assert rest.log is mine and mine.name in seen.loggers()
    finally:
        mine.removeHandler(seen)


def test_client_logger_numbers_are_unique(make_rest: MakeRest) -> None:
    names = {make_rest().log.name for _ in range(5)}
    assert len(names) == 5
    logger = client_logger("rest", make_rest().options)
    assert logger.level == logging.NOTSET and logger.handlers == []
