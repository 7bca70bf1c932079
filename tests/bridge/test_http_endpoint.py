"""The bounded endpoint server: slow, idle, greedy and rude clients cannot hold the probes.

Each test talks real TCP to a server on 127.0.0.1 and waits on what it can observe
(an answer, a closed socket, a counter) with a deadline - never a fixed sleep.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from ably_bridge.bridge.health import HealthServer, is_loopback
from ably_bridge.bridge.http_endpoint import MAX_HEADER_BYTES, EndpointServer, Request
from ably_bridge.bridge.jsonlog import configure_logging
from tests.bridge.log_support import root_logging_restored
from tests.support.wait import eventually

BIG = b"x" * 8_000_000


def handler(request: Request) -> tuple[int, bytes, str]:
    path = request.path
    if path == "/big":
        return 200, BIG, "text/plain"
    if path == "/boom":
        raise RuntimeError("probe bug")
    return 200, b'{"ok":true}', "application/json"


@pytest.fixture
def make() -> Iterator[Callable[..., EndpointServer]]:
    servers: list[EndpointServer] = []

    def build(**options: object) -> EndpointServer:
        h = options.pop("handler", handler)
        server = EndpointServer("127.0.0.1", 0, h, **options)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield build
    for server in servers:
        server.stop()


def url(server: EndpointServer, path: str = "/healthz") -> str:
    host, port = server.address
    return f"http://{host}:{port}{path}"


def connect(server: EndpointServer) -> socket.socket:
    return socket.create_connection(server.address, timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def raw_request(server: EndpointServer, data: bytes) -> bytes:
    with connect(server) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_is_answered_and_closed(make: Callable[..., EndpointServer]) -> None:
    server = make()
    answer = requests.get(url(server), timeout=5)
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert answer.headers["Connection"] == "close"
    assert answer.headers["Cache-Control"] == "no-store"
    head = raw_request(server, b"HEAD /healthz?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    # A worker counts its answer after sending it: the GET's client may be done first.
    eventually(lambda: server.stats.served == 2, what=server.stats)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET nothing HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /\xff HTTP/1.1\r\n\r\n", b"400"),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", b"405"),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * (MAX_HEADER_BYTES + 10), b"431"),
        (b"GET /healthz HTTP/1.0\n\n", b"200"),
    ],
)
def test_bad_requests_get_a_status_not_a_thread(
    make: Callable[..., EndpointServer], request_bytes: bytes, status: bytes
) -> None:
    server = make()
    assert raw_request(server, request_bytes).split(b" ")[1] == status


def test_headers_must_arrive_within_the_header_timeout(
    make: Callable[..., EndpointServer],
) -> None:
    """A slowloris trickle does not extend the deadline; probes go on meanwhile."""
    server = make(header_timeout=0.5)
    slow = connect(server)
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                slow.sendall(b"X-A: b\r\n")
            except OSError:
                return
            stop.wait(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    assert requests.get(url(server), timeout=5).status_code == 200
    assert closed_by_server(slow)
    stop.set()
    thread.join()
    assert time.monotonic() - started < 5
    assert server.stats.timeouts == 1
    slow.close()


def test_idle_connections_cost_no_thread_and_cannot_lock_probes_out(
    make: Callable[..., EndpointServer],
) -> None:
    server = make(max_connections=20, workers=1, header_timeout=30)
    idle = [connect(server) for _ in range(20)]
    eventually(lambda: len(server._conns) == 20)
    assert requests.get(url(server), timeout=5).status_code == 200  # the oldest gave way
    assert server.stats.evicted == 1 and len(server._conns) == 19
    assert closed_by_server(idle[0])
    for sock in idle:
        sock.close()
    eventually(lambda: not server._conns)
    assert server.stats.hangups == 19


def test_requests_past_the_queue_are_answered_503_at_once(
    make: Callable[..., EndpointServer],
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def blocking(request: Request) -> tuple[int, bytes, str]:
        entered.set()
        release.wait(10)
        return 200, b"{}", "application/json"

    server = make(handler=blocking, workers=1, queue=1)
    first = threading.Thread(target=lambda: requests.get(url(server), timeout=10))
    first.start()
    assert entered.wait(5)
    busy = requests.get(url(server), timeout=5)
    assert busy.status_code == 503 and busy.json() == {"error": "busy"}
    release.set()
    first.join()
    assert server.stats.busy == 1
    assert requests.get(url(server), timeout=5).status_code == 200


def test_a_client_that_does_not_read_cannot_hold_a_worker(
    make: Callable[..., EndpointServer],
) -> None:
    server = make(workers=1, write_timeout=0.5)
    greedy = connect(server)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.sendall(b"GET /big HTTP/1.1\r\n\r\n")  # 8 MB that it never reads
    eventually(lambda: server.stats.timeouts == 1)
    assert requests.get(url(server), timeout=5).status_code == 200
    greedy.close()


# The server in a process of its own, so that the test can freeze it (SIGSTOP) while
# clients queue up: it prints its port, a line per stats read, and any thread's death.
FROZEN_SERVER = """
import sys, threading
from ably_bridge.bridge.http_endpoint import EndpointServer
threading.excepthook = lambda a: print("thread died:", repr(a.exc_value), flush=True)
server = EndpointServer("127.0.0.1", 0, lambda r: (200, b"{}", "text/plain"), max_connections=2)
server.start()
print(server.address[1], flush=True)
for _ in sys.stdin:
    print(server.stats, flush=True)
