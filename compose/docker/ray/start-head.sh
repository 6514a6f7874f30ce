#!/bin/sh
# Starts the Ray head in the foreground so that the container lives as long as Ray does.
set -eu
exec ray start --head \
  --port=6379 \
  --dashboard-host=0.0.0.0 \
  --dashboard-port=8265 \
  --ray-client-server-port=10001 \
  --num-cpus="${RAY_NUM_CPUS:-1}" \
  --disable-usage-stats \
  --block
