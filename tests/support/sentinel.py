"""A Sentinel group a test owns: a primary, a replica and three Sentinels on loopback.

:class:`Group` starts them as ``redis-server`` processes on free ports (no
persistence; the replica syncs without delay), and :func:`sentinel_group` waits
until the Sentinels agree on the primary, the replica is in sync and every
Sentinel sees the replica and the two others (a failover needs a majority),
then kills everything on exit. A test SIGKILLs the primary to make the
Sentinels promote the replica (``down-after-milliseconds`` 1000).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.services import free_port, redis_available
from tests.support.wait import eventually

__all__ = ["SERVICE", "WAIT", "Group", "sentinel_group"]

SERVICE = "ablybridge"
WAIT = 30.0  # generous: the whole suite may be running beside the test


class Group:
    """A primary, a replica and three Sentinels on free loopback ports, owned by the test."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not on the PATH")
        self.exe = exe
        self.workdir = workdir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.args: dict[int, list[str]] = {}
        self.primary = self._server()
        self.replica = self._server("--replicaof", "127.0.0.1", str(self.primary))
        self.sentinels = [self._sentinel(i) for i in range(3)]

    def _spawn(self, port: int, *args: str) -> None:
        self.args[port] = list(args)
        self.procs[port] = subprocess.Popen(
            [self.exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        eventually(lambda: redis_available(f"redis://127.0.0.1:{port}/0"), WAIT, f"redis on {port}")

    def _server(self, *extra: str) -> int:
        port = free_port()
        data = self.workdir / str(port)
        data.mkdir()
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(data),
                    "--repl-diskless-sync-delay", "0", *extra)  # fmt: skip
        return port

    def restart_as_replica(self, port: int, of: int) -> None:
        """Start a killed server again on its port as a replica of ``of``.

        (The Sentinels would reconfigure it too, after about ten seconds; an
        operator's restarted node comes back with the configuration they rewrote.)
        """
        self._spawn(port, *self.args[port], "--replicaof", "127.0.0.1", str(of))

    def replica_online(self, primary: int) -> bool:
        client = redis.Redis(port=primary, socket_timeout=2)
        try:
            return bool(client.info("replication").get("slave0", {}).get("state") == "online")
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _sentinel(self, index: int) -> int:
        port = free_port()
        conf = self.workdir / f"sentinel-{index}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self._spawn(port, str(conf), "--sentinel")
        return port

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def current_primary(self) -> int | None:
        for port in self.sentinels:
            try:
                client = redis.Redis(port=port, socket_timeout=2)
                _, found = client.sentinel_get_master_addr_by_name(SERVICE)
                client.close()
                return int(found)
            except (redis.RedisError, TypeError):
                continue
        return None

    def sentinels_know_each_other(self) -> bool:
        """Every Sentinel sees the replica and the two others (a failover needs a majority)."""
        for port in self.sentinels:
            client = redis.Redis(port=port, socket_timeout=2)
            try:
                state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            replicas, others = state.get("num-slaves", 0), state.get("num-other-sentinels", 0)
            if int(replicas) != 1 or int(others) != 2:
                return False
        return True

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def kombu_url(self, *, master_param: bool = False) -> str:
        """The group as kombu's ``sentinel://`` broker URL (the primary's name is
        :data:`SERVICE`; as ``?master_name=`` with ``master_param``, the bridge's form)."""
        hosts = ";".join(f"sentinel://127.0.0.1:{p}/0" for p in self.sentinels)
        return hosts + (f"?master_name={SERVICE}" if master_param else "")


@contextlib.contextmanager
def sentinel_group(workdir: Path) -> Iterator[Group]:
    """A :class:`Group` in ``workdir``, ready for a failover; killed on exit."""
    found = Group(workdir)
    try:
        eventually(lambda: found.current_primary() == found.primary, WAIT, "the Sentinels to agree")
        eventually(lambda: found.replica_online(found.primary), WAIT, "the replica in sync")
        eventually(
            found.sentinels_know_each_other,
            WAIT,
            "the Sentinels to find each other and the replica",
        )
        yield found
    finally:
        found.close()
