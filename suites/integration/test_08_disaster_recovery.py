"""Flow 8: disaster recovery as the seed describes it. `make backup` writes PostgreSQL (pg_dump of
every database, roles) and Redis (an RDB snapshot); their data is then destroyed on the volumes
(each service comes back empty), `make restore` brings it back, and both stores must be
identical to what they were: every database's dump, every persistent Redis key and its value.
ClickHouse (`BACKUP DATABASE`) and Qdrant (collection snapshots) are backed up and restored by
the same scripts, through their documented APIs, where they are deployed.

The scripts drive Docker Compose (`docker compose exec`), so this flow runs on the compose
target; a Kubernetes target would run the same steps through its own exec.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from swarm_checks import Endpoint, SwarmSettings, Target

from integration_state import (DB, differences, make, manifest, postgres_fingerprint, redis_fingerprint, seed, wipe_postgres,
                            wipe_redis)
from integration_stack import ExecFn, psql, redis_cli


@pytest.fixture
def make_env(swarm_target: Target, swarm_settings: SwarmSettings) -> dict[str, str]:
    """What `make backup` / `make restore` need to find this run's Compose project."""
    if swarm_target.name != "compose":
        pytest.skip(f"make backup/restore drive Docker Compose; the {swarm_target.name} target has no such path yet")
    if not (swarm_settings.rootdir / "Makefile").exists():
        pytest.skip(f"no Makefile at {swarm_settings.rootdir}: run the suite from the repository")
    summary = swarm_target.summary()
    if summary is None:
        pytest.skip("the target names no Compose project")
    return {"COMPOSE_PROJECT_NAME": summary.name, "COMPOSE_FILE": str(swarm_settings.compose_file.resolve()),
            "SWARM_ENV_FILES": " ".join(str(p.resolve()) for p in swarm_settings.compose_env_files())}


def _sizes(directory: Path) -> str:
    items = manifest(directory)["items"]
    return ", ".join(f"{i['part']}/{i['name']} {i['bytes'] / 1024:.1f} KiB in {i['seconds']} s" for i in items)


def test_postgres_and_redis_backed_up_destroyed_and_restored_identical(
        make_env: dict[str, str], swarm_settings: SwarmSettings, inject, run_in: ExecFn, deployed, nonce: str,
        tmp_path: Path, stack_healthy, record_backup) -> None:
    postgres, redis = deployed("postgres"), deployed("redis")
    table = seed(run_in, postgres, redis, nonce)
    prefix = f"swarm-dr:{nonce}"
    directory = tmp_path / "backup"
    try:
        before = postgres_fingerprint(run_in, postgres), redis_fingerprint(run_in, redis)
        backup_s, _ = make("backup", swarm_settings.rootdir, {**make_env, "BACKUP_DIR": str(directory)})
        record_backup(f"backup  {backup_s:6.1f} s  {_sizes(directory)}")

        started = time.monotonic()
        wipe_postgres(run_in, inject, postgres)
        wipe_redis(run_in, inject, redis)
        record_backup(f"destroy {time.monotonic() - started:6.1f} s  PGDATA and /data emptied, both services restarted")
        assert table not in psql(run_in, "SELECT string_agg(tablename, ' ') FROM pg_tables", service=postgres), \
            "the table survived the destruction: the test did not destroy PostgreSQL's data"
        assert redis_cli(run_in, "EXISTS", f"{prefix}:string", service=redis, db=DB) == "0", \
            "the keys survived the destruction: the test did not destroy Redis's data"

        restore_s, output = make("restore", swarm_settings.rootdir, {**make_env, "BACKUP_DIR": str(directory)})
        record_backup(f"restore {restore_s:6.1f} s  " + "; ".join(l.removeprefix("restore: ") for l in output.splitlines()
                                                                if "done in" in l))
        after = postgres_fingerprint(run_in, postgres), redis_fingerprint(run_in, redis)
        assert not differences(before[0], after[0]), f"PostgreSQL after the restore: {differences(before[0], after[0])}"
        assert not differences(before[1], after[1]), f"Redis after the restore: {differences(before[1], after[1])[:8]}"
        ttl = int(redis_cli(run_in, "TTL", f"{prefix}:expiring", service=redis, db=DB))
        assert 0 < ttl <= 3600, f"the expiring key came back with TTL {ttl}"
        assert f"{prefix}:string" in {k.split(" ", 1)[1] for k in after[1]}, "the seeded Redis keys are not in the restored data"
    finally:
        for database in _databases_quietly(run_in, postgres):
            _quietly(lambda: psql(run_in, f"DROP TABLE IF EXISTS {table}", service=postgres, database=database))
        _quietly(lambda: redis_cli(run_in, "DEL", *(f"{prefix}:{k}" for k in ("string", "hash", "list", "set", "zset", "expiring")),
                                   service=redis, db=DB))
        stack_healthy()


