"""What the upstream projects require of the chart's deployment: the guarantees Compose holds
(compose_rules' `upstream-requirements`), held here on the rendered manifests.

Langfuse v3 (langfuse.com/self-hosting/configuration: "passed to all application containers")
needs PostgreSQL, ClickHouse >= 24.3 without a cluster, Redis and S3, each named in its env, and an
ENCRYPTION_KEY of 64 hex characters; its queues live in Redis, which must never evict them. A
store switched off for a managed one (`redis.enabled=false` + `redis.external.host`) is the
operator's to configure: what is not rendered is not checked, but an in-namespace host (a name
without dots) that no Service renders is.
"""
from __future__ import annotations

import base64
import re
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

from swarm_checks.static.helm_rules import ChartRender, _component, _pods, _v
from swarm_checks.static.rule import Rule, Violation

LANGFUSE = ("langfuse-web", "langfuse-worker")
# Required in every Langfuse v3 container; a tuple is "one of these".
LANGFUSE_ENV: tuple[str | tuple[str, ...], ...] = (
    "DATABASE_URL", "SALT", "ENCRYPTION_KEY", "NEXTAUTH_URL", "NEXTAUTH_SECRET",
    "CLICKHOUSE_URL", "CLICKHOUSE_MIGRATION_URL", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD",
    ("REDIS_CONNECTION_STRING", "REDIS_HOST"), "LANGFUSE_S3_EVENT_UPLOAD_BUCKET",
)
# Env values naming a host Langfuse connects to.
LANGFUSE_HOSTS = ("DATABASE_URL", "CLICKHOUSE_URL", "CLICKHOUSE_MIGRATION_URL", "REDIS_HOST", "REDIS_CONNECTION_STRING",
                  "LANGFUSE_S3_EVENT_UPLOAD_ENDPOINT", "LANGFUSE_S3_MEDIA_UPLOAD_ENDPOINT")
CLICKHOUSE_MINIMUM = (24, 3)
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


def _containers_of(render: ChartRender, component: str) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for doc, spec in _pods(render):
        if _component(doc) == component and doc.get("kind") != "Pod":
            for container in spec.get("containers") or []:
                yield doc, container


def _env(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(e.get("name")): e for e in container.get("env") or []}


def _secret_value(render: ChartRender, entry: Mapping[str, Any]) -> str | None:
    """The value an env entry has: literal, or decoded from the chart's own Secret (None when the
    Secret is not rendered: existingSecret)."""
    if "value" in entry:
        return str(entry["value"])
    ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
    for doc in render.manifests:
        if doc.get("kind") == "Secret" and (doc.get("metadata") or {}).get("name") == ref.get("name"):
            encoded = (doc.get("data") or {}).get(ref.get("key"))
            return base64.b64decode(str(encoded)).decode() if encoded is not None else None
    return None


def _host(value: str) -> str:
    return (urlsplit(value).hostname or "") if "://" in value else value.split(":", 1)[0]


def check_redis_noeviction(render: ChartRender) -> Iterator[Violation]:
    for doc, container in _containers_of(render, "redis"):
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        policy = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--maxmemory-policy"), None)
        if policy != "noeviction":
            yield _v(render, doc, "redis-noeviction", f"runs with --maxmemory-policy {policy or '(unset: the image default)'}: Langfuse's queues live in this Redis and need noeviction", container.get("name"))


def check_langfuse_requirements(render: ChartRender) -> Iterator[Violation]:
    services = {(doc.get("metadata") or {}).get("name") for doc in render.manifests if doc.get("kind") == "Service"}
    for component in LANGFUSE:
        for doc, container in _containers_of(render, component):
            env, name = _env(container), container.get("name")
            for wanted in LANGFUSE_ENV:
                options = wanted if isinstance(wanted, tuple) else (wanted,)
                if not any(option in env for option in options):
                    yield _v(render, doc, "langfuse-requirements", f"no {' or '.join(options)}: Langfuse v3 requires it in every container", name)
            cluster = (env.get("CLICKHOUSE_CLUSTER_ENABLED") or {}).get("value")
            if str(cluster).lower() != "false":
                yield _v(render, doc, "langfuse-requirements", f"CLICKHOUSE_CLUSTER_ENABLED is {cluster!r}: a single ClickHouse server needs false", name)
            if not re.search(r":3(\.|$)", str(container.get("image") or "")):
                yield _v(render, doc, "langfuse-requirements", f"image {container.get('image')!r} is not Langfuse v3", name)
            for key in LANGFUSE_HOSTS:
                value = (env.get(key) or {}).get("value")
                host = _host(str(value)) if value else ""
                if host and "." not in host and "$(" not in host and host not in services:
                    yield _v(render, doc, "langfuse-requirements", f"{key} names host {host!r}, which no Service of the chart renders", name)


def check_langfuse_encryption_key(render: ChartRender) -> Iterator[Violation]:
    for component in LANGFUSE:
        for doc, container in _containers_of(render, component):
            entry = _env(container).get("ENCRYPTION_KEY")
            value = _secret_value(render, entry) if entry else None
            if value is not None and not _HEX_KEY.match(value):
                yield _v(render, doc, "langfuse-encryption-key", f"ENCRYPTION_KEY is {len(value)} characters, not 64 hex characters (openssl rand -hex 32): Langfuse refuses to start", container.get("name"))


def check_clickhouse_version(render: ChartRender) -> Iterator[Violation]:
    for doc, container in _containers_of(render, "clickhouse"):
        image = str(container.get("image") or "")
        version = re.search(r":(\d+)\.(\d+)", image)
        if not version or (int(version.group(1)), int(version.group(2))) < CLICKHOUSE_MINIMUM:
            yield _v(render, doc, "clickhouse-version", f"image {image!r} is older than ClickHouse {'.'.join(map(str, CLICKHOUSE_MINIMUM))} (Langfuse v3 needs it)", container.get("name"))
        env = _env(container)
        if "CLICKHOUSE_USER" not in env or "CLICKHOUSE_PASSWORD" not in env:
            yield _v(render, doc, "clickhouse-version", "CLICKHOUSE_USER and CLICKHOUSE_PASSWORD must be set (Langfuse logs in as that user)", container.get("name"))


RULES: tuple[Rule[ChartRender], ...] = (
    Rule("redis-noeviction", "the chart's Redis never evicts (Langfuse's queues)", check_redis_noeviction),
    Rule("langfuse-requirements", "Langfuse v3's env in every container, no ClickHouse cluster, hosts that are rendered", check_langfuse_requirements),
    Rule("langfuse-encryption-key", "Langfuse's ENCRYPTION_KEY is 64 hex characters", check_langfuse_encryption_key),
    Rule("clickhouse-version", "ClickHouse >= 24.3 with a user and password", check_clickhouse_version),
)
