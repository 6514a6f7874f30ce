"""Redis, PostgreSQL, Qdrant, ClickHouse and MinIO through their official clients, held to what
the assets promise (the rendered Compose file: flags, environment, pinned image)."""
from __future__ import annotations

from typing import Callable

from hypothesis import strategies as st

from swarm_checks import Endpoint
from swarm_checks.contracts import Budget, assets, datastores, run_property

EndpointOfKind = Callable[[str], Endpoint]
ServiceAssets = Callable[[str], assets.ServiceAssets]


def test_redis_requires_its_password(endpoint_of_kind: EndpointOfKind) -> None:
    redis = endpoint_of_kind("redis")
    datastores.check_redis_auth(redis.url, redis.password)


def test_redis_runs_as_configured(endpoint_of_kind: EndpointOfKind, service_assets: ServiceAssets) -> None:
    """noeviction (Langfuse's queues), append-only persistence, the pinned version."""
    redis = endpoint_of_kind("redis")
    datastores.check_redis_config(redis.url, redis.password, assets.redis_promise(service_assets(redis.service)))


def test_redis_is_binary_safe(endpoint_of_kind: EndpointOfKind, contract_budget: Budget) -> None:
    redis = endpoint_of_kind("redis")
    pairs = st.tuples(st.binary(min_size=1, max_size=64), st.binary(max_size=2048))
    run_property("redis_roundtrip", pairs, datastores.redis_roundtrip(redis.url, redis.password), contract_budget,
                 explicit=[(b"\x00key with spaces\n", b"\x00\xff" * 10), ("ключ".encode(), b"")])


def test_postgres_serves_the_promised_databases(endpoint_of_kind: EndpointOfKind,
                                                service_assets: ServiceAssets) -> None:
    """Version 17 (the pinned image), the Langfuse and Langflow databases with their owner and
    encoding, a wrong password refused."""
    postgres = endpoint_of_kind("postgres")
    datastores.check_postgres(postgres.url, postgres.username, postgres.password,
                              assets.postgres_promise(service_assets(postgres.service)))


def test_qdrant_requires_its_key_and_serves_collections(endpoint_of_kind: EndpointOfKind,
                                                        service_assets: ServiceAssets) -> None:
    qdrant = endpoint_of_kind("qdrant")
    datastores.check_qdrant(qdrant.root_url, qdrant.api_key, service_assets(qdrant.service).version)


def test_clickhouse_requires_auth_and_has_the_langfuse_database(endpoint_of_kind: EndpointOfKind) -> None:
    clickhouse = endpoint_of_kind("clickhouse")
    datastores.check_clickhouse(clickhouse.root_url, clickhouse.username, clickhouse.password,
                                clickhouse.extra.get("database", "default"))


def test_minio_requires_auth_and_has_the_langfuse_bucket(endpoint_of_kind: EndpointOfKind) -> None:
    minio = endpoint_of_kind("minio")
    datastores.check_minio(minio.root_url, minio.username, minio.password, minio.extra.get("bucket") or "langfuse")
