"""The chart's secrets under `helm template`, GitOps and upgrades (templates/_secrets.tpl).

Offline renders (no cluster: `lookup` is empty) may not generate values, because they would change
on every render; the pods' checksum annotations hash only the Secret keys each workload reads.
The cluster-aware cases render through helm-python-sdk against `FakeKubeApi`, which answers
Helm's `lookup` as an API server would: no cluster runs on this machine.
"""
from __future__ import annotations

import base64
import copy
import re
from typing import Any, Mapping

import pytest

from swarm_checks import helm_render
from swarm_checks.errors import SwarmError
from tests.conftest import CHART_DIR
from tests.fake_kube_api import FakeKubeApi

NAMESPACE = "vllm-swarm"
SECRET = "swarm-secrets"
CHECKSUM = "checksum/secrets"
# Every value the chart would otherwise generate, under its values name and its Secret key.
EXPLICIT = {
    "redisPassword": "redis-0c1d2e3f4a5b6c7d", "postgresPassword": "postgres-8e9fa0b1c2d3e4f5",
    "clickhousePassword": "clickhouse-a6b7c8d9e0f1", "minioRootPassword": "minio-1a2b3c4d5e6f7a8b",
    "qdrantApiKey": "qdrant-9c8b7a6f5e4d3c2b", "langfuseSalt": "salt-2f3e4d5c6b7a8f9e",
    "langfuseEncryptionKey": "0123456789abcdef" * 4, "nextauthSecret": "nextauth-5d6c7b8a9f0e1d2c",
    "langfusePublicKey": "pk-lf-3a4b5c6d7e8f", "langfuseSecretKey": "sk-lf-9f8e7d6c5b4a",
    "langfuseInitUserPassword": "init-7e6d5c4b3a2f1e0d", "proxyApiKeys": "key-4b5a6f7e8d9c0b1a",
}
KEYS = {"redisPassword": "redis-password", "postgresPassword": "postgres-password", "clickhousePassword": "clickhouse-password",
        "minioRootPassword": "minio-root-password", "qdrantApiKey": "qdrant-api-key", "langfuseSalt": "langfuse-salt",
        "langfuseEncryptionKey": "langfuse-encryption-key", "nextauthSecret": "nextauth-secret",
        "langfusePublicKey": "langfuse-public-key", "langfuseSecretKey": "langfuse-secret-key",
        "langfuseInitUserPassword": "langfuse-init-user-password", "proxyApiKeys": "proxy-api-keys"}
WORKLOADS = ("Deployment", "StatefulSet")


def _values(**secrets: str) -> dict[str, Any]:
    return {"proxy": {"enabled": True}, "secrets": dict(secrets)}


def _checksums(manifests: list[dict[str, Any]]) -> dict[str, str | None]:
    return {doc["metadata"]["name"]: (doc["spec"]["template"]["metadata"].get("annotations") or {}).get(CHECKSUM)
            for doc in manifests if doc["kind"] in WORKLOADS}


