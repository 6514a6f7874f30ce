"""Health: the data stores keep what they are given. Each check writes, reads back and deletes
its own uniquely named data through the official client, so it is safe on a shared stack."""
from __future__ import annotations

import uuid
from typing import Callable

import httpx
import pytest

from swarm_checks import Endpoint

EndpointOfKind = Callable[[str], Endpoint]


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def test_redis_writes_reads_and_deletes(endpoint_of_kind: EndpointOfKind) -> None:
    import redis

    endpoint = endpoint_of_kind("redis")
    client = redis.Redis.from_url(endpoint.url, password=endpoint.password, socket_timeout=10, decode_responses=True)
    key = _name("swarm-check")
    try:
        assert client.set(key, "value", ex=300)
        assert client.get(key) == "value"
        assert client.delete(key) == 1
        assert client.get(key) is None
        # Langfuse's queues need every key kept: the stack configures noeviction.
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        client.delete(key)
        client.close()


def test_redis_refuses_a_client_without_the_password(endpoint_of_kind: EndpointOfKind) -> None:
    import redis

    endpoint = endpoint_of_kind("redis")
    client = redis.Redis.from_url(endpoint.url, socket_timeout=10)
    with pytest.raises(redis.AuthenticationError):
        client.ping()
    client.close()


def test_postgres_writes_reads_and_deletes(endpoint_of_kind: EndpointOfKind) -> None:
    import psycopg

    endpoint = endpoint_of_kind("postgres")
    table = _name("swarm_check")
    with psycopg.connect(endpoint.url, user=endpoint.username, password=endpoint.password, connect_timeout=10,
                         autocommit=True) as conn:
        try:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, body text NOT NULL)")
            conn.execute(f"INSERT INTO {table} VALUES (1, %s)", ("value",))
            assert conn.execute(f"SELECT body FROM {table} WHERE id = 1").fetchone() == ("value",)
            conn.execute(f"DELETE FROM {table} WHERE id = 1")
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_postgres_has_the_langflow_database(endpoint_of_kind: EndpointOfKind) -> None:
    import psycopg

    endpoint = endpoint_of_kind("postgres")
    wanted = endpoint.extra.get("langflow_db")
    if not wanted:
        pytest.skip("LANGFLOW_DB is empty: the stack creates no Langflow database")
    with psycopg.connect(endpoint.url, user=endpoint.username, password=endpoint.password, connect_timeout=10) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert wanted in names, f"database {wanted!r} missing: the init script did not run ({sorted(names)})"


def test_clickhouse_answers_a_query(endpoint_of_kind: EndpointOfKind) -> None:
    import clickhouse_connect

    endpoint = endpoint_of_kind("clickhouse")
    client = clickhouse_connect.get_client(host=endpoint.host, port=endpoint.port or 8123,
                                           username=endpoint.username or "default", password=endpoint.password or "")
    try:
        assert client.command("SELECT 40 + 2") == 42
        databases = {row[0] for row in client.query("SHOW DATABASES").result_rows}
        assert endpoint.extra.get("database", "default") in databases
    finally:
        client.close()


def test_qdrant_creates_upserts_searches_and_deletes(endpoint_of_kind: EndpointOfKind) -> None:
    from qdrant_client import QdrantClient, models

    endpoint = endpoint_of_kind("qdrant")
    client = QdrantClient(url=endpoint.root_url, api_key=endpoint.api_key, timeout=30,
                          https=endpoint.url.startswith("https"))
    collection = _name("swarm_check")
    try:
        client.create_collection(collection, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        client.upsert(collection, points=[
            models.PointStruct(id=1, vector=[1.0, 0.0, 0.0, 0.0], payload={"name": "x"}),
            models.PointStruct(id=2, vector=[0.0, 1.0, 0.0, 0.0], payload={"name": "y"}),
        ], wait=True)
        hits = client.query_points(collection, query=[0.9, 0.1, 0.0, 0.0], limit=1).points
        assert hits and hits[0].id == 1 and hits[0].payload == {"name": "x"}
    finally:
        client.delete_collection(collection)
        assert not client.collection_exists(collection)
        client.close()


def test_minio_has_the_langfuse_bucket(endpoint_of_kind: EndpointOfKind) -> None:
    from minio import Minio

    endpoint = endpoint_of_kind("minio")
    bucket = endpoint.extra.get("bucket") or "langfuse"
    client = Minio(f"{endpoint.host}:{endpoint.port}", access_key=endpoint.username, secret_key=endpoint.password,
                   secure=False)
    assert client.bucket_exists(bucket), f"bucket {bucket!r} is missing: Langfuse cannot upload events"


def test_langfuse_is_ready_and_accepts_the_init_keys(endpoint_of_kind: EndpointOfKind) -> None:
    endpoint = endpoint_of_kind("langfuse-web")
    base = endpoint.root_url
    assert httpx.get(f"{base}/api/public/ready", timeout=10).status_code == 200
    response = httpx.get(f"{base}/api/public/projects", auth=(endpoint.username or "", endpoint.api_key or ""), timeout=10)
    assert response.status_code == 200, f"the headless-init keys were refused: HTTP {response.status_code}"
    projects = [project["id"] for project in response.json().get("data", [])]
    if endpoint.extra.get("project_id"):
        assert endpoint.extra["project_id"] in projects
    refused = httpx.get(f"{base}/api/public/projects", auth=("pk-lf-wrong", "sk-lf-wrong"), timeout=10)
    assert refused.status_code == 401
