"""What tests of several packages share: services, waiting, private servers, the emulator.

* :mod:`tests.support.services` - the shared Redis and RabbitMQ addresses, whether
  they answer, and :func:`~tests.support.services.free_port`;
* :mod:`tests.support.wait` - :func:`~tests.support.wait.eventually`, the one
  poll-until-true helper (a deadline, never a fixed sleep);
* :mod:`tests.support.redis_server` - :class:`~tests.support.redis_server.PrivateRedis`,
  a ``redis-server`` of the test's own that it may stop, kill and restart;
* :mod:`tests.support.sentinel` - :class:`~tests.support.sentinel.Group`, a Sentinel
  group (primary, replica, three Sentinels) a test owns and fails over;
* :mod:`tests.support.emulator` - the emulator configuration the shared
  ``emulator`` fixture (tests/conftest.py) runs with.

Fixtures built on these live in tests/conftest.py: ``emulator``, ``prefix``,
``rclient``, ``private_redis``, ``durable_redis`` and ``redis_cluster``.
"""
