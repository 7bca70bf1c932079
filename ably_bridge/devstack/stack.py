"""The dev stack's run: start everything in order, report what flows, stop everything in order.

This module owns :class:`DevOptions` (what ``ably-bridge dev`` was asked),
:class:`Console` (text lines, or one JSON object per line with ``--json``)
and :class:`DevStack`, whose :meth:`~DevStack.run` is the whole command:

1. Redis (:mod:`~ably_bridge.devstack.redis_server`): the user's, or a redis-server child
   (on a user's Redis Cluster, a redis-server child for the Celery broker only);
2. the emulator, in this process (a background thread), with the dev app;
3. the bridge (``ably-bridge run -c <generated bridge.yaml>``) and the dev
   Celery worker (``celery -A ably_bridge.devstack.worker``) as children,
   their output in log files of the run's directory; both must be ready
   (``/readyz``, the worker's ready mark) within ``startup_timeout``;
4. the demo publisher (:mod:`~ably_bridge.devstack.publisher`);
5. a summary every ``summary_interval`` seconds until SIGINT/SIGTERM or
   ``duration``; a child that dies meanwhile ends the run with status 1 and
   the last lines of its log;
6. shutdown: the publisher stops, the data already published is given a few
   seconds to settle (a second Ctrl-C skips that), a final summary, then
   SIGTERM to the bridge and the worker (SIGKILL after a bounded wait), the
   emulator stops, the run's keys are deleted from a user's Redis (or Redis
   Cluster), and the redis-server, if the run started one, is stopped. Exit status 0.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import requests

from ably_bridge.bridge.redis_connect import is_cluster_url, open_redis, parse_cluster_url
from ably_bridge.devstack.config import child_env, remove_env_file, write_config, write_env_file
from ably_bridge.devstack.console import Console, LogToFile
from ably_bridge.devstack.feed import Feed
from ably_bridge.devstack.handler import ENV_HANDLER, HandlerError, check_handler
from ably_bridge.devstack.layout import (
    CHAT_CHANNEL,
    DEV_APP,
    PUBLISHER_CLIENT_ID,
    TASK_NAME,
    DevLayout,
    redacted,
)
from ably_bridge.devstack.processes import Child, Supervisor
from ably_bridge.devstack.publisher import DemoPublisher
from ably_bridge.devstack.redis_server import DevRedis, RedisUnavailable, free_port, provision
from ably_bridge.devstack.summary import Collector
from ably_bridge.devstack.terminal import own_foreground

__all__ = ["Console", "DevOptions", "DevStack", "run_dev"]  # Console: re-exported

log = logging.getLogger(__name__)

TAIL_LINES = 20


@dataclass(frozen=True)
class DevOptions:
    """What ``ably-bridge dev`` was asked to do (see :mod:`ably_bridge.devstack.cli`)."""

    port: int = 8080
    redis_url: str | None = None
    publisher: bool = True
    duration: float | None = None
    summary_interval: float = 2.0
    json: bool = False
    log_dir: Path | None = None
    startup_timeout: float = 60.0
    settle_timeout: float = 5.0
    handler: str | None = None
    env_file: Path | None = Path(".ably-dev.env")


class DevStack:
    """One run of the local stack (see the module docstring)."""

    def __init__(
        self,
        options: DevOptions,
        *,
        env: Mapping[str, str] | None = None,
        console: Console | None = None,
    ) -> None:
        self.options = options
        self.env = dict(os.environ if env is None else env)
        self.console = console or Console(options.json)
        self.run_id = secrets.token_hex(3)
        self._own_log_dir = options.log_dir is None
        self.log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="ably-dev-"))
        self.stop_requested = threading.Event()
        self.forced = False
        self.supervisor = Supervisor(reaper=True)
        self.redis: DevRedis | None = None
        self.emulator: Any = None
        self.publisher: DemoPublisher | None = None
        self.collector: Collector | None = None
        self.feed: Feed | None = None
        self._env_file_text: str | None = None
        self.metrics_url = ""
        self.status_url = ""
        self.up = False
        self.failed = False
        self._saved_signals: dict[int, Any] = {}

    # -- signals --------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested.is_set():
            self.forced = True
            return
        self.stop_requested.set()
        if not self.options.json:
            name = signal.Signals(signum).name
            self.console.event(
                "stopping", [f"{name}: stopping (again to skip waiting for the last events)"]
            )

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._saved_signals[signum] = signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        for signum, handler in self._saved_signals.items():
            signal.signal(signum, handler)
        self._saved_signals.clear()

    # -- the run ----------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped; 0 after a clean stop, 1 when something failed."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._install_signals()
        status = 1
        with LogToFile(self.log_dir / "dev.log"):
            try:
                status = self._run()
            except Exception as exc:
                log.exception("the dev stack failed")
                self.console.error(f"failed: {exc} (see {self.log_dir / 'dev.log'})")
                status = 1
            finally:
                status = self._shutdown(status)
                self._restore_signals()
        if self._own_log_dir and not self._started_anything:
            shutil.rmtree(self.log_dir, ignore_errors=True)  # nothing ran: nothing to read
        return status

    @property
    def _started_anything(self) -> bool:
        return self.up or bool(self.supervisor.children)

    def _run(self) -> int:
        options = self.options
        if options.handler:
            try:
                check_handler(options.handler, Path.cwd())
            except HandlerError as exc:
                self.console.error(str(exc))
                return 1
        redis_url = options.redis_url or self.env.get("REDIS_URL") or None
        try:
            self.redis = provision(redis_url, run_id=self.run_id, log_dir=self.log_dir)
        except RedisUnavailable as exc:
            self.console.error(str(exc))
            return 1
        if self.redis.server is not None:
            self.supervisor.add(self.redis.server)
        layout = self.redis.layout
        if not self._start_emulator():
            return 1
        emulator = self.emulator
        key = str(emulator.root_key)
        health_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{health_port}/metrics"
        self.status_url = f"http://127.0.0.1:{health_port}/"
        config_path = write_config(
            self.log_dir, layout, emulator_port=emulator.port, health_port=health_port
        )
        env = child_env(layout, ably_key=key, emulator_port=emulator.port, base=self.env)
        if options.handler:
            env[ENV_HANDLER] = options.handler
            env["ABLY_DEV_HANDLER_BASE"] = str(Path.cwd())
        bridge = Child(
            "bridge",
            [sys.executable, "-m", "ably_bridge.cli", "run", "-c", str(config_path)],
            self.log_dir / "bridge.log",
            env=env,
        )
        worker = Child(
            "worker",
            [
                sys.executable, "-m", "celery", "-A", "ably_bridge.devstack.worker", "worker",
                "--pool", "threads", "--concurrency", "2", "-Q", layout.queue,
                "--loglevel", "INFO", "-n", f"ably-dev-{self.run_id}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            self.log_dir / "worker.log",
            env=env,
        )  # fmt: skip
        for child in (bridge, worker):
            try:
                self.supervisor.start(child)
            except OSError as exc:
                self.console.error(f"cannot start the {child.name}: {exc}")
                return 1
        if not self._wait_ready(layout, health_port):
            return 0 if self.stop_requested.is_set() and not self.failed else 1
        self.up = True
        if options.publisher:
            self.publisher = DemoPublisher(
                key=key, host="127.0.0.1", port=emulator.port, run_id=self.run_id
            ).start()
        self.collector = Collector(
            layout, metrics_url=self.metrics_url, published=self._published, published_ids=self._ids
        )
        self.feed = Feed(layout, TASK_NAME)
        self._write_env_file(env)
        self._announce(layout, key, config_path)
        return self._loop()

    def _published(self) -> tuple[int, int, bool]:
        pub = self.publisher
        return (pub.published, pub.errors, pub.presence_entered) if pub else (0, 0, False)

    def _ids(self) -> list[str]:
        return self.publisher.ids if self.publisher is not None else []

    def _write_env_file(self, env: Mapping[str, str]) -> None:
        path = self.options.env_file
        if path is None:
            return
        try:
            write_env_file(path, env)
            self._env_file_text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.console.error(
                f"cannot write {path}: {exc.strerror or exc} (--no-env-file skips it)"
            )

    def _start_emulator(self) -> bool:
        from ably_bridge.emulator.config import EmulatorConfig
        from ably_bridge.emulator.server import Emulator

        port = self.options.port
        config = EmulatorConfig(default_app=copy.deepcopy(DEV_APP))
        self.emulator = Emulator("127.0.0.1", port, config=config)
        try:
            self.emulator.start()
        except OSError as exc:
            self.emulator = None
            hint = "; pass --port 0 for any free port" if port else ""
            self.console.error(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}{hint}")
            return False
        return True

    def _report_death(self, child: Child) -> None:
        self.failed = True
        self.console.error(
            f"the {child.name} (pid {child.pid}) exited with status {child.exited()}; "
            f"the last lines of {child.log_path}:",
            child.tail(TAIL_LINES) or ["(empty)"],
        )

    def _wait_ready(self, layout: DevLayout, health_port: int) -> bool:
        """Wait until the bridge answers /readyz and the worker marked itself ready."""
        deadline = time.monotonic() + self.options.startup_timeout
        ready_url = f"http://127.0.0.1:{health_port}/readyz"
        client = open_redis(layout.data_url, socket_timeout=2, socket_connect_timeout=2)
        bridge_ready = worker_ready = False
        try:
            while True:
                died = self.supervisor.died()
                if died is not None:
                    self._report_death(died)
                    return False
                if not bridge_ready:
                    with contextlib.suppress(requests.RequestException):
                        bridge_ready = requests.get(ready_url, timeout=1).status_code == 200
                if not worker_ready:
                    with contextlib.suppress(redis.RedisError):
                        worker_ready = bool(client.exists(layout.worker_ready_key))
                if bridge_ready and worker_ready:
                    return True
                if self.stop_requested.is_set():
                    return False
                if time.monotonic() > deadline:
                    waiting = {"bridge": not bridge_ready, "worker": not worker_ready}
                    self.failed = True
                    for child in self.supervisor.children:
                        if waiting.get(child.name):
                            self.console.error(
                                f"the {child.name} was not ready within "
                                f"{self.options.startup_timeout:.0f}s; "
                                f"the last lines of {child.log_path}:",
                                child.tail(TAIL_LINES) or ["(empty)"],
                            )
                    return False
                self.stop_requested.wait(0.1)
        finally:
            client.close()

    def _announce(self, layout: DevLayout, key: str, config_path: Path) -> None:
        emulator = self.emulator
        assert self.redis is not None
        pids = self.supervisor.pids()
        port = emulator.port
        logs = ", ".join(f"{c.log_path.name}" for c in self.supervisor.children)
        lines = [
            "ably-bridge dev: the local stack is up (Ctrl-C to stop)",
            f"  emulator   {emulator.url}  (realtime {emulator.ws_url}/)",
            f"  dev key    {key}  (the local emulator's app {emulator.app_id})",
            f"  redis      {self.redis.description}",
            f"  broker     {redacted(layout.broker_url)}  (Celery queue {layout.queue}"
            + (
                f"; redis-server started for the broker, pid {pids.get('redis')})"
                if self.redis.broker_started and not layout.owned_redis
                else ")"
            ),
            f"  bridge     chat:* messages + presence -> stream {layout.stream_key}"
            f" + task {TASK_NAME}; metrics {self.metrics_url}",
            f"  status     {self.status_url}  (the bridge's live status page; JSON at /status)",
            f"  worker     celery -A ably_bridge.devstack.worker (pid {pids.get('worker')})"
            + (f", calling your handler {self.options.handler}" if self.options.handler else ""),
            (
                f"  publisher  a message a second on {CHAT_CHANNEL}, "
                f"presence as {PUBLISHER_CLIENT_ID}"
                if self.publisher is not None
                else "  publisher  off (--no-publisher)"
            ),
            f"  config     {config_path}",
            f"  logs       {self.log_dir}  ({logs}, dev.log)",
            *self._env_file_lines(),
            f"  try        ABLY_KEY={key} {_program()} publish {CHAT_CHANNEL} text hi "
            f"--endpoint 127.0.0.1 --port {port} --no-tls",
            f"             {_redis_cli(layout.data_url)} XREVRANGE {layout.stream_key} + - COUNT 1",
        ]
        self.console.event(
            "started",
            lines,
            run_id=self.run_id,
            emulator=emulator.url,
            realtime=f"{emulator.ws_url}/",
            app_id=emulator.app_id,
            key=key,
            redis=redacted(layout.data_url),
            redis_started=layout.owned_redis,
            broker_started=self.redis.broker_started,
            broker=redacted(layout.broker_url),
            stream=layout.stream_key,
            queue=layout.queue,
            task=TASK_NAME,
            metrics=self.metrics_url,
            status=self.status_url,
            config=str(config_path),
            log_dir=str(self.log_dir),
            pids=pids,
            publisher=self.publisher is not None,
            env_file=str(self.options.env_file) if self._env_file_text is not None else None,
        )

    def _env_file_lines(self) -> list[str]:
        path = self.options.env_file
        if path is None or self._env_file_text is None:
            return []
        return [f"  env        set -a; . {path}; set +a   (then the tools need no flags)"]

    def _loop(self) -> int:
        options = self.options
        assert self.collector is not None
        started = time.monotonic()
        self.collector.started = started
        deadline = started + options.duration if options.duration else None
        next_summary = started + options.summary_interval
        while not self.stop_requested.is_set():
            died = self.supervisor.died()
            if died is not None:
                self._report_death(died)
                return 1
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            self._report_yours()
            if now >= next_summary:
                self.console.summary(self.collector.snapshot())
                next_summary += options.summary_interval
                if next_summary < now:
                    next_summary = now + options.summary_interval
            wait = min(next_summary, deadline or next_summary) - time.monotonic()
            self.stop_requested.wait(max(0.0, min(wait, 0.25)))
        return 0

    def _report_yours(self) -> None:
        if self.feed is not None:
            for sighting in self.feed.poll():
                self.console.sighting(sighting)

    # -- shutdown ---------------------------------------------------------------------
    def _settle(self) -> None:
        """Give events already published a moment to reach the stream and the task."""
        collector = self.collector
        if collector is None:
            return
        deadline = time.monotonic() + self.options.settle_timeout
        last: tuple[Any, ...] | None = None
        stable_since = time.monotonic()
        while time.monotonic() < deadline and not self.forced:
            if self.supervisor.died() is not None:
                return
            snap = collector.snapshot()
            key = (snap.bridge_received, snap.stream_length, snap.celery_tasks, snap.published)
            caught_up = (
                snap.bridge_received is not None
                and snap.stream_length == snap.bridge_received
                and snap.celery_tasks == snap.bridge_received
                and snap.published_in_tasks in (None, snap.published)
            )
            if key != last:
                last, stable_since = key, time.monotonic()
            elif caught_up and time.monotonic() - stable_since >= 1.0:
                return
            time.sleep(0.2)

    def _shutdown(self, status: int) -> int:
        if self.publisher is not None:
            self.publisher.stop()
        if self.up and not self.failed and self.collector is not None:
            self._settle()
            try:
                self._report_yours()
                self.console.summary(self.collector.snapshot(final=True))
            except Exception:
                log.exception("the final summary failed")
        timeout = 3.0 if self.forced else None
        for name in ("bridge", "worker"):
            self.supervisor.stop(name, timeout)
        if self.collector is not None:
            self.collector.close()
        if self.feed is not None:
            self.feed.close()
        if self.options.env_file is not None and self._env_file_text is not None:
            remove_env_file(self.options.env_file, self._env_file_text)
        if self.emulator is not None:
            self.emulator.stop()
        if self.redis is not None:
            try:
                self.redis.close()
            except Exception:
                log.exception("stopping Redis failed")
        self.supervisor.stop_all(timeout)
        if self.failed:
            status = 1
        started = self._started_anything
        self.console.event(
            "stopped",
            [f"ably-bridge dev: stopped (exit status {status}); logs in {self.log_dir}"]
            if started
            else [],
            exit_code=status,
            log_dir=str(self.log_dir) if started or not self._own_log_dir else None,
        )
        return status


def _redis_cli(url: str) -> str:
    """A redis-cli command line reaching ``url`` (``-c`` and a node's address on a cluster)."""
    if is_cluster_url(url):
        host, port = parse_cluster_url(url).nodes[0]
        return f"redis-cli -c -h {host} -p {port}"
    return f"redis-cli -u {redacted(url)}"


def _program() -> str:
    """How the user ran ``ably-bridge`` (e.g. ``.venv/bin/ably-bridge`` under make)."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "ably-bridge" else "ably-bridge"


def run_dev(options: DevOptions, *, env: Mapping[str, str] | None = None) -> int:
    """Run the dev stack in the foreground (the ``ably-bridge dev`` command)."""
    with own_foreground(env):
        return DevStack(options, env=env).run()
