"""What the status tests share: the documented schema, a validator, and a checked GET."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "status.schema.json"


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def validate(document: Any) -> None:
    """Fail with every schema violation of ``document`` listed."""
    validator = Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    assert not problems, "status document does not match docs/status.schema.json:\n" + "\n".join(
        problems[:20]
    )


def get_status(url: str, query: str = "", **headers: str) -> dict[str, Any]:
    """``GET <url>/status<query>``: a 200 of JSON that matches the schema."""
    answer = requests.get(f"{url}/status{query}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    doc: dict[str, Any] = answer.json()
    validate(doc)
    return doc