"""


def test_a_connection_evicted_in_the_round_it_is_readable_does_not_kill_the_loop() -> None:
    # Found by CI under load: an accept evicted (closed) a connection whose data was
    # ready in the same round of the loop, its stale event raised KeyError, and the
    # loop thread ended: nothing was accepted any more. Frozen, the server finds the
    # listener and that connection ready together, in that order (epoll reports
    # events in the order they happened).
    proc = subprocess.Popen(
        [sys.executable, "-c", FROZEN_SERVER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        address = ("127.0.0.1", int(proc.stdout.readline()))
        first = socket.create_connection(address, timeout=10)  # waits: the oldest
        probe = f"http://{address[0]}:{address[1]}/"
        assert requests.get(probe, timeout=10).status_code == 200  # so `first` was taken
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            late = [socket.create_connection(address, timeout=10) for _ in range(2)]
            first.sendall(b"GET / HTTP/1.0\r\n\r\n")  # readable after the listener
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert closed_by_server(first)  # evicted for the second late one
        assert requests.get(probe, timeout=10).status_code == 200  # the loop lives on
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        # `first`, then the oldest late one for the second probe; both probes served.
        assert "served=2, evicted=2," in line, line
        for sock in [first, *late]:
            sock.close()
    finally:
        proc.kill()
        proc.wait()


def test_hang_ups_are_quiet_json_lines_without_tracebacks(
    make: Callable[..., EndpointServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ably_bridge")  # whatever a client set it to
    stream = io.StringIO()
    with root_logging_restored():
        configure_logging("DEBUG", stream=stream)
        server = make()
        for _ in range(100):
            with connect(server) as sock:
                sock.sendall(b"GET /big HTTP/1.1\r\n\r\n")
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
        for _ in range(100):
            connect(server).close()  # connects and leaves without a request
        stats = server.stats
        eventually(
            lambda: stats.hangups + stats.busy + stats.served + stats.evicted == 200, what=stats
        )
        assert stats.hangups >= 100
        assert requests.get(url(server, "/boom"), timeout=5).status_code == 500
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [r for r in records if r["logger"] == "ably_bridge.bridge.http_endpoint"]
    hangups = [r for r in mine if r["level"] == "DEBUG"]
    assert hangups and not any("exc" in r for r in hangups)
    (error,) = [r for r in mine if r["level"] != "DEBUG"]  # only the handler's own bug
    assert error["level"] == "ERROR" and "probe bug" in error["exc"]


def test_health_server_warns_when_other_hosts_can_reach_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def probe() -> tuple[bool, list[str]]:
        return True, []

    caplog.set_level(logging.INFO, "ably_bridge.bridge.health")
    quiet = HealthServer("::1", 0, alive=probe, ready=probe, metrics=str).start()
    assert quiet.url.startswith("http://[::1]:")
    assert requests.get(quiet.url + "/healthz", timeout=5).status_code == 200
    quiet.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # As if bound to a routable address (the test does not expose a port).
    monkeypatch.setattr(
        EndpointServer, "addresses", property(lambda self: [("127.0.0.1", 1), ("10.1.2.3", 1)])
    )
    loud = HealthServer("127.0.0.1", 0, alive=probe, ready=probe, metrics=str).start()
    loud.stop()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert "listens on 10.1.2.3, which" in message and "without authentication" in message
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert not is_loopback("10.0.0.1") and not is_loopback("bridge")


def test_several_addresses_share_one_port() -> None:
    def probe() -> tuple[bool, list[str]]:
        return True, []

    server = HealthServer("127.0.0.1, ::1", 0, alive=probe, ready=probe, metrics=str).start()
    try:
        (v4, port), (v6, port6) = server.addresses
        assert (v4, v6) == ("127.0.0.1", "::1") and port == port6 == server.port
        for base in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
            assert requests.get(base + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_an_address_it_cannot_listen_on_is_named() -> None:
    def probe() -> tuple[bool, list[str]]:
        return True, []

    taken = HealthServer("127.0.0.1", 0, alive=probe, ready=probe, metrics=str)
    try:
        with pytest.raises(OSError, match=r"health\.host/health\.port: cannot listen on 127\.0"):
            HealthServer("127.0.0.1", taken.port, alive=probe, ready=probe, metrics=str)
        # TEST-NET-1: an address of no interface here (bind fails, no DNS involved).
        with pytest.raises(OSError, match=r"cannot listen on 192\.0\.2\.1 port 0: "):
            HealthServer("192.0.2.1", 0, alive=probe, ready=probe, metrics=str)
    finally:
        taken.stop()
