"""The documentation's code runs as written.

Every fenced block of README.md, examples/README.md and docs/*.md carries a
marker on the line before it: ``<!-- block: ID -->`` for a block that a test
here runs (``RUN_BY`` says which), or ``<!-- block: not run (reason) -->``.
:func:`test_every_block_is_marked_and_run` keeps the two in step. The runs use
a copy of the repository (``make dev`` and ``.venv/bin/...`` work there as in
a clone) and change only what a test must: ports (``8080`` becomes a free
port), ``--json --port 0`` added to ``make dev`` so the test can read what it
printed, and placeholder keys and Redis URLs replaced by the test's own.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from ably_bridge import AblyRest
from ably_bridge.devstack.layout import DEV_APP
from ably_bridge.emulator import Emulator, EmulatorConfig
from ably_bridge.envelope import EnvelopeBuilder
from ably_bridge.protocol.models import Message

from .readme_support import (
    ROOT,
    DevStackProcess,
    all_blocks,
    block,
    clean_env,
    make_sandbox,
    run_shell,
    with_dev_args,
)

DEV_KEY = "dev.root:dev-secret-not-for-production"
ENV_LOAD = "set -a; . ./.ably-dev.env; set +a"
STACK_ARGS = "--port 0 --json --no-publisher"

# Which test runs each block (a test of this module, or another file).
RUN_BY = {
    "shortcuts-check": "tests/test_check_shortcuts.py",
    "quickstart": "tests/devstack/test_readme_quickstart.py (make dev); make test is CI itself",
    "publish-your-own": "test_the_newcomer_path",
    "my-handler": "test_the_newcomer_path",
    "dev-with-handler": "test_the_newcomer_path",
    "publish-ping": "test_the_newcomer_path",
    "envelope-sample": "test_the_envelope_sample_is_what_the_bridge_builds",
    "production-tasks": "test_the_production_path",
    "production-route": "test_the_production_path",
    "production-run": "test_the_production_path",
    "rest-client": "test_the_client_blocks",
    "realtime-client": "test_the_client_blocks",
    "emulator-in-tests": "test_the_client_blocks",
    "producers": "test_the_producer_block",
    "emulator-alone": "test_the_emulator_command",
    "make-cipher-key": "test_the_cipher_key_command",
    "examples-chat-stack": "test_the_examples",
    "examples-chat-ping": "test_the_examples",
    "examples-producer": "test_the_examples",
    "examples-token-server": "test_the_examples",
    "console-deadletter": "tests/commands/test_operating_console_doc.py",
    "console-prometheus": "tests/deploy/test_observability.py",
    "console-workers": "tests/commands/test_workers_command.py",
    "console-celery-inspect": "tests/commands/test_workers_command.py",
}


def test_every_block_is_marked_and_run() -> None:
    blocks = all_blocks()
    assert blocks, "no fenced blocks found"
    unmarked = [b.where for b in blocks if b.mark is None]
    assert not unmarked, f"blocks without a <!-- block: ... --> marker: {unmarked}"
    ids = [b.id for b in blocks if b.id is not None]
    assert len(ids) == len(set(ids)), f"duplicate block ids: {sorted(ids)}"
    assert set(ids) == set(RUN_BY), (set(ids) ^ set(RUN_BY), "ids in the docs vs RUN_BY")
    for b in blocks:
        if b.id is None:
            assert b.not_run_reason, f"{b.where}: 'not run' needs a reason"
    here = set(globals())
    for runner in RUN_BY.values():
        assert runner in here or (ROOT / runner.split(" ")[0]).exists(), runner


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    return make_sandbox(tmp_path / "ably-bridge")


def _yours(stage: str, name: str | None = None) -> Any:
    return lambda e: (
        e.get("event") == "yours" and e["stage"] == stage and (name is None or e["name"] == name)
    )


def _start_stack(sandbox: Path, block_id: str) -> DevStackProcess:
    (command,) = block(block_id).commands()
    stack = DevStackProcess(with_dev_args(command, STACK_ARGS), sandbox, clean_env())
    started = stack.wait_for(lambda e: e.get("event") == "started", 120)
    assert started["env_file"] == ".ably-dev.env"
    page = requests.get(started["status"], timeout=30)  # the status page it printed
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    status = requests.get(started["status"] + "status", timeout=30)
    assert status.status_code == 200 and status.json()["process"]["site"]
    return stack


@pytest.mark.slow
def test_the_newcomer_path(sandbox: Path) -> None:
    (sandbox / "my_handler.py").write_text(block("my-handler").text)
    stack = _start_stack(sandbox, "dev-with-handler")
    try:
        out = run_shell(block("publish-your-own").text, sandbox, clean_env())
        assert out.startswith("published text to chat:lobby: id ")
        hello = stack.wait_for(_yours("handled", "text"), 30)
        assert hello["client_id"] == "me" and hello["data"] == "'hello'"
        assert hello["result"]["output"] == "me sent text 'hello' on chat:lobby\n"
        run_shell(f"{ENV_LOAD}\n{block('publish-ping').text}", sandbox, clean_env())
        ping = stack.wait_for(lambda e: _yours("handled", "text")(e) and e["data"] == "'ping'", 30)
        assert ping["result"]["error"] is None
        pong = stack.wait_for(_yours("stream", "pong"), 30)  # the handler's reply, bridged back
        assert pong["channel"] == "chat:lobby" and pong["data"] == "'pong'"
    finally:
        stack.stop()
    stopped = [e for e in stack.events if e.get("event") == "stopped"]
    assert stopped and stopped[-1]["exit_code"] == 0
    assert not (sandbox / ".ably-dev.env").exists()


def test_the_envelope_sample_is_what_the_bridge_builds() -> None:
    sample = json.loads(block("envelope-sample").text)
    item = sample["messages"][0]
    message = Message(
        id=item["id"], name=item["name"], client_id=item["clientId"], data=item["data"],
        timestamp=item["timestamp"], serial=item["serial"],
    )  # fmt: skip
    built = EnvelopeBuilder(sample["appId"], sample["site"]).message(
        sample["channel"], message, sample["ruleId"], now_ms=sample["timestamp"]
    )
    assert built.to_dict() == sample


@pytest.fixture(scope="module")
def dev_emulator() -> Iterator[Emulator]:
    """An emulator with the dev app, so the documented dev key works as written."""
    with Emulator(config=EmulatorConfig(default_app=json.loads(json.dumps(DEV_APP)))) as emu:
        yield emu


def _as_written(text: str, emulator: Emulator) -> str:
    return text.replace("8080", str(emulator.port))


def _python(code: str, env: dict[str, str], cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{code}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_client_blocks(dev_emulator: Emulator) -> None:
    rest_out = _python(_as_written(block("rest-client").text, dev_emulator), clean_env())
    assert "created {'id': 1}" in rest_out
    assert "note encrypted on the way out" not in rest_out  # history ran before that publish
    realtime_out = _python(_as_written(block("realtime-client").text, dev_emulator), clean_env())
    assert "['alice']" in realtime_out and "got text hi" in realtime_out
    emulator_out = _python(block("emulator-in-tests").text, clean_env())
    assert emulator_out.startswith("http://127.0.0.1:")


def test_the_producer_block() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/14")
    queue = f"readme-{uuid.uuid4().hex[:8]}"
    env = clean_env({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/14", "ABLY_WORKER_QUEUE": queue})
    try:
        out = _python(block("producers").text, env)
        task_id, ids = out.strip().split(" ", 1)
        assert len(task_id) == 36 and ids.startswith("[")
        assert client.llen(queue) == 1  # enqueued for a worker, with the ids fixed already
        body = json.loads(client.lindex(queue, 0))
        assert body["headers"]["id"] == task_id
    finally:
        client.delete(queue)
        client.close()


def test_the_cipher_key_command(sandbox: Path) -> None:
    out = run_shell(block("make-cipher-key").text, sandbox, clean_env())
    assert len(base64.b64decode(out.strip(), validate=True)) == 32  # AES-256


def test_the_emulator_command(dev_emulator: Emulator) -> None:
    port = _free_port()
    (command,) = block("emulator-alone").commands()
    argv = command.replace("8080", str(port)).split()
    argv[0] = str(Path(sys.prefix) / "bin" / "ably-bridge")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{port}/channels/x/messages", auth=tuple(DEV_KEY.split(":")),
                    timeout=2,
                )  # fmt: skip
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("the emulator did not answer")
        assert answer.status_code == 200  # the dev key from --app-config works
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_the_production_path(sandbox: Path) -> None:
    """The production blocks against the dev stack's services, as the README runs them."""
    (sandbox / "my_handler.py").write_text(block("my-handler").text)
    (sandbox / "tasks.py").write_text(block("production-tasks").text)
    # As written, plus a health port of the test's own (other tests may hold 8081).
    config = block("production-route").text + f"health: {{port: {_free_port()}}}\n"
    (sandbox / "bridge.yaml").write_text(config)
    load, check, run, worker = block("production-run").commands()
    assert load.startswith(ENV_LOAD)
    stack = _start_stack(sandbox, "dev-with-handler")  # the stack of the README's first steps
    started = next(e for e in stack.events if e.get("event") == "started")
    channel = f"chat:readme-{uuid.uuid4().hex[:8]}"
    background: list[subprocess.Popen[bytes]] = []
    try:
        assert run_shell(f"{ENV_LOAD}\n{check}", sandbox, clean_env()).strip() == (
            "bridge.yaml: valid"
        )
        port = int(started["emulator"].rsplit(":", 1)[1])
        with AblyRest(key=DEV_KEY, endpoint="127.0.0.1", port=port, tls=False) as rest:
            rest.channels.get(channel).publish("text", "ping")
            for command in (run, worker):
                argv = ["bash", "-c", f"{ENV_LOAD}; exec {command}"]
                background.append(
                    subprocess.Popen(argv, cwd=sandbox, env=clean_env(), start_new_session=True)
                )
            deadline = time.monotonic() + 90
            names: list[str | None] = []
            while time.monotonic() < deadline and "pong" not in names:
                names = [m.name for m in rest.channels.get(channel).history(limit=10)]
                time.sleep(0.2)
            # The bridge's first discovery found the channel and backfilled the ping; the
            # task ran the handler; its ably.publish put the pong on the channel.
            assert "pong" in names, names
        client = redis.Redis.from_url(started["redis"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            entries = client.xrange(f"ably:{channel}")
            if any(b"ping" in fields[b"envelope"] for _id, fields in entries):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no ping in ably:{channel}: {client.keys('ably:*')}")
        client.close()
    finally:
        for proc in background:
            proc.terminate()
        for proc in background:
            proc.wait(timeout=60)
        stack.stop()


@pytest.mark.slow
def test_the_examples(sandbox: Path) -> None:
    stack = _start_stack(sandbox, "examples-chat-stack")
    try:
        run_shell(block("examples-chat-ping").text, sandbox, clean_env())
        ping = stack.wait_for(lambda e: _yours("handled")(e) and e["data"] == "'/ping'", 30)
        assert ping["result"]["returned"] == "'pong'"
        stack.wait_for(_yours("stream", "pong"), 30)
        out = run_shell(f"{ENV_LOAD}\n{block('examples-producer').text}", sandbox, clean_env())
        assert out.count("enqueued task ") == 3
        for number in (1, 2, 3):
            stack.wait_for(
                lambda e, n=number: _yours("stream", "text")(e) and f'"number": {n}' in e["data"],
                30,
            )
        port = str(_free_port())
        script = block("examples-token-server").text.replace("5000", port)
        token_out = run_shell(
            f"{ENV_LOAD}\nexport TOKEN_SERVER_PORT={port}\n{script}\nkill %1\n",
            sandbox, clean_env(),
        )  # fmt: skip
        login, token = token_out.strip().splitlines()[-2:]
        assert json.loads(login) == {"user": "alice"}
        request = json.loads(token)
        assert request["clientId"] == "alice" and request["keyName"] == DEV_KEY.split(":")[0]
    finally:
        stack.stop()
