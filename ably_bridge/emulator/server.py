"""The aiohttp application, TLS, and :class:`Emulator`: the server in a background thread.

One port serves everything: ``GET /`` with ``Upgrade: websocket`` is the
realtime endpoint, ``/_emulator/...`` the admin API, the rest Ably's REST API.
:class:`Emulator` runs its own event loop in a daemon thread so synchronous
tests and tools can use it as a context manager; every method of it (and of
its ``faults`` proxy) is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from ably_bridge.clock import Clock, SystemClock, Timer
from ably_bridge.emulator import admin, apps, comet, rest, rest_messages, revocation
from ably_bridge.emulator.config import EmulatorConfig
from ably_bridge.emulator.context import RUNTIME, Runtime
from ably_bridge.emulator.fanout import Hub
from ably_bridge.emulator.faults import Faults
from ably_bridge.emulator.origin import is_loopback
from ably_bridge.emulator.realtime import handle_websocket
from ably_bridge.emulator.state import EmulatorState

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_APP: dict[str, Any] = {
    "keys": [
        {"capability": '{"*":["*"]}'},
        {"capability": '{"[*]*":["*"]}'},
        {"capability": '{"*":["subscribe","history","presence"]}'},
    ],
    "namespaces": [
        {"id": "persisted", "persisted": True},
        {"id": "mutable", "mutableMessages": True},
    ],
}


async def _root(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await handle_websocket(request)
    return web.json_response({"service": "ably-bridge emulator", "realtime": "GET / + Upgrade"})


def build_application(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[rest.error_middleware], client_max_size=8 * 1024 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/", _root)
    admin.add_routes(app)
    rest.add_routes(app)
    comet.add_routes(app)
    rest_messages.add_routes(app)
    revocation.add_routes(app)
    return app


def exposure_warning(host: str) -> str | None:
    """What to tell the operator when ``host`` makes the emulator reachable from elsewhere."""
    if is_loopback(host):
        return None
    return (
        f"emulator bound to {host}: reachable from other machines; its admin API (/_emulator)"
        " has no credentials and its keys are development keys. Bind 127.0.0.1 unless other"
        " machines must reach it, and then only on a network you trust"
    )


def make_self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A throwaway certificate for ``host``/localhost/127.0.0.1 via the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("--tls needs the openssl command to make a certificate")
    cert, key = directory / "emulator-cert.pem", directory / "emulator-key.pem"
    san = f"subjectAltName=DNS:localhost,IP:127.0.0.1,{'IP' if host[0].isdigit() else 'DNS'}:{host}"
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=localhost", "-addext", san,
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _Proxy:
    """Calls the wrapped loop-side object's methods on the emulator's loop thread."""

    def __init__(self, emulator: Emulator, target: Any) -> None:
        self._emulator = emulator
        self._target = target

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)
        if not callable(method):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._emulator.call(method, *args, **kwargs)

        return call


class Emulator:
    """A local Ably server on ``host:port`` (0 picks a free port), run in a daemon thread.

    ``with Emulator() as emu: requests.get(emu.url + "/time")``. ``root_key``
    and ``keys`` are the default app's keys; ``faults`` injects failures;
    ``create_app`` adds apps in the ``POST /apps`` shape.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: EmulatorConfig | None = None,
        clock: Clock | None = None,
        tls: bool = False,
        cert_dir: str | Path | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = port
        self.tls = tls
        self.config = config or EmulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.state = EmulatorState(self.config, self.clock)
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self.ca_file: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ssl: ssl.SSLContext | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.runtime: Runtime | None = None
        self._default_app: apps.App | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        if self.tls:
            self._ssl = self._make_ssl()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="ably-emulator", daemon=True
        )
        self._thread.start()
        ready.result(timeout=30)
        log.info("emulator listening on %s", self.url)
        warning = exposure_warning(self.host)
        if warning is not None:
            log.warning("%s", warning)
        return self

    def _make_ssl(self) -> ssl.SSLContext:
        directory = self._cert_dir
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ably-emulator-")
            directory = Path(self._tmp.name)
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = make_self_signed(directory, self.host)
        self.ca_file = cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        return context

    def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self) -> None:
        loop = asyncio.get_running_loop()
        self.state.schedule = self._scheduler(loop)
        if self.runtime is None:
            runtime = Runtime(self.state, None, Faults(), self.tls, self.host)  # type: ignore[arg-type]
            runtime.hub = Hub(runtime)
            runtime.faults.runtime = runtime
            self.state.on_event = runtime.hub.on_event
            self.runtime = runtime
            self._default_app = self.state.create_app(self.config.default_app or DEFAULT_APP)
            self.state.default_app_id = self._default_app.app_id
        await self._listen(self.runtime)

    async def _listen(self, runtime: Runtime) -> None:
        self._runner = web.AppRunner(build_application(runtime), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def _scheduler(
        self, loop: asyncio.AbstractEventLoop
    ) -> Callable[[float, Callable[[], None]], Timer]:
        if isinstance(self.clock, SystemClock):
            return loop.call_later
        clock = self.clock

        def schedule(delay: float, callback: Callable[[], None]) -> Timer:
            def fire() -> None:
                loop.call_soon_threadsafe(callback)

            return clock.call_later(delay, fire)

        return schedule

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(timeout=10)
            except Exception:
                log.exception("emulator shutdown failed")
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _shutdown(self) -> None:
        if self.runtime is not None:
            for session in list(self.runtime.hub.sessions.values()):
                session.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def restart(self) -> None:
        """Stop listening, drop every connection and its state, listen again on the same port.

        Apps, keys, tokens, history and presence fixtures survive (like a server
        restart with durable storage); connection state does not, so resumes fail.
        """

        async def bounce() -> None:
            assert self.runtime is not None
            await self._shutdown()
            for conn in list(self.state.connections.values()):
                self.state.sessions.forget(conn)
            await self._listen(self.runtime)

        self._run(bounce())

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- calling into the loop ---------------------------------------------------
    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("emulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the emulator's loop thread and return its result."""
        if self._loop is None or threading.current_thread() is self._thread:
            return fn(*args, **kwargs)

        async def run() -> T:
            return fn(*args, **kwargs)

        result: T = self._run(run())
        return result

    # -- facts ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self._url_host}:{self.port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def app_id(self) -> str:
        assert self._default_app is not None, "emulator not started"
        return self._default_app.app_id

    @property
    def keys(self) -> list[str]:
        """The default app's keys as ``appId.keyId:secret``, root key first."""
        assert self._default_app is not None, "emulator not started"
        return [key.key_str for key in self._default_app.ordered_keys()]

    @property
    def root_key(self) -> str:
        return self.keys[0]

    @property
    def faults(self) -> Any:
        """Thread-safe proxy to :class:`~ably_bridge.emulator.faults.Faults`."""
        assert self.runtime is not None, "emulator not started"
        return _Proxy(self, self.runtime.faults)

    # -- apps and connections -------------------------------------------------------
    def create_app(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create an app (``POST /apps`` body shape); returns the sandbox-style reply."""
        return self.call(lambda: apps.app_response(self.state.create_app(body)))

    def delete_app(self, app_id: str) -> None:
        def delete() -> None:
            assert self.runtime is not None
            self.runtime.faults.drop_connections(app_id=app_id)
            self.state.delete_app(app_id)

        self.call(delete)

    def connection_ids(self, app_id: str | None = None, active_only: bool = True) -> list[str]:
        """Ids of the (live) connections, optionally of one app."""

        def ids() -> list[str]:
            return [
                c.id
                for c in self.state.connections.values()
                if (app_id is None or c.app_id == app_id) and (c.active or not active_only)
            ]

        return self.call(ids)

    def __repr__(self) -> str:
        return f"Emulator(url={self.url!r}, running={self._thread is not None})"
