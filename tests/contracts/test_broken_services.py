"""Every service contract check of suites/contracts, shown failing against a deliberately broken
service: Redis and PostgreSQL containers of the image set started against what the assets
promise (no password, another eviction policy, a missing database, ...), a RESP double that is
not binary-safe, the session's vLLM engine behind a wrapper, and scripted doubles of the APIs
no local image serves (Ray's Jobs API, Qdrant, ClickHouse, MinIO, Langfuse, Open WebUI, Langflow).
"""
from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Callable, Iterator

import pytest
from hypothesis import strategies as st
from starlette.requests import Request

from swarm_checks.contracts import Budget, ContractViolation, assets, datastores, run_property, services
from swarm_checks.load import server_metrics
from tests.contracts import doubles
from tests.contracts.conftest import POSTGRES_IMAGE
from tests.docker_helpers import REDIS_IMAGE, Container
from tests.live_parts import MODEL

BUDGET = Budget(examples=3, seed=20261201, shrink_requests=3)
PROMISE = assets.RedisPromise(maxmemory_policy="noeviction", appendonly="yes", version=None)


def _fails(rule: str, run: Callable[[], object]) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        run()
    assert caught.value.rule == rule, f"expected rule {rule!r}, got {caught.value}"
    return caught.value


@pytest.fixture
def containers(docker_ready: None) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def test_redis_checks_fail_against_a_misconfigured_redis(containers: list[Container]) -> None:
    """redis-server without a password, allkeys-lru, no append-only file."""
    redis = Container(REDIS_IMAGE, 6379, args=["redis-server", "--maxmemory-policy", "allkeys-lru", "--protected-mode", "no"])
    containers.append(redis)
    url = f"redis://127.0.0.1:{redis.port}/0"
    _wait(lambda: __import__("redis").Redis.from_url(url).ping())
    _fails("redis-auth", lambda: datastores.check_redis_auth(url, None))
    _fails("redis-maxmemory-policy", lambda: datastores.check_redis_config(url, None, PROMISE))
    _fails("redis-appendonly", lambda: datastores.check_redis_config(
        url, None, assets.RedisPromise("allkeys-lru", "yes", None)))
    _fails("redis-version", lambda: datastores.check_redis_config(url, None, assets.RedisPromise("allkeys-lru", "no", "6.2")))
    datastores.check_redis_config(url, None, assets.RedisPromise("allkeys-lru", "no", None))  # the control


def test_redis_roundtrip_fails_against_a_store_that_is_not_binary_safe() -> None:
    double = doubles.ScriptedRedis()
    try:
        pairs = st.tuples(st.binary(min_size=1, max_size=8), st.binary(min_size=1, max_size=8))
        _fails("redis-roundtrip", lambda: run_property("redis", pairs, datastores.redis_roundtrip(double.url, "x"), BUDGET))
    finally:
        double.shutdown()
        double.server_close()


