#!/bin/sh
# Langflow wants a database of its own beside Langfuse's: create it on the first start.
set -eu
if [ -n "${LANGFLOW_DB:-}" ]; then
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
SELECT 'CREATE DATABASE "${LANGFLOW_DB}"'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '${LANGFLOW_DB}')\gexec
SQL
fi
