"""The official Python SDK (``ably`` 3.1.4) pointed at the emulator, and payload helpers.

REST: ``AblyRestSync``/``AblyRest`` on ``rest_host``+``port`` with token auth,
because the SDK refuses Basic auth over plain HTTP (40103, no opt-out).
Realtime: ``AblyRealtime`` with ``realtime_host="host:port"``, because its
WebSocket URL is built from the host alone (upstream issue 567). The same
host string breaks that client's own REST calls (``http://host:port:80``),
so its ``auth_callback`` returns TokenDetails obtained by a separately
configured REST client (which signs a TokenRequest and exchanges it), and
history is read through a REST client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ably import AblyRealtime, AblyRest
from ably.sync import AblyRestSync

from ably_bridge.emulator import Emulator

TIMEOUT = 10.0  # seconds any single SDK operation may take
T = TypeVar("T")


def rest_sync(emu: Emulator, binary: bool, **options: Any) -> AblyRestSync:
    """A blocking REST client; pass ``key=`` (signs tokens locally) or ``auth_callback=``."""
    if "key" in options:
        options.setdefault("use_token_auth", True)
    return AblyRestSync(
        rest_host=emu.host, port=emu.port, tls=False, use_binary_protocol=binary, **options
    )


def rest_async(emu: Emulator, key: str, binary: bool) -> AblyRest:
    return AblyRest(
        key=key,
        rest_host=emu.host,
        port=emu.port,
        tls=False,
        use_token_auth=True,
        use_binary_protocol=binary,
    )


class PyRealtime:
    """An ``AblyRealtime`` with a token-minting REST client beside it; use ``async with``."""

    def __init__(
        self, emu: Emulator, key: str, binary: bool, client_id: str | None, **options: Any
    ) -> None:
        self.token_rest = rest_async(emu, key, binary)
        params = {"client_id": client_id} if client_id else {}

        async def auth_callback(_: Any) -> Any:
            return await self.token_rest.auth.request_token(params)

        self.client = AblyRealtime(
            auth_callback=auth_callback,
            realtime_host=f"{emu.host}:{emu.port}",
            tls=False,
            use_binary_protocol=binary,
            **options,
        )

    async def __aenter__(self) -> AblyRealtime:
        await asyncio.wait_for(self.client.connection.once_async("connected"), TIMEOUT)
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.token_rest.close()


class PyRealtimeThread:
    """A :class:`PyRealtime` on an event loop of its own thread, for tests that block.

    ``run(coro)`` executes a coroutine there and waits for it, so a synchronous
    test can put the asyncio SDK beside our (threaded) client and node peers.
    Listeners registered by coroutines run on that loop thread.
    """

    def __init__(
        self, emu: Emulator, key: str, binary: bool, client_id: str | None, **options: Any
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[PyRealtime, AblyRealtime]:
            wrapper = PyRealtime(emu, key, binary, client_id, **options)
            return wrapper, await wrapper.__aenter__()

        self.wrapper, self.client = self.run(start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def connection_id(self) -> str | None:
        connection_id: str | None = self.client.connection.connection_manager.connection_id
        return connection_id

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.wrapper.__aexit__())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


def describe(data: Any) -> dict[str, Any]:
    """A payload as ``{type, value}`` in the shape ``js/common.js`` uses."""
    if data is None:
        return {"type": "null", "value": None}
    if isinstance(data, str):
        return {"type": "string", "value": data}
    if isinstance(data, bytes | bytearray):
        return {"type": "binary", "value": bytes(data).hex()}
    return {"type": "json", "value": data}


def make(described: dict[str, Any]) -> Any:
    if described["type"] == "binary":
        return bytes.fromhex(described["value"])
    return described["value"]


PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("text", {"type": "string", "value": "héllo"}),
    ("json", {"type": "json", "value": {"a": [1, 2], "nested": {"b": None}}}),
    ("binary", {"type": "binary", "value": "00017f80feff"}),
]
