"""Create or update the project's virtualenv, saying what it does while it does it.

Usage: ``python3 scripts/setup_venv.py VENV [EXTRAS]`` (the Makefile's ``install``
step). It checks the Python version first (3.11 or newer, with a clear message
otherwise), creates ``VENV`` if it is missing, then installs the project in
editable mode with ``EXTRAS`` (default ``dev``). pip's own output is reduced to
one progress line per phase (resolving/downloading, then installing), updated
in place on a terminal and every 20 packages otherwise, so a first run (about
half a minute, longer on a slow network) never sits silent. On failure, pip's
whole output is printed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINIMUM = (3, 11)


def say(text: str) -> None:
    print(f"setup: {text}", flush=True)


class Progress:
    """One line per phase: rewritten in place on a terminal, sparse lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.open = False

    def update(self, text: str, count: int) -> None:
        if self.tty:
            sys.stdout.write(f"\r  {text} ({count})\033[K")
            sys.stdout.flush()
            self.open = True
        elif count == 1 or count % 20 == 0:
            print(f"  {text} ({count})", flush=True)

    def line(self, text: str) -> None:
        self.end()
        print(f"  {text}", flush=True)

    def end(self) -> None:
        if self.open:
            sys.stdout.write("\n")
            self.open = False


def pip_install(python: Path, extras: str) -> int:
    argv = [
        str(python), "-m", "pip", "install", "--progress-bar", "off",
        "--disable-pip-version-check", "-e", f"{ROOT}[{extras}]",
    ]  # fmt: skip
    progress = Progress()
    collected = 0
    output: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)
        if line.startswith("Collecting "):
            collected += 1
            progress.update("resolving and downloading packages", collected)
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            progress.line(f"installing {count} packages (the longest step)")
        elif line.startswith("Successfully installed"):
            progress.line("installed")
    status = proc.wait()
    progress.end()
    if status != 0:
        sys.stdout.write("".join(output))
        say(f"pip failed with status {status} (its whole output is above)")
    return status


def main(argv: list[str]) -> int:
    if sys.version_info < MINIMUM:
        found = ".".join(map(str, sys.version_info[:3]))
        say(
            f"Python {MINIMUM[0]}.{MINIMUM[1]} or newer is needed; {sys.executable} is {found}. "
            "Run make with PYTHON=/path/to/python3.11 (or newer)."
        )
        return 1
    venv = Path(argv[1]) if len(argv) > 1 else ROOT / ".venv"
    extras = argv[2] if len(argv) > 2 else "dev"
    started = time.monotonic()
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating the virtualenv {venv} (the first run takes about half a minute)")
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False)
        if made.returncode != 0:
            say("python3 -m venv failed; on Debian or Ubuntu: apt-get install python3-venv")
            return 1
    say(f"installing ably-bridge[{extras}] and its dependencies into {venv}")
    status = pip_install(python, extras)
    if status == 0:
        say(f"done in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
