#!/bin/sh
# Joins the head and stays in the foreground; the dashboard agent answers health on 52365.
set -eu
: "${RAY_HEAD_ADDRESS:?RAY_HEAD_ADDRESS must name the head, e.g. ray-head:6379}"
exec ray start \
  --address="${RAY_HEAD_ADDRESS}" \
  --num-cpus="${RAY_NUM_CPUS:-1}" \
  --disable-usage-stats \
  --block
