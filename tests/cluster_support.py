"""A real Redis Cluster on loopback for tests: ``redis-server`` nodes + ``redis-cli --cluster``.

:class:`LocalCluster` starts ``primaries * (1 + replicas)`` nodes on free
ports (each with its cluster bus port, +10000, free too), joins them with
``redis-cli --cluster create ... --cluster-replicas N --cluster-yes`` and
waits until every node reports ``cluster_state:ok``. Tests may SIGKILL a
primary (:meth:`kill`) and wait for its replica's promotion
(:meth:`wait_promoted`). The ``redis_cluster`` fixture of tests/conftest.py
shares one 3-primary cluster per session; a test that kills nodes starts its own.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

WAIT = 30.0  # generous: the whole suite may run beside it


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` free ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 < 65536 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


class LocalCluster:
    """A Redis Cluster of loopback ``redis-server`` processes (module docstring)."""

    def __init__(self, workdir: Path, *, primaries: int = 3, replicas: int = 1) -> None:
        self.workdir = workdir
        self.primaries = primaries
        self.replicas = replicas
        self.ports = cluster_ports(primaries * (1 + replicas))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._exe = "redis-server"

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])
        return f"redis+cluster://{seeds}/"

    def start(self) -> LocalCluster:
        exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if exe is None or cli is None:
            pytest.skip("redis-server or redis-cli is not on the PATH")
        self._exe = exe
        for port in self.ports:
            self._spawn(exe, port)
        for port in self.ports:
            self._wait_up(port)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas),
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=WAIT,
        )  # fmt: skip
        self.wait_ok()
        self.wait_replicas_synced()
        return self

    def wait_replicas_synced(self) -> None:
        """Until every live replica's link to its primary is up (initial sync done)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                links = [self.node(p).info("replication") for p in self.live_ports()]
                if all(i.get("master_link_status", "up") == "up" for i in links):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the replicas did not sync")

    def _spawn(self, exe: str, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(node_dir), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
             "--cluster-replica-validity-factor", "0", "--repl-diskless-sync", "yes",
             "--repl-diskless-sync-delay", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _wait_up(self, port: int) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                if self.node(port).ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"cluster node {port} did not start")

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def live_ports(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def wait_ok(self) -> None:
        """Until every live node says ``cluster_state:ok`` and every slot has a primary."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                if all(self._ok(p) for p in self.live_ports()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def _ok(self, port: int) -> bool:
        info = self.node(port).execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text and "cluster_slots_ok:16384" in text

    def primary_ports(self) -> list[int]:
        out = []
        for port in self.live_ports():
            role = self.node(port).execute_command("ROLE")
            if role[0] in (b"master", "master"):
                out.append(port)
        return out

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves ``key`` now."""
        slot = int(key_slot(key.encode()))
        for start, end, primary, *_ in self._slots():
            if start <= slot <= end:
                return int(primary[1])
        raise RuntimeError(f"no primary serves {key!r}")

    def _slots(self) -> list[list[object]]:
        reply = self.node(self.live_ports()[0]).execute_command("CLUSTER", "SLOTS")
        return list(reply)

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown: what it had not replicated is lost)."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)

    def restart(self, port: int) -> None:
        """Start a killed node again; its nodes.conf makes it rejoin as a replica."""
        self._spawn(self._exe, port)
        self._wait_up(port)
        self.wait_ok()
        self.wait_replicas_synced()

    def wait_promoted(self, dead: int) -> None:
        """Until the cluster serves every slot again without ``dead``."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                if all(self._ok(p) for p in self.live_ports()) and dead not in self._masters():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError("no replica took over the dead primary's slots")

    def _masters(self) -> set[int]:
        return {int(primary[1]) for _, _, primary, *_ in self._slots()}  # type: ignore[index]

    def flush(self) -> None:
        for port in self.primary_ports():
            self.node(port).flushall()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
