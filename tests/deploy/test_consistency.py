"""The deploy files agree with each other and with the package: image tag, stream names, steps."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ably_bridge import __version__

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _images() -> dict[str, str]:
    found = {}
    for path in [DEPLOY / "docker-compose.yml", *sorted((DEPLOY / "kubernetes").glob("*.yaml"))]:
        for match in re.finditer(r"image:\s*(ably-bridge:\S+)", path.read_text()):
            found[f"{path.name}:{match.group(1)}"] = match.group(1)
    return found


def test_every_file_uses_the_package_versions_image_tag() -> None:
    images = _images()
    assert len(images) >= 3
    assert set(images.values()) == {f"ably-bridge:{__version__}"}, images
    kustomize = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert kustomize["images"] == [{"name": "ably-bridge", "newTag": __version__}]
    assert f"-t ably-bridge:{__version__} ." in (DEPLOY / "README.md").read_text()


def test_the_stream_consumer_example_reads_the_stream_compose_writes() -> None:
    config = yaml.safe_load((DEPLOY / "compose" / "bridge.yaml").read_text())
    (route,) = config["routes"]
    (target,) = [t for t in route["targets"] if t["type"] == "redis_stream"]
    stream = target["key"].replace("{route}", route["id"])
    env = (DEPLOY / "env.example").read_text()
    assert f"# ABLY_WORKER_STREAMS={stream}\n" in env


def test_the_systemd_steps_install_from_the_clone_and_create_the_config_folder() -> None:
    steps = (DEPLOY / "systemd" / "ably-bridge.service").read_text()
    assert "pip install '.[bridge]'" in steps and "pip install 'ably-bridge" not in steps
    created = steps.index("install -d -m 0750 -g ably-bridge /etc/ably-bridge")
    assert created < steps.index("/etc/ably-bridge/env   (then edit)")
