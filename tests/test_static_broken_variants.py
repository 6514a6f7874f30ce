"""Every static check can fail: each broken variant of the assets makes the static suite fail
with a message naming the object and the rule. The suite runs for real, in a subprocess, on a
mutated copy of compose/ and helm/."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from swarm_checks.static import compose_rules, dashboard_rules, helm_reference_rules, helm_rules, helm_upstream_rules, helm_values_rules, helm_vllm_rules
from tests.conftest import STATIC_SUITE, edit


@dataclass(frozen=True)
class Broken:
    """A way to break the assets, the tests to run, and the line the failure must contain."""

    break_assets: Callable[[Path], None]
    selection: str
    expected: str


def _compose(root: Path) -> Path:
    return root / "compose" / "docker-compose.yml"


def _values(root: Path) -> Path:
    return root / "helm" / "values.yaml"


def _env_example(root: Path) -> Path:
    return root / "compose" / ".env.example"


def _template(root: Path, name: str) -> Path:
    return root / "helm" / "templates" / name


def _dashboard(root: Path, name: str) -> Path:
    return root / "helm" / "dashboards" / name


def _open_schema_object(root: Path, *path: str) -> None:
    """Drop `additionalProperties: false` from the object of values.schema.json at this path."""
    schema_file = root / "helm" / "values.schema.json"
    schema = json.loads(schema_file.read_text())
    node = schema
    for part in path:
        node = node["properties"][part]
    assert node.pop("additionalProperties") is False, f"{'.'.join(path)} was not closed"
    schema_file.write_text(json.dumps(schema, indent=2))


COMPOSE_VARIANTS: dict[str, Broken] = {
    "service-without-healthcheck": Broken(
        lambda r: edit(_compose(r), '      test: ["CMD-SHELL", "redis-cli ping | grep -q PONG"]\n      interval: 5s\n      timeout: 3s\n      retries: 10\n      start_period: 5s\n',
                       "      disable: true\n"),
        "test_compose_rule and healthcheck", "compose service 'redis': rule 'healthcheck': no healthcheck"),
    "healthcheck-that-cannot-fail": Broken(
        lambda r: edit(_compose(r), '["CMD-SHELL", "redis-cli ping | grep -q PONG"]', '["CMD-SHELL", "true"]'),
        "test_compose_rule and healthcheck", "compose service 'redis': rule 'healthcheck': healthcheck 'true' cannot fail"),
    "port-on-all-interfaces": Broken(
        lambda r: edit(_compose(r), '"${BIND_ADDRESS:-127.0.0.1}:${REDIS_PORT-6379}:6379"', '"0.0.0.0:${REDIS_PORT-6379}:6379"'),
        "test_compose_rule and loopback", "compose service 'redis': rule 'loopback-ports': port 6379 is published on 0.0.0.0"),
    "latest-tag": Broken(
        lambda r: edit(_compose(r), "${QDRANT_IMAGE:-qdrant/qdrant:v1.13.2}", "qdrant/qdrant:latest"),
        "test_compose_rule and pinned", "compose service 'qdrant': rule 'pinned-image': image 'qdrant/qdrant:latest' is not pinned"),
    "vllm-without-gpu-reservation": Broken(
        lambda r: edit(_compose(r), "        reservations:\n          devices:\n            - driver: nvidia\n              count: ${VLLM_GPU_COUNT:-1}\n              capabilities: [gpu]\n    networks:\n      swarm:\n        ipv4_address: ${SWARM_SUBNET_PREFIX:-172.20}.0.30", "    networks:\n      swarm:\n        ipv4_address: ${SWARM_SUBNET_PREFIX:-172.20}.0.30"),
        "test_compose_rule and gpu-reservation", "compose service 'vllm-phi': rule 'gpu-reservation': no NVIDIA GPU reservation"),
    "vllm-cpu-without-shared-memory": Broken(
        lambda r: edit(_compose(r), "    shm_size: ${LLM_CPU_SHM_SIZE:-1g}\n", ""),
        "test_compose_rule and vllm-cpu", "compose service 'llm-cpu': rule 'vllm-cpu': neither ipc: host nor shm_size"),
    "vllm-cpu-short-start-period": Broken(
        lambda r: edit(_compose(r), "      # Loading the engine takes about 40 s on two idle cores, several times that on a busy machine.\n      start_period: 300s",
                       "      start_period: 30s"),
        "test_compose_rule and vllm-cpu", "compose service 'llm-cpu': rule 'vllm-cpu': healthcheck start_period 30s is too short"),
    "undocumented-variable": Broken(
        lambda r: edit(_compose(r), "      REDISCLI_AUTH:", "      CACHE_MODE: ${UNDOCUMENTED_CACHE_MODE:-lru}\n      REDISCLI_AUTH:"),
        "test_compose_rule and env-documented", "compose variable 'UNDOCUMENTED_CACHE_MODE': rule 'env-documented'"),
    "secret-literal": Broken(
        lambda r: edit(_compose(r), "      REDISCLI_AUTH: ${REDIS_PASSWORD:?set REDIS_PASSWORD in compose/.env}", "      REDISCLI_AUTH: hunter2-literal"),
        "test_compose_rule and secret", "compose service 'redis': rule 'no-secret-literal': environment REDISCLI_AUTH is a literal"),
    "missing-memory-limit": Broken(
        lambda r: edit(_compose(r), "          memory: ${POSTGRES_MEMORY:-1g}\n", ""),
        "test_compose_rule and resource", "compose service 'postgres': rule 'resource-limits': no memory limit"),
    "dependency-dropped": Broken(
        lambda r: edit(_compose(r), "    depends_on:\n      ray-head:\n        condition: service_healthy\n", ""),
        "test_compose_rule and depends", "compose service 'ray-worker': rule 'depends-on': does not wait for 'ray-head'"),
    "redis-evicts": Broken(
        lambda r: edit(_compose(r), "      - noeviction", "      - allkeys-lru"),
        "test_compose_rule and upstream", "compose service 'redis': rule 'upstream-requirements': Langfuse's queues need --maxmemory-policy noeviction"),
    "one-shot-service": Broken(
        lambda r: edit(_compose(r), "  langflow:\n    <<: [*restart, *logging]\n", '  langflow:\n    <<: [*restart, *logging]\n    restart: "no"\n'),
        "test_compose_rule and restart", "compose service 'langflow': rule 'restart-policy': no restart policy"),
    "gpu-oversubscribed": Broken(
        lambda r: edit(_env_example(r), "VLLM_PHI_GPU_MEMORY_UTILIZATION=0.45", "VLLM_PHI_GPU_MEMORY_UTILIZATION=0.9"),
        "test_compose_rule and gpu-memory", "compose services vllm-large, vllm-phi: rule 'gpu-memory-split': --gpu-memory-utilization adds up to 1.35"),
    "address-copied-from-neighbour": Broken(
        lambda r: edit(_compose(r), "        ipv4_address: ${SWARM_SUBNET_PREFIX:-172.20}.0.70", "        ipv4_address: ${SWARM_SUBNET_PREFIX:-172.20}.0.60"),
        "test_compose_rule and network", "compose service 'langflow': rule 'network-address': address 172.20.0.60 differs from the matrix's 172.20.0.70"),
    "volume-as-bind-mount": Broken(
        lambda r: edit(_compose(r), "      - qdrant-data:/qdrant/storage", "      - ./data/qdrant:/qdrant/storage"),
        "test_compose_rule and named", "compose service 'qdrant': rule 'named-volumes': named volume 'qdrant-data' is not mounted"),
    "service-dropped": Broken(
        lambda r: edit(_compose(r), "  open-webui:\n", "  open-webui-renamed:\n"),
        "matrix", "compose service 'open-webui': rule 'matrix-services'"),
    "privileged-service": Broken(
        lambda r: edit(_compose(r), "  redis:\n    <<: [*restart, *logging]\n", "  redis:\n    <<: [*restart, *logging]\n    privileged: true\n"),
        "test_compose_rule and host-access", "compose service 'redis': rule 'no-host-access': privileged: true"),
    "docker-socket-mounted": Broken(
        lambda r: edit(_compose(r), "      - ray-data:/tmp/ray\n", "      - ray-data:/tmp/ray\n      - /var/run/docker.sock:/var/run/docker.sock\n"),
        "test_compose_rule and host-access", "compose service 'ray-head': rule 'no-host-access': mounts the Docker socket /var/run/docker.sock"),
    "host-path-mounted": Broken(
        lambda r: edit(_compose(r), "      - qdrant-data:/qdrant/storage\n", "      - qdrant-data:/qdrant/storage\n      - /srv/qdrant:/qdrant/snapshots\n"),
        "test_compose_rule and host-access", "compose service 'qdrant': rule 'no-host-access': mounts host path /srv/qdrant"),
    "invalid-compose-file": Broken(
        lambda r: edit(_compose(r), "services:\n  redis:\n", "services:\n  redis:\n    image: [unclosed\n"),
        "test_compose_rule and healthcheck", "invalid Compose file"),
}

HELM_VARIANTS: dict[str, Broken] = {
    "container-running-as-root": Broken(
        lambda r: edit(_template(r, "redis.yaml"), '  securityContext:\n    {{- include "swarm.containerSecurityContext" . | nindent 4 }}',
                       '  securityContext:\n    {{- include "swarm.containerSecurityContext" . | nindent 4 }}\n    runAsUser: 0'),
        "test_chart_rule and non-root", "StatefulSet/swarm-redis container 'redis': rule 'non-root'"),
    "unlisted-writable-root": Broken(
        lambda r: edit(_template(r, "redis.yaml"), '  securityContext:\n    {{- include "swarm.containerSecurityContext" . | nindent 4 }}',
                       '  securityContext:\n    allowPrivilegeEscalation: false\n    capabilities: {drop: ["ALL"]}'),
        "test_chart_rule and read-only", "StatefulSet/swarm-redis container 'redis': rule 'read-only-root'"),
    "privilege-escalation": Broken(
        lambda r: edit(_template(r, "_helpers.tpl"), "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
        "test_chart_rule and privilege", "rule 'no-privilege-escalation': allowPrivilegeEscalation is not false"),
    "container-without-resources": Broken(
        lambda r: edit(_template(r, "qdrant.yaml"), "  resources:\n    {{- toYaml .cfg.resources | nindent 4 }}", "  resources: {}"),
        "test_chart_rule and resources", "StatefulSet/swarm-qdrant container 'qdrant': rule 'resources': no requests for cpu, memory"),
    "container-without-readiness": Broken(
        lambda r: edit(_template(r, "qdrant.yaml"), '  readinessProbe:\n    {{- include "swarm.httpProbe" (dict "path" "/readyz" "port" 6333 "period" 5) | nindent 4 }}\n', ""),
        "test_chart_rule and probes", "StatefulSet/swarm-qdrant container 'qdrant': rule 'probes': no readinessProbe"),
    "host-path-volume": Broken(
        lambda r: edit(_template(r, "qdrant.yaml"), '"- name: snapshots\\n  emptyDir: {}"', '"- name: snapshots\\n  hostPath: {path: /var/lib/qdrant}"'),
        "test_chart_rule and host", "StatefulSet/swarm-qdrant: rule 'no-host-path': volume 'snapshots' is a hostPath"),
    "plaintext-default-password": Broken(
        lambda r: edit(_values(r), '  redisPassword: ""', '  redisPassword: "changeme"'),
        "test_chart_rule and secret", "Secret/swarm-secrets: rule 'secret-defaults': key 'redis-password' holds a well-known placeholder password"),
    "ray-dashboard-open-to-all": Broken(
        lambda r: edit(_template(r, "networkpolicies.yaml"), '"ray-head" (list "ray-head" "ray-worker" "test")', '"ray-head" (list "*")'),
        "test_chart_rule and network", "Deployment/swarm-ray-head: rule 'network-policies': NetworkPolicy/swarm-ray-head admits traffic from every pod"),
    "token-automounted": Broken(
        lambda r: edit(_template(r, "_helpers.tpl"), "      automountServiceAccountToken: false", "      automountServiceAccountToken: true"),
        "test_chart_rule and service-accounts", "rule 'service-accounts': mounts a ServiceAccount token"),
    "invalid-manifest": Broken(
        lambda r: edit(_template(r, "redis.yaml"), "    - {name: redis, containerPort: 6379}", "    - {name: redis, containerPort: six-three-seven-nine}"),
        "test_chart_rule and schema", "StatefulSet/swarm-redis: rule 'schema-valid'"),
    "vllm-without-gpu": Broken(
        lambda r: edit(_values(r), "      limits: {cpu: \"8\", memory: 32Gi, nvidia.com/gpu: 1}", "      limits: {cpu: \"8\", memory: 32Gi}"),
        "test_chart_rule and schema", "rule 'renders'"),
    "latest-image-in-values": Broken(
        lambda r: edit(_values(r), "    tag: 7.4.2-alpine", "    tag: latest"),
        "test_chart_rule and schema", "rule 'renders'"),
    "untagged-init-image": Broken(
        lambda r: edit(_template(r, "minio.yaml"), '  {{- include "swarm.image" (dict "root" .root "image" .cfg.image) | nindent 2 }}\n  command: ["sh", "-c", "mkdir',
                       '  image: busybox\n  command: ["sh", "-c", "mkdir'),
        "test_chart_rule and pinned", "chart [defaults] StatefulSet/swarm-minio container 'create-bucket': rule 'pinned-images': image 'busybox' has no pinned tag"),
    "claim-ignores-storage-class": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), '  {{- include "swarm.claimSpec" (dict "root" $ "size" $cfg.persistence.size) | nindent 2 }}',
                       '  accessModes: ["ReadWriteOnce"]\n  resources:\n    requests:\n      storage: {{ $cfg.persistence.size }}'),
        "test_chart_rule and storage",
        """chart [global.storageClass="fast-ssd"] PersistentVolumeClaim/swarm-vllm-phi: rule 'storage': claim uses storageClassName None, not global.storageClass 'fast-ssd'"""),
    "hpa-max-from-replicas": Broken(
        lambda r: edit(_template(r, "ray.yaml"), "  maxReplicas: {{ .Values.ray.worker.autoscaling.maxReplicas }}", "  maxReplicas: {{ .Values.ray.worker.replicas }}"),
        "test_chart_rule and autoscaling",
        "chart [ray.worker.autoscaling.enabled=true] HorizontalPodAutoscaler/swarm-ray-worker: rule 'autoscaling': maxReplicas differs from ray.worker.autoscaling.maxReplicas"),
    # vLLM per device (vllm.phi.device): the rules of helm_vllm_rules, and the schema.
    "vllm-gpu-limit-stripped": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), "  {{- toYaml .cfg.resources | nindent 2 }}",
                       '  {{- toYaml (dict "requests" .cfg.resources.requests "limits" (omit .cfg.resources.limits "nvidia.com/gpu")) | nindent 2 }}'),
        "test_chart_rule and vllm-device", "chart [defaults] Deployment/swarm-vllm-phi container 'vllm': rule 'vllm-device': GPU mode without an nvidia.com/gpu limit"),
    "vllm-cpu-asks-for-gpu": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), 'merge (dict "runAsUser" $cfg.runAsUser)', 'merge (dict "runAsUser" $cfg.runAsUser "resources" $cfg.resources)'),
        "test_chart_rule and vllm-device", """chart [vllm.phi.device="cpu"] Deployment/swarm-vllm-phi container 'vllm': rule 'vllm-device': CPU mode asks for nvidia.com/gpu"""),
    "vllm-cpu-without-shm": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), "  volumeMounts:\n    - {name: shm, mountPath: /dev/shm}\n", "  volumeMounts:\n"),
        "test_chart_rule and vllm-shm", """chart [vllm.phi.device="cpu"] Deployment/swarm-vllm-phi container 'vllm': rule 'vllm-shm': no memory-backed emptyDir mounted at /dev/shm"""),
    "vllm-cpu-memory-below-shm-and-kv-cache": Broken(
        lambda r: edit(_values(r), '        limits: {cpu: "4", memory: 5Gi}', '        limits: {cpu: "4", memory: 2Gi}'),
        "test_chart_rule and vllm-limits", """chart [vllm.phi.device="cpu"] Deployment/swarm-vllm-phi container 'vllm': rule 'vllm-limits': memory limit 2Gi is below"""),
    "vllm-cpu-startup-too-short": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), '"delay" 20 "period" 10 "failures" 36', '"delay" 20 "period" 10 "failures" 6'),
        "test_chart_rule and vllm-startup", """chart [vllm.phi.device="cpu"] Deployment/swarm-vllm-phi container 'vllm': rule 'vllm-startup': startupProbe allows 60s"""),
    "vllm-cpu-gpu-in-values": Broken(
        lambda r: edit(_values(r), '        limits: {cpu: "4", memory: 5Gi}', '        limits: {cpu: "4", memory: 5Gi, nvidia.com/gpu: 1}'),
        "test_chart_rule and vllm-device", "at '/vllm/phi/cpu/resources/limits': 'not' failed"),
    "vllm-gpu-rolling-update": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), '"strategy" (dict "type" "Recreate") ', ""),
        "test_chart_rule and gpu-rollout",
        "chart [defaults] Deployment/swarm-vllm-phi: rule 'gpu-rollout': requests nvidia.com/gpu with strategy RollingUpdate"),
    "scheduling-value-ignored": Broken(
        lambda r: edit(_template(r, "_helpers.tpl"), "      {{- with .cfg.priorityClassName }}\n      priorityClassName: {{ . | quote }}\n      {{- end }}\n", ""),
        "test_chart_rule and vllm-scheduling",
        "chart [vllm-scheduling] Deployment/swarm-vllm-phi: rule 'vllm-scheduling': priorityClassName renders '', not vllm.phi.priorityClassName 'swarm-llm'"),
    "vllm-gpu-not-tolerated": Broken(
        lambda r: edit(_values(r), "    tolerations:\n      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n", "    tolerations: []\n"),
        "test_chart_rule and vllm-scheduling",
        "chart [defaults] Deployment/swarm-vllm-phi: rule 'vllm-scheduling': GPU mode without a toleration of the nvidia.com/gpu:NoSchedule taint"),
    "image-bypasses-registry": Broken(
        lambda r: edit(_template(r, "minio.yaml"), '  {{- include "swarm.image" (dict "root" .root "image" .cfg.image) | nindent 2 }}\n  command: ["sh", "-c", "mkdir',
                       '  image: {{ printf "%s:%s" .cfg.image.repository .cfg.image.tag | quote }}\n  command: ["sh", "-c", "mkdir'),
        "test_chart_rule and image-registry",
        """chart [global.imageRegistry="registry.example.com:5000/swarm"] StatefulSet/swarm-minio container 'create-bucket': rule 'image-registry': image 'minio/minio:RELEASE.2025-04-22T22-12-26Z' does not start with"""),
    "image-registry-with-scheme": Broken(
        lambda r: edit(_values(r), '  imageRegistry: ""', '  imageRegistry: "https://registry.example.com"'),
        "test_chart_rule and schema", "at '/global/imageRegistry'"),
    "service-targets-undeclared-port": Broken(
        lambda r: edit(_template(r, "redis.yaml"), '(list (dict "name" "redis" "port" 6379))', '(list (dict "name" "redis" "port" 6379 "targetPort" "redis-tls"))'),
        "test_chart_rule and service-targets",
        "chart [defaults] Service/swarm-redis: rule 'service-targets': port 'redis' targets 'redis-tls', which no container of StatefulSet/swarm-redis declares"),
    # Safe to run and to upgrade: disruption budgets, monitoring through the NetworkPolicies, closed values.
    "no-disruption-budget": Broken(
        lambda r: edit(_template(r, "_helpers.tpl"), '{{- include "swarm.disruptionBudget" . }}\n', ""),
        "test_chart_rule and disruption-budgets",
        "chart [defaults] Deployment/swarm-ray-worker: rule 'disruption-budgets': up to 2 replicas and no PodDisruptionBudget selects its pods"),
    "disruption-budget-blocks-drains": Broken(
        lambda r: edit(_template(r, "_helpers.tpl"), "maxUnavailable: {{ .root.Values.podDisruptionBudget.maxUnavailable }}", "maxUnavailable: 0"),
        "test_chart_rule and disruption-budgets",
        "chart [defaults] PodDisruptionBudget/swarm-ray-worker: rule 'disruption-budgets': maxUnavailable 0 refuses every eviction of Deployment/swarm-ray-worker's pods"),
    "prometheus-blocked-by-network-policies": Broken(
        lambda r: edit(_template(r, "networkpolicies.yaml"), "{{- with get $scraped $component }}", "{{- with false }}"),
        "test_chart_rule and monitoring-reachable",
        "chart [monitoring.prometheus.serviceMonitor.enabled=true] ServiceMonitor/swarm-ray-head: rule 'monitoring-reachable': scrapes port 'metrics' of Deployment/swarm-ray-head, but NetworkPolicy/swarm-ray-head admits no other namespace"),
    "values-object-open": Broken(
        lambda r: _open_schema_object(r, "proxy", "cache"),
        "test_chart_values_rule and values-closed",
        "values proxy.cache: rule 'values-closed': an unknown key 'swarmTypoKey' passes values.schema.json"),
    # What Compose guarantees, held on the chart: Redis never evicts, vLLM's context is capped, Langfuse v3 and ClickHouse get what they need.
    "chart-redis-evicts": Broken(
        lambda r: edit(_template(r, "redis.yaml"), '"--maxmemory-policy", "noeviction"', '"--maxmemory-policy", "allkeys-lru"'),
        "test_chart_rule and redis-noeviction",
        "chart [defaults] StatefulSet/swarm-redis container 'redis': rule 'redis-noeviction': runs with --maxmemory-policy allkeys-lru"),
    "vllm-context-uncapped": Broken(
        lambda r: edit(_template(r, "vllm.yaml"), "    - --max-model-len={{ .cfg.maxModelLen }}\n    - --gpu-memory-utilization", "    - --gpu-memory-utilization"),
        "test_chart_rule and vllm-context", "chart [defaults] Deployment/swarm-vllm-phi container 'vllm': rule 'vllm-context': no positive --max-model-len (None)"),
    "langfuse-clickhouse-cluster": Broken(
        lambda r: edit(_template(r, "langfuse.yaml"), '{name: CLICKHOUSE_CLUSTER_ENABLED, value: "false"}', '{name: CLICKHOUSE_CLUSTER_ENABLED, value: "true"}'),
        "test_chart_rule and langfuse-requirements",
        "chart [defaults] Deployment/swarm-langfuse-worker container 'langfuse-worker': rule 'langfuse-requirements': CLICKHOUSE_CLUSTER_ENABLED is 'true'"),
    "langfuse-without-redis": Broken(
        lambda r: edit(_template(r, "langfuse.yaml"), '- {name: REDIS_HOST, value: {{ include "swarm.redisHost" $root | quote }}}\n', ""),
        "test_chart_rule and langfuse-requirements",
        "chart [defaults] Deployment/swarm-langfuse-web container 'langfuse-web': rule 'langfuse-requirements': no REDIS_CONNECTION_STRING or REDIS_HOST"),
    "langfuse-on-a-disabled-clickhouse": Broken(
        lambda r: edit(_template(r, "_helpers.tpl"), '{{- if .Values.clickhouse.enabled }}http://', '{{- if true }}http://'),
        "test_chart_rule and langfuse-requirements",
        "chart [clickhouse.enabled=false] Deployment/swarm-langfuse-web container 'langfuse-web': rule 'langfuse-requirements': CLICKHOUSE_URL names host 'swarm-clickhouse', which no Service of the chart renders"),
    "langfuse-encryption-key-not-hex": Broken(
        lambda r: edit(_template(r, "_secrets.tpl"), "{{ randAlphaNum 64 | sha256sum }}", "{{ randAlphaNum 64 }}"),
        "test_chart_rule and langfuse-encryption-key",
        "chart [defaults] Deployment/swarm-langfuse-web container 'langfuse-web': rule 'langfuse-encryption-key': ENCRYPTION_KEY is 64 characters, not 64 hex characters"),
    "clickhouse-too-old": Broken(
        lambda r: edit(_values(r), "    tag: 24.12.3.47", "    tag: 23.8.16.16"),
        "test_chart_rule and clickhouse-version",
        "chart [defaults] StatefulSet/swarm-clickhouse container 'clickhouse': rule 'clickhouse-version': image 'clickhouse/clickhouse-server:23.8.16.16' is older than ClickHouse 24.3"),
    "value-ignored-by-templates": Broken(
        lambda r: edit(_template(r, "proxy.yaml"), "{{ .cfg.defaultTpm | int64 | quote }}", '"200000"'),
        "test_chart_values_rule and values-read", "values proxy.defaultTpm: rule 'values-read': no template reads it"),
}

# The dashboards the chart ships (helm/dashboards) and their ConfigMaps.
DASHBOARD_VARIANTS: dict[str, Broken] = {
    "dashboard-not-json": Broken(
        lambda r: _dashboard(r, "broken.json").write_text('{"panels": ['),
        "test_dashboard_rule and dashboard-files", "dashboard broken.json: rule 'dashboard-files': dashboard "),
    "dashboard-uid-copied": Broken(
        lambda r: edit(_dashboard(r, "ray-cluster.json"), '"uid": "vllm-swarm-ray"', '"uid": "vllm-swarm-vllm"'),
        "test_dashboard_rule and dashboard-identity",
        "dashboard vllm-performance.json: rule 'dashboard-identity': uid 'vllm-swarm-vllm' is also the uid of ray-cluster.json"),
    "dashboard-datasource-hard-coded": Broken(
        lambda r: edit(_dashboard(r, "ray-cluster.json"), '"uid": "${datasource}"', '"uid": "P1809F7CD0C75ACF3"'),
        "test_dashboard_rule and dashboard-datasource",
        "dashboard ray-cluster.json panel 'Alive nodes': rule 'dashboard-datasource': panel uses data source 'P1809F7CD0C75ACF3', not ${datasource}"),
    "dashboard-query-unparseable": Broken(
        lambda r: edit(_dashboard(r, "ray-cluster.json"), '"expr": "sum(ray_cluster_active_nodes)"', '"expr": "sum(ray_cluster_active_nodes"'),
        "test_dashboard_rule and dashboard-promql",
        "dashboard ray-cluster.json panel 'Alive nodes': rule 'dashboard-promql': does not parse as PromQL: "),
    "dashboard-configmap-label-ignored": Broken(
        lambda r: edit(_template(r, "dashboards.yaml"), "{{ $cfg.label }}: {{ $cfg.labelValue | quote }}", 'grafana_dashboard: "0"'),
        "test_dashboard_rule and dashboard-configmaps",
        "chart [everything-on] ConfigMap/swarm-dashboard-errors-latency: rule 'dashboard-configmaps': label grafana_dashboard='0', "
        "the sidecar looks for grafana_dashboard='1'"),
}


def _run_static(pytester: pytest.Pytester, root: Path, selection: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        str(STATIC_SUITE), "-p", "no:cacheprovider", "-q", "-k", selection,
        f"--compose-file={root / 'compose' / 'docker-compose.yml'}", f"--chart={root / 'helm'}",
        f"--rootdir={root}",
    )


@pytest.mark.parametrize("variant", COMPOSE_VARIANTS, ids=list(COMPOSE_VARIANTS))
def test_compose_variant_fails_static_suite(variant: str, asset_copy: Path, pytester: pytest.Pytester) -> None:
    broken = COMPOSE_VARIANTS[variant]
    broken.break_assets(asset_copy)
    result = _run_static(pytester, asset_copy, broken.selection)
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert broken.expected in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("variant", HELM_VARIANTS, ids=list(HELM_VARIANTS))
def test_helm_variant_fails_static_suite(variant: str, asset_copy: Path, pytester: pytest.Pytester) -> None:
    broken = HELM_VARIANTS[variant]
    broken.break_assets(asset_copy)
    result = _run_static(pytester, asset_copy, broken.selection)
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert broken.expected in output, output


@pytest.mark.parametrize("variant", DASHBOARD_VARIANTS, ids=list(DASHBOARD_VARIANTS))
def test_dashboard_variant_fails_static_suite(variant: str, asset_copy: Path, pytester: pytest.Pytester) -> None:
    broken = DASHBOARD_VARIANTS[variant]
    broken.break_assets(asset_copy)
    result = _run_static(pytester, asset_copy, broken.selection)
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert broken.expected in output, output
    assert "Traceback" not in output


def test_unbroken_copy_passes(asset_copy: Path, pytester: pytest.Pytester) -> None:
    """The control: the same run on an untouched copy passes, so the failures above are the breaks'."""
    result = _run_static(pytester, asset_copy, "test_compose_rule or test_chart_rule or test_chart_values_rule or test_dashboard_rule")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


def test_every_rule_has_a_broken_variant() -> None:
    """Each rule of the static suite is proven able to fail: some variant expects its failure line,
    so a rule added without a broken variant fails here."""
    expected = [broken.expected for broken in (*COMPOSE_VARIANTS.values(), *HELM_VARIANTS.values(), *DASHBOARD_VARIANTS.values())]
    rules = [rule.name for rule in (*compose_rules.RULES, *helm_rules.RULES, *helm_vllm_rules.RULES, *helm_reference_rules.RULES,
                                    *helm_upstream_rules.RULES, *helm_values_rules.RULES, *dashboard_rules.RULES)]
    missing = [name for name in rules if not any(f"rule '{name}'" in line for line in expected)]
    assert not missing, f"rules without a broken variant: {', '.join(missing)}"
