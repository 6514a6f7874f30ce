# Sourced by scripts/backup.sh and scripts/restore.sh: which Compose project they act on, and the
# helpers both use. The caller sets `tool` (its name in messages) and is in the repository root.
# Environment: COMPOSE_PROJECT_NAME (default: the env files' value, else vllm-swarm), SWARM_ENV_FILES
# (space-separated; default compose/.env, else compose/.env.example), COMPOSE_FILE
# (default compose/docker-compose.yml).
default_env() { if [ -f compose/.env ]; then echo compose/.env; else echo compose/.env.example; fi; }
env_files=${SWARM_ENV_FILES:-$(default_env)}
compose_args=(-f "${COMPOSE_FILE:-compose/docker-compose.yml}")
for file in $env_files; do compose_args+=(--env-file "$file"); done
# shellcheck disable=SC2086
project=${COMPOSE_PROJECT_NAME:-$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' $env_files /dev/null | tail -1)}
project=${project:-vllm-swarm}
dc() { docker compose "${compose_args[@]}" -p "$project" "$@"; }
running() { dc ps --status running --services 2>/dev/null | grep -qx "$1"; }
say() { printf '%s: %s\n' "$tool" "$*"; }
die() { printf '%s: %s\n' "$tool" "$*" >&2; exit 1; }
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }'; }
