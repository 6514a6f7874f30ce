"""State that must outlive its container. Flow 3: data written to Redis and PostgreSQL survives
a restart of the service. Flow 8: `make backup` / `make restore` against the run's stack,
destroying a service's data on its volume, and fingerprints that say whether two states are
identical. The checks take the exec and restart functions, so the framework's own tests run them
against containers of their own (data on tmpfs instead of a volume) and see them fail.

Destroying goes through the public surface: the volume's content is deleted from inside the
container (`Target.exec`), then the service is restarted (`Target.fault`), so it comes back on an
empty volume, as after losing the volume: PostgreSQL runs initdb again, Redis starts empty.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from integration_stack import ExecFn, postgres_ready, psql, redis_cli, redis_ready, wait_until

Inject = Callable[[str, str], None]
DB = 4  # the Redis database flow 8 seeds (1: the proxy's, 2: Ray's, 3: flow 3's)
PERSIST_DB = 3
RESTART_LIMIT = 90.0
_PG_NOISE = re.compile(r"^(--|\\restrict |\\unrestrict )")

# Every persistent key (no TTL) of every database: "db key type md5-of-value"; keys with a TTL
# (the proxy's cache and rate windows) may expire between backup and check and are left out.
_REDIS_FINGERPRINT = r'''
value=$(mktemp)
for db in $(redis-cli INFO keyspace | tr -d '\r' | sed -n 's/^db\([0-9]*\):.*/\1/p'); do
  redis-cli -n "$db" --scan | sort | while IFS= read -r key; do
    [ "$(redis-cli -n "$db" TTL "$key")" = "-1" ] || continue
    type=$(redis-cli -n "$db" TYPE "$key")
    case "$type" in
      string) redis-cli -n "$db" GET "$key" ;;
      hash) redis-cli -n "$db" HGETALL "$key" | paste - - | sort ;;
      list) redis-cli -n "$db" LRANGE "$key" 0 -1 ;;
      set) redis-cli -n "$db" SMEMBERS "$key" | sort ;;
      zset) redis-cli -n "$db" ZRANGE "$key" 0 -1 WITHSCORES ;;
      *) echo "$type" ;;
    esac > "$value"
    echo "KEY $db $key $type $(md5sum < "$value" | cut -c1-32)"
  done
done
rm -f "$value"
'''


def redis_marker(run: ExecFn, key: str, service: str = "redis") -> Callable[[], None]:
    """Write a string and a hash; return the check that reads them back (and deletes them)."""
    redis_cli(run, "SET", key, "persisted", service=service, db=PERSIST_DB)
    redis_cli(run, "HSET", key + ":h", "a", "1", "b", "2", service=service, db=PERSIST_DB)

    def verify() -> None:
        try:
            assert redis_cli(run, "GET", key, service=service, db=PERSIST_DB) == "persisted", (
                f"{service} lost a key across a restart: its data is not on a volume, or persistence (appendonly) is off")
            assert sorted(redis_cli(run, "HGETALL", key + ":h", service=service, db=PERSIST_DB).split()) == ["1", "2", "a", "b"], (
                f"{service} lost a hash across a restart")
        finally:
            redis_cli(run, "DEL", key, key + ":h", service=service, db=PERSIST_DB)

    return verify


def postgres_marker(run: ExecFn, table: str, service: str = "postgres") -> Callable[[], None]:
    """Create a table with 100 rows; return the check that reads them back (and drops it)."""
    psql(run, f"CREATE TABLE {table} (id int PRIMARY KEY, body text NOT NULL); "
              f"INSERT INTO {table} SELECT g, 'row ' || g FROM generate_series(1, 100) g", service=service)

    def verify() -> None:
        try:
            rows = _first_answer(lambda: psql(run, f"SELECT count(*), sum(id) FROM {table}", service=service))
            assert rows == "100|5050", (f"{service} lost rows across a restart ({rows!r} instead of 100|5050): its data "
                                        "directory is not on a volume")
        finally:
            try:
                psql(run, f"DROP TABLE IF EXISTS {table}", service=service)
            except RuntimeError:
                pass

    return verify


def check_redis_survives(run: ExecFn, restart: Callable[[], None], key: str, service: str = "redis") -> float:
    """Write, restart, read back; the seconds until Redis answered again."""
    verify = redis_marker(run, key, service)
    started = time.monotonic()
    restart()
    wait_until(lambda: redis_ready(run, service), RESTART_LIMIT, f"{service} to answer PING after its restart")
    seconds = time.monotonic() - started
    verify()
    return seconds


def check_postgres_survives(run: ExecFn, restart: Callable[[], None], table: str, service: str = "postgres") -> float:
    """Write, restart, read back; the seconds until PostgreSQL accepted connections again."""
    verify = postgres_marker(run, table, service)
    started = time.monotonic()
    restart()
    wait_until(lambda: postgres_ready(run, service), RESTART_LIMIT, f"{service} to accept connections after its restart")
    seconds = time.monotonic() - started
    verify()
    return seconds


def _first_answer(read: Callable[[], str], limit: float = 30.0) -> str:
    """What `read` gives once the server answers queries (one that just said ready may still be
    starting); an error about the relation itself is the answer."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return read()
        except RuntimeError as error:
            if "does not exist" in str(error) or time.monotonic() > deadline:
                return str(error)[-200:]
            time.sleep(1.0)


