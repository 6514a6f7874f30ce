"""One readiness probe per service kind, each through the service's official client or its
documented health endpoint.

A probe takes the service's Endpoint, raises when the service is not (yet) ready and returns a
short description of what it saw ("PONG", "3 alive nodes"). The waiting loop treats any
exception as transient until the deadline; `GiveUp` marks an answer that waiting cannot fix
(a wrong password, a model that is not served).

Kinds without a probe here (Ray workers, which publish no port) are ready when their container
is healthy; the Ray head's probe counts them.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable

import httpx

from swarm_checks.endpoint import Endpoint
from swarm_checks.waiting import GiveUp

Probe = Callable[[Endpoint], str]
TIMEOUT = httpx.Timeout(5.0)


def _get(url: str, *, headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> httpx.Response:
    response = httpx.get(url, headers=headers, auth=auth, timeout=TIMEOUT)
    if response.status_code in (401, 403):
        raise GiveUp(f"GET {url} answered {response.status_code}: the credentials were refused")
    response.raise_for_status()
    return response


def _client(module: str) -> ModuleType:
    """The official client `module` of the `clients` extra; without it, a GiveUp (installing is
    what helps, not waiting) that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GiveUp(f"the Python module {module} is not installed: pip install 'swarm-checks[clients]'") from None


def _bearer(endpoint: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}


def probe_redis(endpoint: Endpoint) -> str:
    """redis-py PING, authenticated with the service's password."""
    redis = _client("redis")
    client = redis.Redis.from_url(endpoint.url, password=endpoint.password, socket_timeout=5, socket_connect_timeout=5)
    try:
        if not client.ping():
            raise RuntimeError("PING did not answer PONG")
        version = client.info("server").get("redis_version", "?")
    except redis.AuthenticationError as error:
        raise GiveUp(f"Redis refused the password: {error}") from None
    finally:
        client.close()
    return f"PONG (Redis {version})"


def probe_postgres(endpoint: Endpoint) -> str:
    """psycopg connects with the service's user and password and asks for the version."""
    psycopg = _client("psycopg")
    try:
        with psycopg.connect(endpoint.url, user=endpoint.username, password=endpoint.password, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as error:
        if "password authentication failed" in str(error):
            raise GiveUp("PostgreSQL refused the password") from None
        raise
    return f"PostgreSQL {version[0] if version else '?'}"


def probe_clickhouse(endpoint: Endpoint) -> str:
    """/ping, then a query through clickhouse-connect."""
    _get(f"{endpoint.root_url}/ping")
    clickhouse_connect = _client("clickhouse_connect")
    client = clickhouse_connect.get_client(
        host=endpoint.host, port=endpoint.port or 8123, username=endpoint.username or "default",
        password=endpoint.password or "", connect_timeout=5,
    )
    try:
        version = client.command("SELECT version()")
    finally:
        client.close()
    return f"ClickHouse {version}"


def probe_qdrant(endpoint: Endpoint) -> str:
    """/readyz, then the collections through qdrant-client."""
    _get(f"{endpoint.root_url}/readyz")
    client = _client("qdrant_client").QdrantClient(url=endpoint.root_url, api_key=endpoint.api_key, timeout=5,
                                                   https=endpoint.root_url.startswith("https"))
    try:
        collections = client.get_collections().collections
    finally:
        client.close()
    return f"ready, {len(collections)} collections"


def probe_minio(endpoint: Endpoint) -> str:
    """/minio/health/live (liveness) and /minio/health/ready (quorum)."""
    _get(f"{endpoint.root_url}/minio/health/live")
    _get(f"{endpoint.root_url}/minio/health/ready")
    return "live and ready"


def probe_langfuse_web(endpoint: Endpoint) -> str:
    """/api/public/health (the app) and /api/public/ready (its databases)."""
    health = _get(f"{endpoint.root_url}/api/public/health").json()
    _get(f"{endpoint.root_url}/api/public/ready")
    return f"Langfuse {health.get('version', '?')} ready"


def probe_langfuse_worker(endpoint: Endpoint) -> str:
    _get(f"{endpoint.root_url}/api/health")
    return "worker healthy"


def served_models(endpoint: Endpoint) -> list[str]:
    """The model ids of an OpenAI-compatible /v1/models."""
    data = _get(f"{endpoint.openai_base_url}/models", headers=_bearer(endpoint)).json()
    return [str(item.get("id")) for item in data.get("data", [])]


def probe_llm(endpoint: Endpoint) -> str:
    """vLLM: /health, /v1/models names the configured model, /version. Another OpenAI-compatible
    engine (an endpoints file may name one): /v1/models."""
    engine = endpoint.extra.get("engine", "vllm")
    if engine == "vllm":
        _get(f"{endpoint.root_url}/health", headers=_bearer(endpoint))
    models = served_models(endpoint)
    if endpoint.model and endpoint.model not in models:
        raise GiveUp(f"the engine serves {models or 'no model'}, not the configured model {endpoint.model!r}")
    detail = f"serves {', '.join(models)}"
    if engine == "vllm":
        version = _get(f"{endpoint.root_url}/version").json().get("version", "?")
        detail += f" (vLLM {version})"
    return detail


def probe_proxy(endpoint: Endpoint) -> str:
    """The gateway's liveness, its readiness (upstreams reachable) and an authenticated /v1/models."""
    _get(f"{endpoint.root_url}/health")
    _get(f"{endpoint.root_url}/ready")
    models = served_models(endpoint)
    if not models:
        raise RuntimeError("the proxy lists no model yet")
    return f"routes {', '.join(models)}"


def ray_alive_nodes(endpoint: Endpoint) -> list[dict[str, Any]]:
    """Alive nodes from the dashboard's state API (GET /api/v0/nodes)."""
    body = _get(f"{endpoint.root_url}/api/v0/nodes", headers={"Accept": "application/json"}).json()
    result = body.get("data", {}).get("result", {})
    nodes = result.get("result", result) if isinstance(result, dict) else result
    return [node for node in nodes if node.get("state") == "ALIVE"]


def probe_ray_head(endpoint: Endpoint) -> str:
    """Dashboard /api/version and /api/gcs_healthz, then the expected number of alive nodes."""
    version = _get(f"{endpoint.root_url}/api/version").json().get("ray_version", "?")
    _get(f"{endpoint.root_url}/api/gcs_healthz")
    expected = int(endpoint.extra.get("expected_nodes", "1"))
    alive = len(ray_alive_nodes(endpoint))
    if alive < expected:
        raise RuntimeError(f"{alive} of {expected} Ray nodes alive")
    return f"Ray {version}, {alive} alive nodes"


def probe_open_webui(endpoint: Endpoint) -> str:
    _get(f"{endpoint.root_url}/health")
    return "healthy"


def probe_langflow(endpoint: Endpoint) -> str:
    """/health_check: unlike /health it reports the database, so it means the app is ready."""
    _get(f"{endpoint.root_url}/health_check")
    return "healthy"


PROBES: dict[str, Probe] = {
    "redis": probe_redis,
    "postgres": probe_postgres,
    "clickhouse": probe_clickhouse,
    "qdrant": probe_qdrant,
    "minio": probe_minio,
    "langfuse-web": probe_langfuse_web,
    "langfuse-worker": probe_langfuse_worker,
    "llm": probe_llm,
    "proxy": probe_proxy,
    "ray-head": probe_ray_head,
    "open-webui": probe_open_webui,
    "langflow": probe_langflow,
}


def default_probes() -> dict[str, Probe]:
    """A fresh copy of the built-in table, for the `swarm_probes` fixture to extend."""
    return dict(PROBES)
