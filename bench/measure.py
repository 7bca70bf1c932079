"""What the benchmarks read off processes and metrics: CPU seconds and RSS from /proc, a
process by its command line, a free port, quantiles, and Prometheus histogram quantiles
over the difference of two scrapes. Linux only (/proc). Also the addresses of the local
services the benchmarks use (``REDIS_URL``, ``AMQP_URL`` from the environment)."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def find_pid(needle: str) -> int | None:
    """A process whose command line contains ``needle`` (the broker / Redis server), if visible."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline:
            return int(entry.name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def histogram(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) pairs of a Prometheus histogram, summed over label sets."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return sorted(buckets.items())


def histogram_quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float:
    """Like PromQL histogram_quantile over the difference of two scrapes (seconds)."""
    prev = dict(before)
    diff = [(le, c - prev.get(le, 0.0)) for le, c in after]
    if not diff or diff[-1][1] <= 0:
        return float("nan")
    rank = q * diff[-1][1]
    lower_le, lower_c = 0.0, 0.0
    for le, c in diff:
        if c >= rank:
            if math.isinf(le):
                return lower_le
            return lower_le + (le - lower_le) * (rank - lower_c) / max(c - lower_c, 1e-9)
        lower_le, lower_c = le, c
    return float("nan")


def instructions_per_frame(script: str, argv: list[str], frames: int) -> float:
    """Run ``script`` with ``argv`` (less ``--instructions`` and ``--frames``) under callgrind
    for ``frames`` and twice as many, and return the difference per frame (set-up cancels)."""
    passed = [a for a in argv if a != "--instructions"]
    passed = [a for i, a in enumerate(passed) if a != "--frames" and
              (i == 0 or passed[i - 1] != "--frames")]  # fmt: skip
    low = instructions(script, passed, frames)
    return (instructions(script, passed, frames * 2) - low) / frames


def instructions(script: str, argv: list[str], frames: int) -> int:
    """Instructions (valgrind callgrind) that ``script`` runs for one round of ``frames``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, script, *argv, "--frames", str(frames), "--rounds", "1"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        text = out.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError("no totals in the callgrind output")
    return int(found.group(1))
