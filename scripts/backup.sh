#!/usr/bin/env bash
# Back up the state of a running Compose stack into one directory (make backup BACKUP_DIR=...):
#   postgres/globals.sql, postgres/<db>.dump   roles (pg_dumpall --globals-only) and every database
#                                              (pg_dump, custom format), taken inside the container
#   redis/dump.rdb                             a point-in-time RDB snapshot (redis-cli --rdb: the
#                                              replication protocol, no write to the live volume)
#   clickhouse/<name>.zip                      BACKUP DATABASE ... TO File(...), where ClickHouse runs
#                                              (its config must allow the path: backups.allowed_path)
#   qdrant/<collection>.snapshot               one snapshot per collection (POST .../snapshots), where
#                                              Qdrant runs
#   manifest.json                              what was written: sizes in bytes and seconds per part
# Services that are not running are skipped, saying so. Restore with scripts/restore.sh DIR.
#
# Environment: COMPOSE_PROJECT_NAME (default: the env files' value, else vllm-swarm), SWARM_ENV_FILES
# (space-separated; default compose/.env, else compose/.env.example), COMPOSE_FILE
# (default compose/docker-compose.yml).
set -euo pipefail
cd "$(dirname "$0")/.."

tool=backup
# shellcheck source=scripts/lib/stack.sh
source scripts/lib/stack.sh

stamp=$(date -u +%Y%m%dT%H%M%SZ)
dir=${1:-backups/$stamp}
mkdir -p "$dir"
manifest_items=()
record() {  # part name file seconds
  local bytes
  bytes=$(wc -c < "$3" | tr -d ' ')
  manifest_items+=("{\"part\": \"$1\", \"name\": \"$2\", \"file\": \"${3#"$dir"/}\", \"bytes\": $bytes, \"seconds\": $4}")
  printf 'backup: %-10s %-24s %12s bytes %7s s\n' "$1" "$2" "$bytes" "$4"
}

docker info >/dev/null 2>&1 || die "no Docker engine answers: start dockerd"
dc ps --services >/dev/null 2>&1 || die "Compose project '$project' cannot be read (COMPOSE_PROJECT_NAME, SWARM_ENV_FILES)"
[ -n "$(dc ps --status running --services 2>/dev/null)" ] || die "nothing of Compose project '$project' is running: start the stack first"
say "project $project -> $dir"
started=$(date +%s.%N)

if running postgres; then
  mkdir -p "$dir/postgres"
  t=$(date +%s.%N)
  dc exec -T postgres sh -c 'pg_dumpall -U "$POSTGRES_USER" --globals-only' > "$dir/postgres/globals.sql"
  record postgres globals "$dir/postgres/globals.sql" "$(elapsed "$t")"
  databases=$(dc exec -T postgres sh -c 'psql -X -U "$POSTGRES_USER" -d postgres -tA -c "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> '"'postgres'"' ORDER BY 1"')
  for db in $databases; do
    t=$(date +%s.%N)
    dc exec -T postgres sh -c 'pg_dump -U "$POSTGRES_USER" --format=custom --dbname="$1"' sh "$db" > "$dir/postgres/$db.dump"
    record postgres "$db" "$dir/postgres/$db.dump" "$(elapsed "$t")"
  done
else
  say "postgres is not running: skipped"
fi

if running redis; then
  mkdir -p "$dir/redis"
  t=$(date +%s.%N)
  # shellcheck disable=SC2016
  dc exec -T redis sh -c 'f=/tmp/swarm-backup-$$.rdb; redis-cli --rdb "$f" >/tmp/swarm-backup.log 2>&1 && cat "$f"
    status=$?; rm -f "$f"; [ $status = 0 ] || cat /tmp/swarm-backup.log >&2; exit $status' > "$dir/redis/dump.rdb"
  [ "$(head -c 5 "$dir/redis/dump.rdb")" = REDIS ] || die "redis: the snapshot is not an RDB file (redis-cli --rdb failed)"
  record redis dump.rdb "$dir/redis/dump.rdb" "$(elapsed "$t")"
else
  say "redis is not running: skipped"
fi

if running clickhouse; then
  mkdir -p "$dir/clickhouse"
  t=$(date +%s.%N)
  name="swarm-$stamp.zip"
  # The documented BACKUP statement; the path must lie under the server's backups.allowed_path.
  dc exec -T clickhouse sh -c 'clickhouse-client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --query \
    "BACKUP DATABASE ${CLICKHOUSE_DB:-default} TO File('"'"'/var/lib/clickhouse/backups/$1'"'"')"' sh "$name" >/dev/null \
    || die "clickhouse: BACKUP DATABASE failed (is /var/lib/clickhouse/backups/ in backups.allowed_path of its config?)"
  dc cp "clickhouse:/var/lib/clickhouse/backups/$name" "$dir/clickhouse/$name" 2>/dev/null || die "clickhouse: copying $name out failed"
  dc exec -T clickhouse rm -f "/var/lib/clickhouse/backups/$name"
  record clickhouse "$name" "$dir/clickhouse/$name" "$(elapsed "$t")"
else
  say "clickhouse is not running: skipped"
fi

if running qdrant; then
  mkdir -p "$dir/qdrant"
  address=$(dc port qdrant 6333)
  key=$(dc exec -T qdrant sh -c 'printf %s "$QDRANT__SERVICE__API_KEY"')
  qdrant() { curl -fsS -H "api-key: $key" "$@"; }
  collections=$(qdrant "http://$address/collections" | python3 -c 'import json,sys; print(" ".join(c["name"] for c in json.load(sys.stdin)["result"]["collections"]))')
  for collection in $collections; do
    t=$(date +%s.%N)
    snapshot=$(qdrant -X POST "http://$address/collections/$collection/snapshots?wait=true" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["name"])')
    qdrant -o "$dir/qdrant/$collection.snapshot" "http://$address/collections/$collection/snapshots/$snapshot"
    qdrant -X DELETE "http://$address/collections/$collection/snapshots/$snapshot?wait=true" >/dev/null
    record qdrant "$collection" "$dir/qdrant/$collection.snapshot" "$(elapsed "$t")"
  done
  [ -n "$collections" ] || say "qdrant has no collection: nothing to snapshot"
else
  say "qdrant is not running: skipped"
fi

total=$(elapsed "$started")
{
  printf '{"schema": "swarm-backup/1", "project": "%s", "created": "%s", "seconds": %s, "items": [' "$project" "$stamp" "$total"
  (IFS=,; printf '%s' "${manifest_items[*]:-}")
  printf ']}\n'
} > "$dir/manifest.json"
say "done in $total s: $dir ($(du -sh "$dir" | cut -f1))"