def test_postgres_checks_fail_against_a_postgres_without_the_promise(containers: list[Container]) -> None:
    """No Langflow database; then one owned by another role; then one not in UTF8; the wrong
    major version; a server that takes any password."""
    import psycopg

    pg = Container(POSTGRES_IMAGE, 5432, env={"POSTGRES_USER": "swarm", "POSTGRES_PASSWORD": "secret",
                                             "POSTGRES_DB": "langfuse"})
    containers.append(pg)
    url = f"postgresql://127.0.0.1:{pg.port}/langfuse"
    _wait(lambda: psycopg.connect(url, user="swarm", password="secret", connect_timeout=3).close(), 120)
    promise = assets.PostgresPromise(major="17", user="swarm", databases={"langfuse": "swarm", "langflow": "swarm"})
    _fails("postgres-database", lambda: datastores.check_postgres(url, "swarm", "secret", promise))
    with psycopg.connect(url, user="swarm", password="secret", autocommit=True) as conn:
        conn.execute("CREATE ROLE someone")
        conn.execute("CREATE DATABASE langflow OWNER someone")
        conn.execute("CREATE DATABASE ascii OWNER swarm ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    _fails("postgres-owner", lambda: datastores.check_postgres(url, "swarm", "secret", promise))
    ascii_promise = assets.PostgresPromise(major="17", user="swarm", databases={"ascii": "swarm"})
    _fails("postgres-encoding", lambda: datastores.check_postgres(url, "swarm", "secret", ascii_promise))
    _fails("postgres-version", lambda: datastores.check_postgres(
        url, "swarm", "secret", assets.PostgresPromise(major="16", user="swarm", databases={})))
    datastores.check_postgres(url, "swarm", "secret", assets.PostgresPromise("17", "swarm", {"langfuse": "swarm"}))
    subprocess.run(["docker", "exec", pg.id, "sh", "-c", "sed -i '1i host all all all trust' \"$PGDATA/pg_hba.conf\""],
                   check=True, capture_output=True)
    with psycopg.connect(url, user="swarm", password="secret", autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    _fails("postgres-auth", lambda: datastores.check_postgres(url, "swarm", "secret", promise))


def test_vllm_checks_fail_against_a_broken_engine(llm: Container) -> None:
    names = {"generated": ("vllm:generation_tokens_total",), "prompt": ("vllm:prompt_tokens_total",),
             "kv-cache": tuple(n for n in server_metrics.KV_CACHE if n.startswith("vllm:"))}
    upstream = f"http://127.0.0.1:{llm.port}"
    cases: list[tuple[Any, str, Callable[[str], object]]] = [
        (doubles.wrong_version, "vllm-version", lambda url: services.check_vllm_version(url, "0.32.0")),
        (doubles.no_kv_metric, "vllm-metric", lambda url: services.check_vllm_metrics(url, MODEL, names)),
        (doubles.FrozenMetrics(), "vllm-metric-counts", lambda url: services.check_vllm_metrics(url, MODEL, names)),
        (doubles.lossy_detokenize, "tokenize-roundtrip", lambda url: run_property(
            "tokenize", st.just("Hello, world"), services.tokenize_roundtrip(url, MODEL), BUDGET)),
    ]
    for mutation, rule, check in cases:
        with doubles.serve(doubles.BrokenEngine(upstream, mutation)) as url:
            _fails(rule, lambda: check(url))
    with doubles.serve(doubles.BrokenEngine(upstream)) as url:  # the control
        services.check_vllm_version(url, "0.32.0")
        services.check_vllm_metrics(url, MODEL, names)
        services.tokenize_roundtrip(url, MODEL)("Hello, world")


class ScriptedJobs:
    """A scripted Ray Jobs API (test double): jobs succeed at once and print `result`; `stop`
    answers `stopped: false` the first time."""

    def __init__(self, result: list[dict[str, str]], status: str = "SUCCEEDED") -> None:
        self.result, self.status, self.stops = result, status, 0

    def app(self) -> Any:
        def submit(request: Request) -> tuple[int, Any]:
            return 200, {"submission_id": json.loads(request.state.body)["submission_id"]}

        def stop(request: Request) -> tuple[int, Any]:
            self.stops += 1
            if self.stops > 1:
                self.status = "STOPPED"
            return 200, {"stopped": self.stops > 1}

        logs = "SWARM_STARTED\nSWARM_RESULT " + json.dumps(self.result)
        return doubles.scripted_app({
            ("GET", "/api/version"): lambda r: (200, {"ray_version": "2.60.0"}),
            ("POST", "/api/jobs/"): submit,
            ("GET", "/api/jobs/{job}"): lambda r: (200, {"status": self.status}),
            ("GET", "/api/jobs/{job}/logs"): lambda r: (200, {"logs": logs}),
            ("POST", "/api/jobs/{job}/stop"): stop,
            ("DELETE", "/api/jobs/{job}"): lambda r: (200, True),
        })


def test_ray_checks_fail_against_a_scripted_jobs_api() -> None:
    mixed = [{"node": "a", "ray": "2.60.0", "python": "3.11.7"}, {"node": "b", "ray": "2.59.0", "python": "3.11.7"}]
    with doubles.serve(ScriptedJobs(mixed).app()) as url:
        _fails("ray-versions-equal", lambda: services.check_ray_versions(url, "2.60.0"))
        _fails("ray-version", lambda: services.check_ray_versions(url, "2.61.0"))
    with doubles.serve(ScriptedJobs(mixed[:1]).app()) as url:
        _fails("ray-nodes", lambda: services.check_ray_versions(url, "2.60.0"))
    with doubles.serve(ScriptedJobs(mixed[:1], status="RUNNING").app()) as url:
        _fails("ray-stop", lambda: services.check_ray_job_lifecycle(url))
    same = [mixed[0], {**mixed[0], "node": "b"}]
    with doubles.serve(ScriptedJobs(same).app()) as url:  # the control
        assert len(services.check_ray_versions(url, "2.60.0")) == 2


def _open(status: int = 200, payload: Any = None) -> Callable[[Request], tuple[int, Any]]:
    return lambda request: (status, {} if payload is None else payload)


def test_http_service_checks_fail_against_doubles_that_skip_auth() -> None:
    """Doubles that answer anonymous requests: each service's auth rule fails first."""
    cases: list[tuple[dict, str, Callable[[str], object]]] = [
        ({("GET", "/collections"): _open()}, "qdrant-auth", lambda url: datastores.check_qdrant(url, "k", None)),
        ({("GET", "/"): _open(200, "1")}, "clickhouse-auth",
         lambda url: datastores.check_clickhouse(url, "u", "p", "default")),
        ({("GET", "/"): _open(200, "<ListAllMyBucketsResult/>")}, "minio-auth",
         lambda url: datastores.check_minio(url, "u", "p", "langfuse")),
        ({("GET", "/health"): _open(), ("GET", "/api/v1/auths/"): _open()}, "webui-auth", services.check_open_webui),
        ({("GET", "/health"): _open(), ("GET", "/health_check"): _open(), ("GET", "/api/v1/flows/"): _open(200, [])},
         "langflow-auth", services.check_langflow),
        ({("GET", "/health"): _open(503)}, "langflow-health", services.check_langflow),
    ]
    langfuse = {("GET", "/api/public/health"): _open(200, {"status": "OK"}), ("GET", "/api/public/ready"): _open(),
                ("GET", "/api/public/projects"): _open(200, {"data": [{"id": "p"}]})}
    cases.append((langfuse, "langfuse-auth", lambda url: services.check_langfuse(url, "pk", "sk", "p")))
    refusing_batches = {**langfuse, ("GET", "/api/public/projects"): _projects_with_keys,
                        ("POST", "/api/public/ingestion"): _open(207, {"successes": [], "errors": [{"status": 500}]})}
    cases.append((refusing_batches, "langfuse-ingestion", lambda url: services.check_langfuse(url, "pk", "sk", "p")))
    for routes, rule, check in cases:
        with doubles.serve(doubles.scripted_app(routes)) as url:
            _fails(rule, lambda: check(url))


def _projects_with_keys(request: Request) -> tuple[int, Any]:
    import base64

    good = "Basic " + base64.b64encode(b"pk:sk").decode()
    return (200, {"data": [{"id": "p"}]}) if request.headers.get("authorization") == good else (401, {})


def _wait(probe: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            probe()
            return
        except Exception:  # noqa: BLE001 - any failure means "not up yet"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
