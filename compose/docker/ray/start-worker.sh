#!/bin/sh
# Joins the head and stays in the foreground; the dashboard agent answers health on 52365 and
# the metrics agent serves this node's Prometheus /metrics on 8080 (a fixed port a pod or
# container scrape can name, instead of Ray's random one).
set -eu
: "${RAY_HEAD_ADDRESS:?RAY_HEAD_ADDRESS must name the head, e.g. ray-head:6379}"
exec ray start \
  --address="${RAY_HEAD_ADDRESS}" \
  --num-cpus="${RAY_NUM_CPUS:-1}" \
  --metrics-export-port="${RAY_METRICS_EXPORT_PORT:-8080}" \
  --disable-usage-stats \
  --block
