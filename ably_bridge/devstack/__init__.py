"""``ably-bridge dev``: the whole local stack in one command.

The stack is Redis (the user's ``REDIS_URL``, or a ``redis-server`` child on a
free port), the Ably emulator (in this process), the bridge daemon and a
Celery worker (child processes, logs in the run's directory), and a demo
publisher; a live summary says what flows where. The pieces, one module each:

* :mod:`~ably_bridge.devstack.layout` - the names the pieces agree on (URLs, keys, queue);
* :mod:`~ably_bridge.devstack.redis_server` - Redis provisioning and clean-up;
* :mod:`~ably_bridge.devstack.processes` - child process supervision;
* :mod:`~ably_bridge.devstack.config` - the generated bridge configuration and child env;
* :mod:`~ably_bridge.devstack.worker` - the dev Celery app and its ``dev.chat_event`` task;
* :mod:`~ably_bridge.devstack.publisher` - the demo publisher;
* :mod:`~ably_bridge.devstack.summary` - the live summary;
* :mod:`~ably_bridge.devstack.stack` - the run itself; :mod:`~ably_bridge.devstack.cli` its options.

Only :mod:`~ably_bridge.devstack.cli` is imported by ``ably_bridge.cli``; the
heavy modules load when the command runs.
"""

from __future__ import annotations

__all__: list[str] = []
