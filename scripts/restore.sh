#!/usr/bin/env bash
# Restore a directory written by scripts/backup.sh into the running Compose stack
# (make restore BACKUP_DIR=...; without one, the newest backups/*):
#   PostgreSQL  roles from globals.sql (roles that exist are kept), then each <db>.dump with
#               pg_restore --clean --if-exists into that database (created when missing)
#   Redis       the RDB is loaded by a temporary redis-server inside the Redis container, and the
#               live server replicates from it (REPLICAOF: a full sync replaces its dataset, and
#               with appendonly on it rewrites its AOF), then stops replicating. No restart, and
#               the service's own configuration (AOF, password) stays as it is.
#   ClickHouse  RESTORE DATABASE ... FROM File(...), where ClickHouse runs
#   Qdrant      each snapshot uploaded to its collection (POST .../snapshots/upload), where Qdrant runs
# Environment: as scripts/backup.sh (COMPOSE_PROJECT_NAME, SWARM_ENV_FILES, COMPOSE_FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

tool=restore
# shellcheck source=scripts/lib/stack.sh
source scripts/lib/stack.sh

dir=${1:-$(ls -1d backups/*/ 2>/dev/null | sort | tail -1)}
dir=${dir%/}
[ -n "$dir" ] && [ -f "$dir/manifest.json" ] || die "no backup to restore: give BACKUP_DIR=<a directory scripts/backup.sh wrote>"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start dockerd"
say "project $project <- $dir"
started=$(date +%s.%N)

if [ -d "$dir/postgres" ]; then
  running postgres || die "postgres is not running: start it before restoring its databases"
  t=$(date +%s.%N)
  # Roles: the stack's own user exists already (initdb made it); psql goes on past "already exists".
  dc exec -T postgres sh -c 'psql -X -q -U "$POSTGRES_USER" -d postgres' < "$dir/postgres/globals.sql" >/dev/null 2>&1 || true
  for dump in "$dir"/postgres/*.dump; do
    [ -e "$dump" ] || continue
    db=$(basename "$dump" .dump)
    dc exec -T postgres sh -c 'psql -X -U "$POSTGRES_USER" -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '"'"'$1'"'"'" | grep -q 1 \
      || createdb -U "$POSTGRES_USER" "$1"' sh "$db"
    dc exec -T postgres sh -c 'pg_restore -U "$POSTGRES_USER" --clean --if-exists --exit-on-error --dbname="$1"' sh "$db" < "$dump" \
      || die "postgres: pg_restore of $db failed"
    say "postgres: $db restored"
  done
  say "postgres: done in $(elapsed "$t") s"
fi

if [ -f "$dir/redis/dump.rdb" ]; then
  running redis || die "redis is not running: start it before restoring its data"
  t=$(date +%s.%N)
  dc exec -T redis sh -c 'rm -rf /tmp/swarm-restore && mkdir -p /tmp/swarm-restore'
  dc cp "$dir/redis/dump.rdb" redis:/tmp/swarm-restore/dump.rdb 2>/dev/null || die "redis: copying the RDB in failed"
  # shellcheck disable=SC2016
  dc exec -T redis sh -c '
    set -e
    port=6390
    redis-server --port $port --bind 127.0.0.1 --requirepass "$REDISCLI_AUTH" --dir /tmp/swarm-restore \
      --dbfilename dump.rdb --appendonly no --save "" --daemonize yes --logfile /tmp/swarm-restore/server.log \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0
    cleanup() { redis-cli -p $port SHUTDOWN NOSAVE >/dev/null 2>&1 || true; rm -rf /tmp/swarm-restore; }
    trap cleanup EXIT
    i=0; until redis-cli -p $port INFO persistence 2>/dev/null | grep -q "^loading:0"; do
      i=$((i + 1)); [ $i -lt 300 ] || { echo "the temporary server did not load the RDB"; tail -5 /tmp/swarm-restore/server.log; exit 1; }
      sleep 0.2; done
    previous=$(redis-cli CONFIG GET masterauth | sed -n 2p)
    redis-cli CONFIG SET masterauth "$REDISCLI_AUTH" >/dev/null
    redis-cli REPLICAOF 127.0.0.1 $port >/dev/null
    i=0; until redis-cli INFO replication | tr -d "\r" | grep -q "^master_link_status:up" \
             && redis-cli INFO replication | tr -d "\r" | grep -q "^master_sync_in_progress:0"; do
      i=$((i + 1)); [ $i -lt 600 ] || { redis-cli REPLICAOF NO ONE >/dev/null; echo "the full sync did not finish"; exit 1; }
      sleep 0.2; done
    redis-cli REPLICAOF NO ONE >/dev/null
    redis-cli CONFIG SET masterauth "$previous" >/dev/null
    i=0; while redis-cli INFO persistence | tr -d "\r" | grep -q "^aof_rewrite_in_progress:1"; do
      i=$((i + 1)); [ $i -lt 600 ] || break; sleep 0.2; done
    echo "keys: $(redis-cli INFO keyspace | tr -d "\r" | grep "^db" | tr "\n" " ")"
  ' | sed 's/^/restore: redis: /'
  say "redis: done in $(elapsed "$t") s"
fi

if compgen -G "$dir/clickhouse/*.zip" >/dev/null; then
  if running clickhouse; then
    for archive in "$dir"/clickhouse/*.zip; do
      name=$(basename "$archive")
      dc cp "$archive" "clickhouse:/var/lib/clickhouse/backups/$name" 2>/dev/null || die "clickhouse: copying $name in failed"
      dc exec -T clickhouse sh -c 'clickhouse-client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --query \
        "RESTORE DATABASE ${CLICKHOUSE_DB:-default} FROM File('"'"'/var/lib/clickhouse/backups/$1'"'"') SETTINGS allow_non_empty_tables = true"' \
        sh "$name" >/dev/null || die "clickhouse: RESTORE DATABASE from $name failed"
      say "clickhouse: $name restored"
    done
  else
    say "clickhouse is not running: its backup was not restored"
  fi
fi

if compgen -G "$dir/qdrant/*.snapshot" >/dev/null; then
  if running qdrant; then
    address=$(dc port qdrant 6333)
    key=$(dc exec -T qdrant sh -c 'printf %s "$QDRANT__SERVICE__API_KEY"')
    for snapshot in "$dir"/qdrant/*.snapshot; do
      collection=$(basename "$snapshot" .snapshot)
      curl -fsS -H "api-key: $key" -X POST -F "snapshot=@$snapshot" \
        "http://$address/collections/$collection/snapshots/upload?priority=snapshot&wait=true" >/dev/null \
        || die "qdrant: uploading the snapshot of $collection failed"
      say "qdrant: $collection restored"
    done
  else
    say "qdrant is not running: its snapshots were not restored"
  fi
fi

say "done in $(elapsed "$started") s"
