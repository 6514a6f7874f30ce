#!/bin/sh
# Starts the Ray head in the foreground so that the container lives as long as Ray does.
# Its metrics agent serves Prometheus /metrics on 8080 (Ray picks a random port without the flag,
# which nothing could scrape): the chart's ServiceMonitor and the Compose port mapping point there.
set -eu
exec ray start --head \
  --port=6379 \
  --dashboard-host=0.0.0.0 \
  --dashboard-port=8265 \
  --ray-client-server-port=10001 \
  --metrics-export-port="${RAY_METRICS_EXPORT_PORT:-8080}" \
  --num-cpus="${RAY_NUM_CPUS:-1}" \
  --disable-usage-stats \
  --block
