"""The generated ErrorCode enum is current with ably-common's errors.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ably_bridge.error_codes import TITLES, ErrorCode

ROOT = Path(__file__).resolve().parents[1]
ERRORS_JSON = ROOT / "tests" / "fixtures" / "ably-common" / "errors.json"


def test_generated_file_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_error_codes.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_registry_code_is_a_member() -> None:
    codes = json.loads(ERRORS_JSON.read_text(encoding="utf-8"))["codes"]
    assert {int(c) for c in codes} == {int(m) for m in ErrorCode}
    assert set(TITLES) == {int(c) for c in codes}


def test_well_known_names() -> None:
    assert ErrorCode.TOKEN_EXPIRED == 40142
    assert ErrorCode.CAPABILITY_DENIED == 40160
    assert ErrorCode.INVALID_CHANNEL_NAME == 40010
