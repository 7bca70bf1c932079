"""deploy/kubernetes: Kubernetes schemas, probes, graceful termination, commands, variables."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ably_bridge.bridge.config import parse_config
from tests.deploy.helpers import (
    DEPLOY,
    PLATFORM_VARS,
    ROOT,
    check_command,
    env_example_names,
    expand,
    load_yaml_documents,
    variable_refs,
)

K8S = DEPLOY / "kubernetes"
KUBERNETES_VERSIONS = ["1.28.0", "1.33.0"]
IMAGE_ENTRYPOINT = ["ably-bridge"]  # deploy/Dockerfile's ENTRYPOINT
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in load_yaml_documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in resources():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


# What the downward API gives a pod, as a sample.
FIELD_SAMPLES = {"status.podIP": "10.0.0.7"}


def env_sources(c: dict[str, Any]) -> dict[str, str]:
    """Every variable the container gets: its env plus its ConfigMap and Secret envFrom.

    ``$(VAR)`` in a value is expanded from the variables defined before it, as the
    kubelet does; a downward-API field gets its sample value (or ``<NAME>``).
    """
    values: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            values.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            values.update(find("Secret", source["secretRef"]["name"])["stringData"])
    for e in c.get("env", []):
        if "value" in e:
            values[e["name"]] = expand(e["value"], values)
        else:
            field = e["valueFrom"].get("fieldRef", {}).get("fieldPath", "")
            values[e["name"]] = FIELD_SAMPLES.get(field, f"<{e['name']}>")
    return values


def bridge_config() -> Any:
    statefulset = find("StatefulSet", "ably-bridge")
    env = env_sources(container(statefulset))
    text = find("ConfigMap", "ably-bridge-config")["data"]["bridge.yaml"]
    return parse_config(yaml.safe_load(text), env, source="configmap bridge.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_valid_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    for doc in load_yaml_documents(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{path.name} {doc['kind']}: {where}: {exc.message}")


def test_the_schemas_catch_mistakes() -> None:
    statefulset = find("StatefulSet", "ably-bridge")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_expected_resources() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in resources())
    assert kinds == [
        ("ConfigMap", "ably-bridge-config"),
        ("ConfigMap", "ably-bridge-env"),
        ("Deployment", "ably-bridge-worker"),
        ("Secret", "ably-bridge-secrets"),
        ("Service", "ably-bridge"),
        ("StatefulSet", "ably-bridge"),
    ]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_bridge_probes_use_the_health_endpoint() -> None:
    statefulset = find("StatefulSet", "ably-bridge")
    c = container(statefulset)
    config = bridge_config()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == config.health.port
    # Loopback (kubectl port-forward) and the pod IP (the kubelet's probes), not 0.0.0.0.
    assert config.health.host == "127.0.0.1,10.0.0.7"
    [pod_ip] = [e for e in c["env"] if e["name"] == "POD_IP"]
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    health = (ROOT / "ably_bridge" / "bridge" / "health.py").read_text()
    assert '"/readyz"' in health and '"/healthz"' in health
    service = find("Service", "ably-bridge")
    assert statefulset["spec"]["serviceName"] == "ably-bridge"
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]


def test_graceful_termination_matches_the_drain() -> None:
    statefulset = find("StatefulSet", "ably-bridge")
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= bridge_config().delivery.drain_timeout + 10
    worker = find("Deployment", "ably-bridge-worker")
    # A publish may retry for ABLY_WORKER_PUBLISH_DEADLINE (60 s by default).
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 60


@pytest.mark.parametrize(
    ("kind", "name"), [("StatefulSet", "ably-bridge"), ("Deployment", "ably-bridge-worker")]
)
def test_runs_as_non_root(kind: str, name: str) -> None:
    spec = find(kind, name)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    c = container(find(kind, name))
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    ("kind", "name"), [("StatefulSet", "ably-bridge"), ("Deployment", "ably-bridge-worker")]
)
def test_commands_and_variables(kind: str, name: str) -> None:
    c = container(find(kind, name))
    env = env_sources(c)
    argv = [*c.get("command", IMAGE_ENTRYPOINT), *c.get("args", [])]
    refs = set().union(*(variable_refs(a) for a in argv))
    assert refs <= set(env), f"{name}: $(VAR) not defined for the container: {refs - set(env)}"
    check_command([expand(a, env) for a in argv], f"{name} container")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        command = c.get(probe, {}).get("exec", {}).get("command")
        if command:
            if command[:2] == ["sh", "-c"]:
                refs = variable_refs(command[2]) - PLATFORM_VARS
                assert refs <= set(env)
                command = shlex.split(expand(command[2], env))
            check_command(command, f"{name} {probe}")
    assert set(env) <= env_example_names(), set(env) - env_example_names()


def test_configured_variables_are_in_env_example() -> None:
    names = set(find("ConfigMap", "ably-bridge-env")["data"])
    names |= set(find("Secret", "ably-bridge-secrets")["stringData"])
    assert names <= env_example_names(), names - env_example_names()


def test_the_bridge_config_is_valid_with_the_pod_environment() -> None:
    config = bridge_config()
    assert config.ably.endpoint == "main" and config.ably.tls is True
    assert {r.id for r in config.routes} == {"chat"}


def test_secrets_live_only_in_the_secret() -> None:
    secret = find("Secret", "ably-bridge-secrets")
    assert all("REPLACE-ME" in v for v in secret["stringData"].values())
    env = find("ConfigMap", "ably-bridge-env")["data"]
    assert not {"ABLY_KEY", "REDIS_URL", "CELERY_BROKER_URL"} & set(env)


def test_sharding_matches_the_statefulset() -> None:
    statefulset = find("StatefulSet", "ably-bridge")
    config = bridge_config()
    assert statefulset["spec"]["replicas"] > 1 and config.sharding.mode == "lease"
    # Static mode: the replica count in the env ConfigMap follows the StatefulSet, and
    # the pod's ordinal comes from the pod-index label.
    env = env_sources(container(statefulset))
    assert int(env["ABLY_BRIDGE_REPLICAS"]) == statefulset["spec"]["replicas"]
    [index] = [e for e in container(statefulset)["env"] if e["name"] == "ABLY_BRIDGE_REPLICA_INDEX"]
    assert "pod-index" in index["valueFrom"]["fieldRef"]["fieldPath"]
    text = find("ConfigMap", "ably-bridge-config")["data"]["bridge.yaml"]
    static = parse_config(
        yaml.safe_load(text),
        {**env, "ABLY_BRIDGE_SHARDING": "static", "ABLY_BRIDGE_REPLICA_INDEX": "2"},
    )
    assert (static.sharding.replica_index, static.sharding.replicas) == (2, 3)
