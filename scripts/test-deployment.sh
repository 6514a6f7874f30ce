#!/usr/bin/env bash
# Run suites against the deployment and write an HTML report per run.
#
#   scripts/test-deployment.sh [SUITE...] [-- PYTEST ARGS...]
#   scripts/test-deployment.sh static
#   scripts/test-deployment.sh smoke health -- --target=external --endpoints endpoints.yaml
#
# The report lands in reports/<suites>.html; the exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTEST=${PYTEST:-.venv/bin/pytest}
[ -x "$PYTEST" ] || { echo "test-deployment: $PYTEST not found: run 'make setup' first" >&2; exit 2; }

suites=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do suites+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#suites[@]} -gt 0 ] || suites=(static)

paths=()
for suite in "${suites[@]}"; do
  [ -d "suites/$suite" ] || { echo "test-deployment: no suite '$suite' (have: $(ls suites | tr '\n' ' '))" >&2; exit 2; }
  paths+=("suites/$suite")
done

name=$(IFS=-; echo "${suites[*]}")
mkdir -p reports
exec "$PYTEST" "${paths[@]}" --html="reports/${name}.html" --self-contained-html "$@"
