"""The dev stack's terminal handling: a gone reader, and the foreground group under make."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap

import pytest

from ably_bridge.devstack.terminal import SafeStream, own_foreground


def test_safe_stream_writes_until_the_reader_goes() -> None:
    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w")
    stream = SafeStream(writer)
    stream.write("one\n")
    assert os.read(read_fd, 100) == b"one\n"
    os.close(read_fd)
    stream.write("two\n")  # EPIPE: no exception, the stream goes quiet
    assert stream.closed
    stream.write("three\n")
    writer.close()  # the final flush cannot raise either: the fd now points at /dev/null


def test_safe_stream_passes_text_through() -> None:
    buffer = io.StringIO()
    stream = SafeStream(buffer)
    stream.write("a\n")
    stream.write("b\n")
    assert buffer.getvalue() == "a\nb\n" and not stream.closed


def test_own_foreground_does_nothing_outside_make() -> None:
    with own_foreground({}) as taken:
        assert taken is False


# A child in a pty, in the terminal's foreground group but not its leader (as a
# recipe of make is), prints whether it took the foreground and the groups involved.
_CHILD = textwrap.dedent(
    """
    import os, sys
    from ably_bridge.devstack.terminal import own_foreground
    fd = sys.stdin.fileno()
    before = os.tcgetpgrp(fd)
    with own_foreground({"MAKELEVEL": "1"}) as taken:
        inside = os.tcgetpgrp(fd)
        mine = os.getpgrp()
    after = os.tcgetpgrp(fd)
    print(taken, inside == mine, mine != before, after == before, flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "tcsetpgrp"), reason="POSIX terminals only")
def test_own_foreground_takes_and_returns_the_terminal_under_make() -> None:
    pid, master = pty.fork()
    if pid == 0:  # the pty's session leader stands in for make
        proc = subprocess.run([sys.executable, "-c", _CHILD], check=False)
        os._exit(proc.returncode)
    output = b""
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert output.decode().split()[-4:] == ["True", "True", "True", "True"], output
