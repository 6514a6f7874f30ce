"""The data stores' own APIs, through their official clients, held to what the assets promise.

Each check raises `ContractViolation` naming its rule, so that a suite test and a framework test
against a deliberately misconfigured store (tests/contracts) fail on the same definition. Data
written by a check is uniquely named and removed, so the checks are safe on a shared stack.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable

import httpx

from swarm_checks.contracts.assets import LANGFUSE_MIN_CLICKHOUSE, PostgresPromise, RedisPromise, version_matches
from swarm_checks.contracts.openai_contract import require, violation


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def check_redis_auth(url: str, password: str | None) -> None:
    """No password and a wrong password are both refused before any command runs."""
    import redis

    for label, secret in (("no password", None), ("a wrong password", "swarm-contract-wrong-password")):
        client = redis.Redis.from_url(url, password=secret, socket_timeout=10)
        try:
            client.ping()
        except redis.AuthenticationError:
            continue
        except redis.ResponseError as error:
            if "NOAUTH" in str(error) or "WRONGPASS" in str(error):
                continue
            raise
        finally:
            client.close()
        raise violation("redis-auth", f"Redis answered PING with {label}: the stack requires a password")


def check_redis_config(url: str, password: str | None, promise: RedisPromise) -> None:
    """maxmemory-policy and append-only persistence as the command sets them; the pinned version."""
    import redis

    client = redis.Redis.from_url(url, password=password, socket_timeout=10, decode_responses=True)
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
        require(policy == promise.maxmemory_policy, "redis-maxmemory-policy",
                f"maxmemory-policy is {policy!r}, the assets set {promise.maxmemory_policy!r} (Langfuse's queues "
                "must never be evicted)")
        appendonly = client.config_get("appendonly").get("appendonly")
        require(appendonly == promise.appendonly, "redis-appendonly",
                f"appendonly is {appendonly!r}, the assets set {promise.appendonly!r}")
        persistence = client.info("persistence")
        require(bool(persistence.get("aof_enabled")) == (promise.appendonly == "yes"), "redis-persistence",
                f"INFO persistence says aof_enabled={persistence.get('aof_enabled')}, the assets set appendonly "
                f"{promise.appendonly}")
        version = str(client.info("server").get("redis_version"))
        if promise.version:
            require(version_matches(promise.version, version), "redis-version",
                    f"Redis {version}, the image pins {promise.version}")
    finally:
        client.close()


def redis_roundtrip(url: str, password: str | None) -> Callable[[tuple[bytes, bytes]], None]:
    """A check for Hypothesis: any bytes stored under any key come back unchanged (binary-safe)."""
    import redis

    prefix = unique("swarm-contract").encode()

    def check(item: tuple[bytes, bytes]) -> None:
        key, value = prefix + b":" + item[0], item[1]
        client = redis.Redis.from_url(url, password=password, socket_timeout=10)
        try:
            require(client.set(key, value, ex=300) is True, "redis-set", f"SET {key!r} did not answer OK")
            stored = client.get(key)
            require(stored == value, "redis-roundtrip", f"GET {key!r} gave {stored!r}, SET stored {value!r}")
            require(client.delete(key) == 1, "redis-delete", f"DEL {key!r} did not delete one key")
        finally:
            client.delete(key)
            client.close()
    return check


def check_postgres(url: str, user: str | None, password: str | None, promise: PostgresPromise) -> None:
    """A wrong password is refused; the major version is the pinned one; each database the assets
    create exists, is owned by the assets' user and is encoded as promised."""
    import psycopg

    try:
        psycopg.connect(url, user=user, password="swarm-contract-wrong-password", connect_timeout=10).close()
    except psycopg.OperationalError:
        pass
    else:
        raise violation("postgres-auth", "PostgreSQL accepted a wrong password")
    with psycopg.connect(url, user=user, password=password, connect_timeout=10) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])
        if promise.major:
            require(version.split(".")[0] == promise.major, "postgres-version",
                    f"PostgreSQL {version}, the image pins {promise.major}")
        rows = conn.execute("SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database")
        databases = {name: (owner, encoding) for name, owner, encoding in rows}
    for name, owner in promise.databases.items():
        require(name in databases, "postgres-database", f"database {name!r} is missing ({sorted(databases)})")
        require(databases[name][0] == owner, "postgres-owner", f"database {name!r} is owned by "
                                                               f"{databases[name][0]!r}, not {owner!r}")
        require(databases[name][1] == promise.encoding, "postgres-encoding",
                f"database {name!r} is encoded {databases[name][1]}, not {promise.encoding}")


