"""docs/operating-console.md's dead-letter block runs as written, against real Redis.

The block's commands run one after the other in a folder holding a
``bridge.yaml`` (the block's ``-c bridge.yaml``), with the example id replaced
by the id of a real dead letter: an event encrypted with the key the
configuration's environment variable now holds, dead-lettered as undecodable
the way the bridge stores it (the raw wire message).
"""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path

import pytest
import redis
import yaml

from ably_bridge.bridge.deadletter import DeadLetter, DeadLetterWriter, Reason
from ably_bridge.encoding.crypto import get_cipher, get_default_params
from ably_bridge.protocol.models import Message
from tests.commands.deadletter_support import REDIS_URL, run_cli
from tests.readme_support import block
from tests.support.services import redis_available

pytestmark = pytest.mark.skipif(not redis_available(), reason="Redis is not running")

KEY = base64.b64encode(bytes(range(32))).decode()  # AES-256
EXAMPLE_ID = "1733580000000-0"


def test_the_dead_letter_block(
    prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "bridge.yaml").write_text(
        yaml.safe_dump(
            {
                "app_id": "docapp",
                "ably": {"endpoint": "127.0.0.1", "port": 1, "tls": False},
                "redis": {"url": REDIS_URL, "key_prefix": prefix},
                "dead_letter": {"stream": f"{prefix}:deadletter"},
                "routes": [
                    {
                        "id": "orders",
                        "channels": ["orders:*"],
                        "ciphers": [{"channels": ["orders:*"], "key_env": "ORDERS_KEY"}],
                        "targets": [{"type": "redis_stream", "key": prefix + ":s:{channel}"}],
                    }
                ],
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORDERS_KEY", KEY)
    cipher = get_cipher(get_default_params(key=KEY))
    wire = Message(id="order-1:0", name="created", data={"total": 12}, timestamp=1).encoded(cipher)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    writer = DeadLetterWriter(client, f"{prefix}:deadletter")
    assert writer.write(
        DeadLetter(Reason.UNDECODABLE, "orders", "orders:7", wire, 40016, "cannot decode data",
                   "channel.message", "order-1:0")
    )  # fmt: skip
    ((entry_id, _),) = client.xrange(f"{prefix}:deadletter")

    commands = block("console-deadletter").commands()
    assert len(commands) == 5
    outputs = []
    for command in commands:
        argv = shlex.split(command.replace(EXAMPLE_ID, entry_id))
        assert argv[0] == "ably-bridge"
        result = run_cli(capsys, *argv[1:])
        assert result.code == 0, (command, result.out, result.err)
        outputs.append(result.out)
    listed, filtered, shown, dry, _ = outputs
    assert entry_id in listed and entry_id in filtered
    assert "reason:        undecodable" in shown
    assert f"would replay {entry_id}" in dry and "decoded again" in dry
    (_, fields), *rest = client.xrange(f"{prefix}:s:orders:7")
    assert not rest
    message = json.loads(fields["envelope"])["messages"][0]
    assert message["data"] == {"total": 12} and message["id"] == "order-1:0"
    assert client.xlen(f"{prefix}:deadletter") == 0
    client.close()
