"""The shared plumbing: option resolution from the environment, parsers, redaction, progress."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from ably_bridge.commands import common
from ably_bridge.commands.progress import Progress


def args(**values: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "key": None, "key_file": None, "endpoint": None, "port": None, "tls": None,
        "binary": None, "cipher_key": None,
    }  # fmt: skip
    base.update(values)
    return argparse.Namespace(**base)


def test_environment_defaults() -> None:
    env = {
        "ABLY_KEY": "app.key:secret",
        "ABLY_ENDPOINT": "127.0.0.1",
        "ABLY_PORT": "8080",
        "ABLY_TLS": "false",
        "ABLY_USE_BINARY_PROTOCOL": "false",
    }
    conn = common.client_kwargs(args(), env)
    assert conn.key == "app.key:secret"
    assert conn.options == {
        "endpoint": "127.0.0.1",
        "tls": False,
        "port": 8080,
        "insecure_allow_basic_over_http": True,
        "use_binary_protocol": False,
    }
    assert "secret" not in repr(conn)


def test_options_beat_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("file.key:fromfile\n")
    env = {"ABLY_KEY": "env.key:fromenv", "ABLY_TLS": "false", "ABLY_PORT": "1"}
    conn = common.client_kwargs(
        args(key_file=str(key_file), tls=True, port=8443, binary=True, endpoint="main"), env
    )
    assert conn.key == "file.key:fromfile"
    assert conn.options == {"endpoint": "main", "tls": True, "tls_port": 8443,
                            "use_binary_protocol": True}  # fmt: skip
    conn = common.client_kwargs(args(key="flag.key:fromflag", key_file=str(key_file)), env)
    assert conn.key == "flag.key:fromflag"


def test_key_file_from_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("app.key:infile")
    assert common.resolve_key(args(), {"ABLY_KEY_FILE": str(key_file)}) == "app.key:infile"
    with pytest.raises(common.UsageError, match="cannot read the key file"):
        common.resolve_key(args(), {"ABLY_KEY_FILE": str(tmp_path / "none")})


@pytest.mark.parametrize(
    ("env", "message"),
    [({"ABLY_PORT": "http"}, "ABLY_PORT"), ({"ABLY_USE_BINARY_PROTOCOL": "x"}, "BINARY")],
)
def test_bad_environment(env: dict[str, str], message: str) -> None:
    with pytest.raises(common.UsageError, match=message):
        common.client_kwargs(args(), {"ABLY_KEY": "a.b:c", **env})


def test_plain_http_to_a_remote_host_warns(capsys: pytest.CaptureFixture[str]) -> None:
    common.client_kwargs(args(endpoint="emulator", tls=False), {"ABLY_KEY": "a.b:c"})
    assert "Basic auth over plain HTTP to emulator" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("1.5", 1.5), ("30s", 30.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_duration(text: str, seconds: float) -> None:
    assert common.duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "5w", "soon"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        common.duration(text)


def test_time_bound() -> None:
    assert common.time_bound("1700000000000") == 1_700_000_000_000
    assert common.time_bound("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert common.time_bound("2023-11-14T22:13:20") == 1_700_000_000_000  # naive = UTC
    ago = common.time_bound("1h")
    import time

    assert abs((time.time() * 1000 - ago) - 3_600_000) < 5_000
    with pytest.raises(argparse.ArgumentTypeError):
        common.time_bound("last tuesday")


def test_redaction_of_errors() -> None:
    secrets = ["app.key:s3cr3t-value", "s3cr3t-value"]
    assert common.redact("bad app.key:s3cr3t-value here", secrets) == "bad <redacted> here"
    assert common.redact("only s3cr3t-value", secrets) == "only <redacted>"


def test_tool_wrapper_redacts_secrets_from_ably_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ably_bridge import AblyException

    monkeypatch.setenv("ABLY_KEY", "app.key:VERYSECRET")

    def failing(_args: argparse.Namespace) -> int:
        raise AblyException("echoing app.key:VERYSECRET and VERYSECRET", 40100, 401)

    assert common.tool(failing)(argparse.Namespace()) == 1
    err = capsys.readouterr().err
    assert "VERYSECRET" not in err and "error 40100 (HTTP 401)" in err


def test_tool_wrapper_maps_interrupt_to_130(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    assert common.tool(interrupted)(argparse.Namespace()) == 130


def test_progress_renders_bar_and_count() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(stream, label="h", enabled=True, unit="msgs", width=10, clock=lambda: now[0])
    bar.update(5, 0.5)
    now[0] = 0.05
    bar.update(6, 0.6)  # throttled: no redraw within the interval
    assert stream.getvalue().count("\r") == 1
    assert bar.render() == "h [######....]  60%  6 msgs  0.1s"
    bar.close()
    assert stream.getvalue().endswith("\n") and "100%" in stream.getvalue()


def test_progress_without_fraction_and_disabled() -> None:
    stream = io.StringIO()
    bar = Progress(stream, label="h", enabled=True, clock=lambda: 0.0)
    bar.update(3)
    assert bar.render() == "h 3 items  0.0s"
    quiet = io.StringIO()
    off = Progress(quiet, label="h", enabled=False)
    off.update(1, 0.5)
    off.close()
    assert quiet.getvalue() == ""