def test_clickhouse_backup_database_and_restore(make_env: dict[str, str], swarm_settings: SwarmSettings, swarm_target: Target,
                                                deployed, tmp_path: Path, record_backup) -> None:
    import clickhouse_connect

    endpoint: Endpoint = swarm_target.endpoint(deployed("clickhouse"))
    client = clickhouse_connect.get_client(host=endpoint.host, port=endpoint.port, username=endpoint.username,
                                           password=endpoint.password)
    database = endpoint.extra.get("database", "default")
    table = f"swarm_dr_{uuid.uuid4().hex[:10]}"
    try:
        client.command(f"CREATE TABLE {database}.{table} (id UInt32, body String) ENGINE = MergeTree ORDER BY id")
        client.command(f"INSERT INTO {database}.{table} SELECT number, toString(number) FROM numbers(1000)")
        backup_s, _ = make("backup", swarm_settings.rootdir, {**make_env, "BACKUP_DIR": str(tmp_path / "b")})
        client.command(f"DROP TABLE {database}.{table} SYNC")
        restore_s, _ = make("restore", swarm_settings.rootdir, {**make_env, "BACKUP_DIR": str(tmp_path / "b")})
        assert client.command(f"SELECT count(), sum(id) FROM {database}.{table}") == [1000, 499500]
        record_backup(f"clickhouse backup {backup_s:.1f} s, restore {restore_s:.1f} s: {_sizes(tmp_path / 'b')}")
    finally:
        client.command(f"DROP TABLE IF EXISTS {database}.{table} SYNC")


def test_qdrant_snapshot_and_restore(make_env: dict[str, str], swarm_settings: SwarmSettings, swarm_target: Target,
                                     deployed, tmp_path: Path, record_backup) -> None:
    from qdrant_client import QdrantClient, models

    endpoint: Endpoint = swarm_target.endpoint(deployed("qdrant"))
    client = QdrantClient(url=endpoint.root_url, api_key=endpoint.api_key, https=False, timeout=30)
    name = f"swarm_dr_{uuid.uuid4().hex[:10]}"
    try:
        client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
        client.upsert(name, points=[models.PointStruct(id=i, vector=[1.0, i, 0.0, 1.0], payload={"i": i}) for i in range(50)],
                      wait=True)
        backup_s, _ = make("backup", swarm_settings.rootdir, {**make_env, "BACKUP_DIR": str(tmp_path / "b")})
        client.delete_collection(name)
        restore_s, _ = make("restore", swarm_settings.rootdir, {**make_env, "BACKUP_DIR": str(tmp_path / "b")})
        assert client.count(name, exact=True).count == 50
        record_backup(f"qdrant backup {backup_s:.1f} s, restore {restore_s:.1f} s: {_sizes(tmp_path / 'b')}")
    finally:
        if client.collection_exists(name):
            client.delete_collection(name)


def _databases_quietly(run: ExecFn, postgres: str) -> list[str]:
    try:
        return psql(run, "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'",
                    service=postgres).split()
    except RuntimeError:
        return []


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except RuntimeError:
        pass
