#!/usr/bin/env bash
# Build the air-gapped image set: every image the CPU stack needs, from Debian packages and
# PyPI only, with no container registry. Writes compose/images.env, which selects these images
# through the Compose file's *_IMAGE variables:
#
#   scripts/build-image-set.sh            # build what is missing or out of date
#   pytest --env-file compose/.env --env-file compose/images.env suites/smoke
#
# Reuse: every image carries the label io.vllm-swarm.recipe, a hash of its recipe (Dockerfile,
# build context, base image); an image whose label matches is not rebuilt. The debootstrap root
# file systems are cached as tarballs in $SWARM_IMAGE_CACHE (default ~/.cache/vllm-swarm).
#
# Images: vllm-swarm/debian:{bookworm,trixie} (debootstrap minbase), vllm-swarm/python:3.11-bookworm,
# vllm-swarm/redis:7.0-bookworm, vllm-swarm/postgres:17-trixie (trixie carries PostgreSQL 17),
# vllm-swarm/ray-head and ray-worker:2.60.0, vllm-swarm/llm-cpu:0.3.36 (llama.cpp + SmolLM2-135M),
# vllm-swarm/proxy:0.2.0.
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${SWARM_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm-swarm}"
OUT_ENV="${SWARM_IMAGES_ENV:-compose/images.env}"
# pip inside the builds trusts the same certificate authorities as this host (a proxy may re-sign).
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
LABEL=io.vllm-swarm.recipe
export DOCKER_BUILDKIT=0   # the classic builder: no buildx plugin is needed

say() { printf 'image-set: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v docker >/dev/null || die "docker is not installed: apt-get install docker.io"
docker info >/dev/null 2>&1 || die "the Docker engine is not running: start dockerd (or systemctl start docker)"

recipe_hash() {  # recipe_hash BASE_ID CONTEXT DOCKERFILE: the base image, the Dockerfile and the context's files
  local base="$1" context="$2" dockerfile="$3"
  { echo "$base"; sha256sum < "$dockerfile"; (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } \
    | sha256sum | cut -c1-16
}

current_label() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }

debian_base() {  # debian_base SUITE: vllm-swarm/debian:SUITE from debootstrap, cached as a tarball
  local suite="$1" tag="vllm-swarm/debian:$1"
  local hash; hash="$(printf '%s %s %s v1' "$suite" "$MIRROR" "$(sha256sum "$HOST_CA_BUNDLE" | cut -c1-16)" | sha256sum | cut -c1-16)"
  if [ "$(current_label "$tag")" = "$hash" ]; then say "reuse $tag"; return; fi
  local tarball="$CACHE/rootfs-$suite-$hash.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
    local root; root="$(mktemp -d)"
    say "debootstrap $suite (about 30 s)"
    debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$MIRROR" >/dev/null
    cp "$HOST_CA_BUNDLE" "$root/etc/ssl/certs/build-ca-bundle.crt"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    mkdir -p "$CACHE"
    tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  say "import $tag"
  docker import \
    --change "LABEL $LABEL=$hash" \
    --change 'ENV DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/certs/build-ca-bundle.crt PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$tag" >/dev/null
}

build() {  # build TAG CONTEXT DOCKERFILE BASE_TAG
  local tag="$1" context="$2" dockerfile="$3" base="$4"
  local hash; hash="$(recipe_hash "$(image_id "$base")" "$context" "$dockerfile")"
  if [ "$(current_label "$tag")" = "$hash" ]; then say "reuse $tag"; return; fi
  say "build $tag"
  local started=$SECONDS
  docker build --quiet --force-rm --label "$LABEL=$hash" --build-arg "BASE_IMAGE=$base" \
    -f "$dockerfile" -t "$tag" "$context" >/dev/null
  say "built $tag in $((SECONDS - started)) s"
}

python_base() {  # vllm-swarm/python:3.11-bookworm: Debian's Python 3.11 with venv (Ray needs 3.11 everywhere)
  build vllm-swarm/python:3.11-bookworm compose/images/python compose/images/python/Dockerfile vllm-swarm/debian:bookworm
}

started=$SECONDS
debian_base bookworm
debian_base trixie
python_base
build vllm-swarm/redis:7.0-bookworm compose/images/redis compose/images/redis/Dockerfile vllm-swarm/debian:bookworm
build vllm-swarm/postgres:17-trixie compose/images/postgres compose/images/postgres/Dockerfile vllm-swarm/debian:trixie
build vllm-swarm/ray-head:2.60.0 compose/docker/ray compose/docker/ray/Dockerfile.head vllm-swarm/python:3.11-bookworm
build vllm-swarm/ray-worker:2.60.0 compose/docker/ray compose/docker/ray/Dockerfile.worker vllm-swarm/python:3.11-bookworm
build vllm-swarm/proxy:0.2.0 compose/docker/proxy compose/docker/proxy/Dockerfile vllm-swarm/python:3.11-bookworm
build vllm-swarm/llm-cpu:0.3.36 compose/docker/llm-cpu compose/docker/llm-cpu/Dockerfile vllm-swarm/python:3.11-bookworm

cat > "$OUT_ENV" <<ENV
# Written by scripts/build-image-set.sh: the locally built image set (no registry needed).
# Pass it after your secrets file: --env-file compose/.env --env-file $OUT_ENV
PYTHON_BASE_IMAGE=vllm-swarm/python:3.11-bookworm
REDIS_IMAGE=vllm-swarm/redis:7.0-bookworm
POSTGRES_IMAGE=vllm-swarm/postgres:17-trixie
RAY_HEAD_IMAGE=vllm-swarm/ray-head:2.60.0
RAY_WORKER_IMAGE=vllm-swarm/ray-worker:2.60.0
PROXY_IMAGE=vllm-swarm/proxy:0.2.0
LLM_CPU_IMAGE=vllm-swarm/llm-cpu:0.3.36
ENV
say "image set ready in $((SECONDS - started)) s; selected by $OUT_ENV"