def check_qdrant(root_url: str, api_key: str | None, version: str | None) -> None:
    """The API key is required; the pinned version; a collection is created, filled, searched
    and deleted through qdrant-client."""
    from qdrant_client import QdrantClient, models

    anonymous = httpx.get(f"{root_url}/collections", timeout=30)
    require(anonymous.status_code in (401, 403), "qdrant-auth",
            f"GET /collections without the API key answered {anonymous.status_code}")
    info = httpx.get(root_url + "/", headers={"api-key": api_key or ""}, timeout=30).json()
    if version:
        require(version_matches(version, str(info.get("version"))), "qdrant-version",
                f"Qdrant {info.get('version')}, the image pins {version}")
    client = QdrantClient(url=root_url, api_key=api_key, timeout=30, https=root_url.startswith("https"))
    collection = unique("swarm_contract")
    try:
        client.create_collection(collection, vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
        client.upsert(collection, wait=True, points=[
            models.PointStruct(id=1, vector=[1.0, 0.0, 0.0], payload={"name": "x"}),
            models.PointStruct(id=2, vector=[0.0, 1.0, 0.0], payload={"name": "y"})])
        hits = client.query_points(collection, query=[0.1, 0.9, 0.0], limit=1).points
        require(bool(hits) and hits[0].id == 2 and hits[0].payload == {"name": "y"}, "qdrant-search",
                f"the nearest point to (0.1, 0.9, 0) should be 2, got {hits}")
    finally:
        client.delete_collection(collection)
        require(not client.collection_exists(collection), "qdrant-delete", f"collection {collection} still exists")
        client.close()


def check_clickhouse(root_url: str, user: str | None, password: str | None, database: str) -> None:
    """Queries without credentials are refused; the version meets Langfuse's minimum; the
    Langfuse database exists."""
    refused = httpx.get(root_url + "/", params={"query": "SELECT 1"}, timeout=30)
    require(refused.status_code in (401, 403, 516), "clickhouse-auth",
            f"a query without credentials answered HTTP {refused.status_code}: {refused.text[:200]}")
    import clickhouse_connect

    url = httpx.URL(root_url)
    client = clickhouse_connect.get_client(host=url.host, port=url.port or 8123, username=user or "default",
                                           password=password or "")
    try:
        version = str(client.command("SELECT version()"))
        numbers = tuple(int(part) for part in version.split(".")[:2])
        require(numbers >= LANGFUSE_MIN_CLICKHOUSE, "clickhouse-version",
                f"ClickHouse {version} is older than Langfuse's minimum {'.'.join(map(str, LANGFUSE_MIN_CLICKHOUSE))}")
        databases = {row[0] for row in client.query("SHOW DATABASES").result_rows}
        require(database in databases, "clickhouse-database", f"database {database!r} is missing ({sorted(databases)})")
    finally:
        client.close()


def check_minio(root_url: str, access_key: str | None, secret_key: str | None, bucket: str) -> None:
    """Anonymous S3 calls are refused; the Langfuse bucket exists for the root user."""
    anonymous = httpx.get(root_url + "/", timeout=30)
    require(anonymous.status_code == 403, "minio-auth", f"an anonymous ListBuckets answered {anonymous.status_code}")
    from minio import Minio

    url = httpx.URL(root_url)
    client = Minio(f"{url.host}:{url.port}", access_key=access_key, secret_key=secret_key, secure=url.scheme == "https")
    require(client.bucket_exists(bucket), "minio-bucket", f"bucket {bucket!r} is missing: Langfuse cannot upload")


def require_refused(response: httpx.Response, rule: str, what: str) -> Any:
    require(response.status_code in (401, 403), rule, f"{what} without credentials answered {response.status_code}")
    return response