def seed(run: ExecFn, postgres: str, redis: str, nonce: str) -> str:
    """Data of every common shape: a table with rows and an index in each database, and a
    string, hash, list, set, sorted set and an expiring key in Redis. Returns the table name."""
    table = f"swarm_dr_{nonce}"
    for database in databases(run, postgres):
        psql(run, f"CREATE TABLE {table} (id int PRIMARY KEY, body text NOT NULL, at timestamptz DEFAULT now()); "
                  f"CREATE INDEX ON {table} (body); "
                  f"INSERT INTO {table} (id, body) SELECT g, md5(g::text) FROM generate_series(1, 500) g",
             service=postgres, database=database)
    prefix = f"swarm-dr:{nonce}"
    redis_cli(run, "SET", f"{prefix}:string", "value with spaces", service=redis, db=DB)
    redis_cli(run, "HSET", f"{prefix}:hash", "a", "1", "b", "2", service=redis, db=DB)
    redis_cli(run, "RPUSH", f"{prefix}:list", "x", "y", "z", service=redis, db=DB)
    redis_cli(run, "SADD", f"{prefix}:set", "p", "q", service=redis, db=DB)
    redis_cli(run, "ZADD", f"{prefix}:zset", "1", "one", "2", "two", service=redis, db=DB)
    redis_cli(run, "SET", f"{prefix}:expiring", "soon", "EX", "3600", service=redis, db=DB)
    return table


def databases(run: ExecFn, postgres: str) -> list[str]:
    return psql(run, "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1",
                service=postgres).split()


def postgres_fingerprint(run: ExecFn, postgres: str) -> dict[str, str]:
    """database -> sha256 of its pg_dump (schema and data), without comments and restrict keys."""
    found = {}
    for database in databases(run, postgres):
        result = run(postgres, ["sh", "-c", 'pg_dump -U "$POSTGRES_USER" --dbname="$1"', "sh", database])
        assert result.exit_code == 0, f"pg_dump of {database} failed: {result.output[-300:]}"
        kept = "\n".join(line for line in result.output.splitlines() if not _PG_NOISE.match(line))
        found[database] = hashlib.sha256(kept.encode()).hexdigest()
    return found


def redis_fingerprint(run: ExecFn, redis: str) -> dict[str, str]:
    """"db key" -> "type md5" for every persistent key."""
    result = run(redis, ["sh", "-c", _REDIS_FINGERPRINT])
    assert result.exit_code == 0, f"reading Redis failed: {result.output[-300:]}"
    found = {}
    for line in result.output.splitlines():
        if line.startswith("KEY "):
            _, db, key, kind, digest = line.split(" ", 4)
            found[f"{db} {key}"] = f"{kind} {digest}"
    return found


def differences(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    missing = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    extra = sorted(set(after) - set(before))
    return ([f"missing: {k}" for k in missing] + [f"changed: {k}" for k in changed] + [f"new: {k}" for k in extra])


# The server keeps running while its files go (its container is the only place to run `rm`), and
# a checkpoint or autovacuum can create a file in a directory `rm -rf` has just emptied, which then
# fails with "Directory not empty". Each new pass removes what appeared, for about 10 s; the last
# one reports what was left.
_EMPTY_PGDATA = """
attempt=0
while [ "$attempt" -lt 40 ]; do
  rm -rf "${PGDATA:?}"/* 2>/dev/null && exit 0
  attempt=$((attempt + 1))
  sleep 0.25
done
rm -rf "${PGDATA:?}"/*
"""


def wipe_postgres(run: ExecFn, inject: Inject, service: str, limit: float = 120.0) -> None:
    """Delete PGDATA's content under the running server, then restart it: initdb runs again."""
    result = run(service, ["sh", "-c", _EMPTY_PGDATA])
    assert result.exit_code == 0, f"could not empty PGDATA in {service}: {result.output[-200:]}"
    inject(service, "restart")
    wait_until(lambda: postgres_ready(run, service), limit, f"{service} to start on an empty data directory")


def wipe_redis(run: ExecFn, inject: Inject, service: str, limit: float = 60.0) -> None:
    """Delete /data's content (AOF and RDB), stop the server without saving, start it: empty."""
    run(service, ["sh", "-c", "rm -rf /data/* && redis-cli SHUTDOWN NOSAVE"])
    time.sleep(1.0)
    inject(service, "start")
    wait_until(lambda: redis_ready(run, service), limit, f"{service} to start on an empty volume")


def make(target: str, rootdir: Path, environment: Mapping[str, str], timeout: float = 600.0) -> tuple[float, str]:
    """Run `make <target>` at the repository root; (seconds, output). Fails with the output."""
    started = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", target], cwd=rootdir, env={**os.environ, **environment},
                            capture_output=True, text=True, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`make {target}` exited {result.returncode}:\n{output[-2500:]}"
    return time.monotonic() - started, output


def manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())
