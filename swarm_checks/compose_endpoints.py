"""Endpoints of a Compose service: URL from its published port, credentials from its own
rendered configuration (environment, command), and their round trip through the shared state."""
from __future__ import annotations

import re
from typing import Any, Mapping, Protocol, Sequence

from swarm_checks.endpoint import Endpoint


def build_endpoint(name: str, kind: str, host: str, port: int, environment: Mapping[str, str],
                   spec: Mapping[str, Any], model: str | None, labels: Mapping[str, str]) -> Endpoint:
    """URL and credentials of a service, taken from its own rendered configuration."""
    base = f"http://{host}:{port}"
    env = environment
    if kind == "redis":
        command = [str(part) for part in (spec.get("command") or [])]
        password = env.get("REDISCLI_AUTH") or (command[command.index("--requirepass") + 1] if "--requirepass" in command else None)
        return Endpoint(name, kind, f"redis://{host}:{port}/0", password=password)
    if kind == "postgres":
        return Endpoint(name, kind, f"postgresql://{host}:{port}/{env.get('POSTGRES_DB', 'postgres')}",
                        username=env.get("POSTGRES_USER", "postgres"), password=env.get("POSTGRES_PASSWORD"),
                        extra={"langflow_db": env.get("LANGFLOW_DB", "")})
    if kind == "clickhouse":
        return Endpoint(name, kind, base, username=env.get("CLICKHOUSE_USER", "default"),
                        password=env.get("CLICKHOUSE_PASSWORD"), extra={"database": env.get("CLICKHOUSE_DB", "default")})
    if kind == "qdrant":
        return Endpoint(name, kind, base, api_key=env.get("QDRANT__SERVICE__API_KEY"))
    if kind == "minio":
        command = " ".join(str(part) for part in (spec.get("command") or []))
        bucket = re.search(r"/data/([A-Za-z0-9.-]+)", command)
        return Endpoint(name, kind, base, username=env.get("MINIO_ROOT_USER"), password=env.get("MINIO_ROOT_PASSWORD"),
                        extra={"bucket": bucket.group(1) if bucket else ""})
    if kind == "langfuse-web":
        return Endpoint(name, kind, base, username=env.get("LANGFUSE_INIT_PROJECT_PUBLIC_KEY"),
                        api_key=env.get("LANGFUSE_INIT_PROJECT_SECRET_KEY"),
                        extra={"project_id": env.get("LANGFUSE_INIT_PROJECT_ID", "")})
    if kind in ("llm", "proxy"):
        keys = [k.strip() for k in env.get("PROXY_API_KEYS", "").split(",") if k.strip()]
        command = [str(part) for part in (spec.get("command") or [])]
        api_key = keys[0] if keys else (command[command.index("--api-key") + 1] if "--api-key" in command else None)
        return Endpoint(name, kind, f"{base}/v1", api_key=api_key, model=model,
                        extra={"engine": labels.get("swarm.engine", "vllm" if kind == "llm" else ""),
                               **({"dtype": labels["swarm.dtype"]} if labels.get("swarm.dtype") else {})})
    return Endpoint(name, kind, base)


class _Published(Protocol):
    host: str
    published_port: int


class _Container(Protocol):
    def published(self, target_port: int) -> _Published | None: ...


def metrics_extra(labels: Mapping[str, str], containers: Sequence[_Container]) -> dict[str, str]:
    """`metrics_url` for a service whose Prometheus metrics have a port of their own (label
    `swarm.metrics-port`, e.g. the Ray head's metrics agent), once that port is published."""
    port = labels.get("swarm.metrics-port", "")
    published = next((p for c in containers if port.isdigit() and (p := c.published(int(port)))), None)
    return {"metrics_url": f"http://{published.host}:{published.published_port}/metrics"} if published else {}


def endpoint_to_json(endpoint: Endpoint) -> dict[str, Any]:
    return {"service": endpoint.service, "kind": endpoint.kind, "url": endpoint.url, "username": endpoint.username,
            "password": endpoint.password, "api_key": endpoint.api_key, "model": endpoint.model,
            "extra": dict(endpoint.extra)}


def endpoint_from_json(data: Mapping[str, Any]) -> Endpoint:
    return Endpoint(**{**data, "extra": dict(data.get("extra") or {})})