def _secret(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return next(doc for doc in manifests if doc["kind"] == "Secret" and doc["metadata"]["name"] == SECRET)


def _decoded(manifests: list[dict[str, Any]]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in _secret(manifests)["data"].items()}


def _readers(manifests: list[dict[str, Any]], key: str) -> set[str]:
    """The workloads whose containers read this key of the chart's Secret."""
    found = set()
    for doc in manifests:
        if doc["kind"] not in WORKLOADS:
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name") == SECRET and ref.get("key") == key:
                    found.add(doc["metadata"]["name"])
    return found


def _in_cluster(api: FakeKubeApi, values: Mapping[str, Any], upgrade: bool) -> list[dict[str, Any]]:
    """Render as `helm install`/`helm upgrade` do, `lookup` answered by the fake API server."""
    import helm_python

    with helm_python.Config(kubeconfig_content=api.kubeconfig(), namespace=NAMESPACE) as config:
        rendered = config.render(helm_python.Chart.load(str(CHART_DIR)), dict(values), name="swarm", namespace=NAMESPACE,
                                 is_install=not upgrade, is_upgrade=upgrade)
    return [doc for path, text in sorted(rendered.items()) if not path.endswith(".txt") for doc in helm_render._documents(text)]


def _in_cluster_error(api: FakeKubeApi, values: Mapping[str, Any], upgrade: bool) -> str:
    import helm_python

    with pytest.raises(helm_python.HelmError) as caught:
        _in_cluster(api, values, upgrade)
    return str(caught.value)


# --- offline: helm template, Argo CD -------------------------------------------------------------

def test_offline_render_without_secrets_fails_in_one_line_naming_what_to_set() -> None:
    with pytest.raises(SwarmError) as caught:
        helm_render.render(CHART_DIR, _values())
    message = str(caught.value)
    assert "\n" not in message and "rendered without a cluster" in message, message
    assert "set existingSecret" in message and "secrets.generate=offline" in message, message
    assert all(f"secrets.{name}" in message for name in EXPLICIT), message


def test_offline_render_names_only_the_values_still_missing() -> None:
    given = {name: value for name, value in EXPLICIT.items() if name != "postgresPassword"}
    with pytest.raises(SwarmError) as caught:
        helm_render.render(CHART_DIR, _values(**given))
    message = str(caught.value)
    assert "secrets.postgresPassword" in message and "secrets.redisPassword" not in message, message


def test_offline_render_with_existing_secret_passes_and_hashes_nothing() -> None:
    manifests = helm_render.render(CHART_DIR, {"existingSecret": "managed-elsewhere", "proxy": {"enabled": True}})
    assert not [doc for doc in manifests if doc["kind"] == "Secret"]
    assert set(_checksums(manifests).values()) == {None}, _checksums(manifests)
    assert _readers(manifests, "postgres-password") == set()  # they read managed-elsewhere now
    refs = {env["valueFrom"]["secretKeyRef"]["name"] for doc in manifests if doc["kind"] in WORKLOADS
            for c in doc["spec"]["template"]["spec"]["containers"] for env in c.get("env") or [] if "valueFrom" in env
            and "secretKeyRef" in env["valueFrom"]}
    assert refs == {"managed-elsewhere"}


def test_offline_render_with_every_secret_explicit_is_reproducible() -> None:
    first = helm_render.render(CHART_DIR, _values(**EXPLICIT))
    second = helm_render.render(CHART_DIR, _values(**EXPLICIT))
    assert {k: v for k, v in _decoded(first).items() if k in KEYS.values()} == {KEYS[n]: v for n, v in EXPLICIT.items()}
    assert _checksums(first) == _checksums(second)
    # Every workload that reads a key of the Secret carries a checksum (vLLM: its optional hf-token); the others none.
    readers = set().union(*(_readers(first, key) for key in (*_decoded(first), "hf-token", "openai-api-key")))
    assert {name for name, value in _checksums(first).items() if value} == readers
    assert {"swarm-postgresql", "swarm-vllm-phi", "swarm-proxy"} <= readers


def test_a_changed_postgres_password_restarts_its_readers_only() -> None:
    before = helm_render.render(CHART_DIR, _values(**EXPLICIT))
    after = helm_render.render(CHART_DIR, _values(**{**EXPLICIT, "postgresPassword": "postgres-rotated-0f1e2d3c"}))
    changed = {name for name, value in _checksums(before).items() if _checksums(after)[name] != value}
    assert changed == _readers(before, "postgres-password") == {"swarm-postgresql", "swarm-langfuse-web", "swarm-langfuse-worker"}
    assert _checksums(after)["swarm-vllm-phi"] == _checksums(before)["swarm-vllm-phi"]


def test_offline_opt_in_generates_throwaway_values() -> None:
    """secrets.generate=offline: CI and previews render; Langfuse's key is still 64 hex characters."""
    values = _decoded(helm_render.render(CHART_DIR, {"secrets": {"generate": "offline"}}))
    assert re.fullmatch(r"[0-9a-f]{64}", values["langfuse-encryption-key"])
    assert values["langfuse-public-key"].startswith("pk-lf-") and len(values["redis-password"]) == 32


def test_an_encryption_key_that_is_not_64_hex_is_refused() -> None:
    with pytest.raises(SwarmError) as caught:
        helm_render.render(CHART_DIR, _values(**{**EXPLICIT, "langfuseEncryptionKey": "not-hex"}))
    assert "secrets.langfuseEncryptionKey must be 64 hex characters" in str(caught.value), caught.value


# --- in a cluster: lookup answers --------------------------------------------------------------

def test_install_generates_once_and_upgrades_reuse_the_stored_secret() -> None:
    with FakeKubeApi() as api:
        installed = _in_cluster(api, _values(), upgrade=False)
        assert f"/api/v1/namespaces/{NAMESPACE}/secrets" in api.requests  # the list that tells a cluster from none
        api.put(_secret(installed), NAMESPACE)
        upgraded = _in_cluster(api, _values(), upgrade=True)
        again = _in_cluster(api, _values(), upgrade=True)
    assert _decoded(upgraded) == _decoded(installed) == _decoded(again)
    # The checksums hash the stored values: an upgrade with nothing changed restarts nothing.
    assert _checksums(upgraded) == _checksums(installed) == _checksums(again)


def test_upgrade_without_the_stored_secret_refuses_to_generate() -> None:
    with FakeKubeApi() as api:
        message = _in_cluster_error(api, _values(), upgrade=True)
    assert "upgrading release swarm but its Secret swarm-secrets is gone" in message and "secrets.langfuseEncryptionKey" in message
    assert message.count("\n") == 0, message


def test_a_key_the_stored_secret_lacks_is_added_and_only_its_readers_restart() -> None:
    """A chart version adding a key: on upgrade the stored values stay, the new key is generated."""
    with FakeKubeApi() as api:
        installed = _in_cluster(api, _values(), upgrade=False)
        older = copy.deepcopy(_secret(installed))
        del older["data"]["proxy-api-keys"]
        api.put(older, NAMESPACE)
        upgraded = _in_cluster(api, _values(), upgrade=True)
    kept = {k: v for k, v in _decoded(upgraded).items() if k != "proxy-api-keys"}
    assert kept == {k: v for k, v in _decoded(installed).items() if k != "proxy-api-keys"}
    assert _decoded(upgraded)["proxy-api-keys"] and _decoded(upgraded)["proxy-api-keys"] != _decoded(installed)["proxy-api-keys"]
    changed = {name for name, value in _checksums(installed).items() if _checksums(upgraded)[name] != value}
    assert changed == _readers(installed, "proxy-api-keys") == {"swarm-proxy"}


def test_generate_never_refuses_even_in_a_cluster() -> None:
    with FakeKubeApi() as api:
        message = _in_cluster_error(api, _values(generate="never"), upgrade=False)
        api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET},
                 "data": {KEYS[n]: base64.b64encode(v.encode()).decode() for n, v in EXPLICIT.items()}}, NAMESPACE)
        stored = _decoded(_in_cluster(api, _values(generate="never"), upgrade=True))
    assert "secrets.generate=never" in message and "secrets.redisPassword" in message, message
    assert {k: v for k, v in stored.items() if k in KEYS.values()} == {KEYS[n]: v for n, v in EXPLICIT.items()}
