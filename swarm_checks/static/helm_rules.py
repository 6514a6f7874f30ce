"""Rules for the Helm chart on its rendered manifests: the security checklist (vLLM's own: helm_vllm_rules).

Each rule receives one `ChartRender` (the manifests of one set of values) and yields violations
naming the variant, the object and the rule.
"""
from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from swarm_checks import helm_render
from swarm_checks.datafiles import CRD_SCHEMAS
from swarm_checks.errors import SwarmError
from swarm_checks.static.rule import Rule, Violation, is_pinned

KUBERNETES_VERSION = "1.30.0"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")
COMPONENT = "app.kubernetes.io/component"
WEAK_SECRETS = {"", "password", "changeme", "change-me", "admin", "minioadmin", "postgres", "secret", "redis", "clickhouse", "langfuse"}

# Each flag the chart has, flipped from its default in its own render; extra values make the
# flipped render valid (an external host for a store that is switched off).
FLAGS: dict[str, dict[str, Any]] = {
    "networkPolicy.enabled": {},
    "ingress.enabled": {},
    "monitoring.prometheus.serviceMonitor.enabled": {},
    "monitoring.grafana.dashboards.enabled": {},
    "vllm.phi.enabled": {},
    "vllm.large.enabled": {},
    "ray.worker.autoscaling.enabled": {},
    "langfuse.enabled": {},
    "clickhouse.enabled": {"clickhouse": {"external": {"url": "https://ch.managed.example:8443", "migrationUrl": "clickhouse://ch.managed.example:9440"}}},
    "qdrant.enabled": {},
    "redis.enabled": {"redis": {"external": {"host": "redis.managed.example"}}},
    "postgresql.enabled": {"postgresql": {"external": {"host": "pg.managed.example"}}},
    "minio.enabled": {"minio": {"external": {"endpoint": "https://s3.managed.example"}}},
    "proxy.enabled": {},
    "global.storageClass": {},
}
# Settings with more than two values: each value other than the default, in its own render.
CHOICES: dict[str, tuple[Any, ...]] = {
    "vllm.phi.device": ("gpu", "cpu"),
    "global.imageRegistry": ("", "registry.example.com:5000/swarm"),
}
# Renders that set several values at once: every scheduling value of the vLLM pods (GPU slots, then
# the primary slot on CPUs), so that a template ignoring one is caught (helm_vllm_rules).
_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "swarm.io/pool", "operator": "In", "values": ["llm"]}]}]}}}
_SCHEDULING = {"nodeSelector": {"kubernetes.io/os": "linux"}, "affinity": _AFFINITY, "priorityClassName": "swarm-llm",
               "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                               {"key": "swarm.io/dedicated", "operator": "Equal", "value": "llm", "effect": "NoExecute"}]}
SCENARIOS: dict[str, dict[str, Any]] = {
    "vllm-scheduling": {"vllm": {"phi": {**_SCHEDULING, "runtimeClassName": "nvidia", "gpuMemoryUtilization": 0.45},
                                 "large": {**_SCHEDULING, "runtimeClassName": "nvidia", "enabled": True, "gpuMemoryUtilization": 0.45}}},
    "vllm-scheduling-cpu": {"vllm": {"phi": {"device": "cpu", "cpu": {**_SCHEDULING, "tolerations": _SCHEDULING["tolerations"][1:],
                                                                      "runtimeClassName": "runc"}}}},
    # Langfuse scaled out: its web and worker Deployments need PodDisruptionBudgets too.
    "langfuse-scaled": {"langfuse": {"web": {"replicas": 2}, "worker": {"replicas": 3}}},
    "existing-secret": {"existingSecret": "swarm-managed"},  # secrets managed elsewhere: renders offline as it is
}
OFFLINE_SECRETS = {"secrets": {"generate": "offline"}}  # offline renders generate only if asked (_secrets.tpl)


@dataclass(frozen=True)
class ChartRender:
    """The manifests of one variant of values."""

    variant: str
    values: Mapping[str, Any]  # the chart's defaults merged with the variant's overrides
    defaults: Mapping[str, Any]
    manifests: tuple[Mapping[str, Any], ...]

    def exceptions(self, setting: str) -> Mapping[str, str]:
        return (self.values.get("securityExceptions") or {}).get(setting) or {}

    def get(self, dotted: str) -> Any:
        return _get(self.values, dotted)


def _get(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = (node or {}).get(part) if isinstance(node, Mapping) else None
    return node


def _set(values: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def variants(defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Overrides per variant: the defaults, each flag flipped alone, each other choice alone, the scenarios, everything on."""
    result: dict[str, dict[str, Any]] = {"defaults": {}}
    everything: dict[str, Any] = {}
    for flag, extra in FLAGS.items():
        current = _get(defaults, flag)
        flipped: Any = ("fast-ssd" if not current else "") if flag == "global.storageClass" else not current
        overrides: dict[str, Any] = {}
        _set(overrides, flag, flipped)
        _merge(overrides, extra)
        result[f"{flag}={json.dumps(flipped)}"] = overrides
        if flag not in ("vllm.phi.enabled", "global.storageClass") and not (flag.split(".")[0] in ("redis", "postgresql", "minio")):
            _set(everything, flag, True)
    for setting, choices in CHOICES.items():
        for choice in choices:
            if choice != _get(defaults, setting):
                overrides = {}
                _set(overrides, setting, choice)
                result[f"{setting}={json.dumps(choice)}"] = overrides
    for name, overrides in SCENARIOS.items():
        result[name] = copy.deepcopy(overrides)
    _merge(everything, {"vllm": {"phi": {"gpuMemoryUtilization": 0.45}, "large": {"gpuMemoryUtilization": 0.45}}})
    result["everything-on"] = everything
    return {name: overrides if "existingSecret" in overrides else _merge(overrides, OFFLINE_SECRETS) for name, overrides in result.items()}


def render_variant(chart: Path, variant: str, overrides: Mapping[str, Any]) -> ChartRender:
    defaults = helm_render.default_values(chart)
    merged = _merge(copy.deepcopy(defaults), overrides)
    manifests = helm_render.render(chart, overrides)
    return ChartRender(variant=variant, values=merged, defaults=defaults, manifests=tuple(manifests))


def _name(doc: Mapping[str, Any]) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def _pod_spec(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.get("spec") or {}
    if kind == "CronJob":
        return (((doc.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    if kind in WORKLOAD_KINDS:
        return ((doc.get("spec") or {}).get("template") or {}).get("spec")
    return None


def _component(doc: Mapping[str, Any]) -> str:
    return ((doc.get("metadata") or {}).get("labels") or {}).get(COMPONENT, "")


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            yield key, container


def _pods(render: ChartRender) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for doc in render.manifests:
        spec = _pod_spec(doc)
        if spec is not None:
            yield doc, spec


def _v(render: ChartRender, doc: Mapping[str, Any], rule: str, detail: str, container: str | None = None) -> Violation:
    where = f" container '{container}'" if container else ""
    return Violation(f"chart [{render.variant}] {_name(doc)}{where}", rule, detail)


def check_schema(render: ChartRender) -> Iterator[Violation]:
    import jsonschema

    try:
        import kubernetes_validate
    except ImportError:
        raise SwarmError("kubernetes-validate is not installed: `pip install 'swarm-checks[k8s]'`") from None

    for doc in render.manifests:
        api_group = str(doc.get("apiVersion", "")).split("/")[0]
        crd_schema = CRD_SCHEMAS / f"{str(doc.get('kind')).lower()}.json"
        if "." in api_group and not api_group.endswith("k8s.io") and crd_schema.exists():
            try:
                jsonschema.validate(doc, json.loads(crd_schema.read_text()))
            except jsonschema.ValidationError as error:
                yield _v(render, doc, "schema-valid", f"{error.message} (CRD schema {crd_schema.name})")
            continue
        try:
            kubernetes_validate.validate(dict(doc), KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            yield _v(render, doc, "schema-valid", f"{error.message} at {path or 'top level'} (Kubernetes {KUBERNETES_VERSION})")
        except kubernetes_validate.SchemaNotFoundError:
            yield _v(render, doc, "schema-valid", f"no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {KUBERNETES_VERSION}")


def check_non_root(render: ChartRender) -> Iterator[Violation]:
    allowed = render.exceptions("runAsNonRoot")
    for doc, spec in _pods(render):
        if _component(doc) in allowed:
            continue
        pod_level = (spec.get("securityContext") or {}).get("runAsNonRoot")
        pod_user = (spec.get("securityContext") or {}).get("runAsUser")
        for _, container in _containers(spec):
            context = container.get("securityContext") or {}
            non_root = context.get("runAsNonRoot", pod_level)
            user = context.get("runAsUser", pod_user)
            if non_root is not True or user == 0:
                yield _v(render, doc, "non-root", "runs as root: set runAsNonRoot: true (or list an exception with its reason)", container.get("name"))


def check_privilege(render: ChartRender) -> Iterator[Violation]:
    for doc, spec in _pods(render):
        for _, container in _containers(spec):
            context = container.get("securityContext") or {}
            if context.get("allowPrivilegeEscalation") is not False:
                yield _v(render, doc, "no-privilege-escalation", "allowPrivilegeEscalation is not false", container.get("name"))
            if context.get("privileged"):
                yield _v(render, doc, "no-privilege-escalation", "privileged container", container.get("name"))
            if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
                yield _v(render, doc, "no-privilege-escalation", "capabilities do not drop ALL", container.get("name"))


def check_read_only_root(render: ChartRender) -> Iterator[Violation]:
    allowed = render.exceptions("readOnlyRootFilesystem")
    for doc, spec in _pods(render):
        component = _component(doc)
        for _, container in _containers(spec):
            read_only = (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is True
            if not read_only and not str(allowed.get(component, "")).strip():
                yield _v(render, doc, "read-only-root", "readOnlyRootFilesystem is not true and no exception with a reason is listed in values.securityExceptions", container.get("name"))


def check_resources(render: ChartRender) -> Iterator[Violation]:
    for doc, spec in _pods(render):
        for _, container in _containers(spec):
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                missing = [key for key in ("cpu", "memory") if not (resources.get(section) or {}).get(key)]
                if missing:
                    yield _v(render, doc, "resources", f"no {section} for {', '.join(missing)}", container.get("name"))


def check_probes(render: ChartRender) -> Iterator[Violation]:
    for doc, spec in _pods(render):
        if doc.get("kind") not in LONG_RUNNING:
            continue
        for container in spec.get("containers") or []:
            for probe in ("livenessProbe", "readinessProbe"):
                if not container.get(probe):
                    yield _v(render, doc, "probes", f"no {probe}", container.get("name"))


def check_host_access(render: ChartRender) -> Iterator[Violation]:
    for doc, spec in _pods(render):
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                yield _v(render, doc, "no-host-path", f"volume {volume.get('name')!r} is a hostPath")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                yield _v(render, doc, "no-host-path", f"{flag} is on")


def _selects(policy: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = (policy.get("spec") or {}).get("podSelector") or {}
    match = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items()) and not selector.get("matchExpressions")


def check_network_policies(render: ChartRender) -> Iterator[Violation]:
    if not render.get("networkPolicy.enabled"):
        return
    policies = [doc for doc in render.manifests if doc.get("kind") == "NetworkPolicy"]
    for doc, spec in _pods(render):
        if doc.get("kind") not in LONG_RUNNING:
            continue
        labels = ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        covering = [p for p in policies if _selects(p, labels)]
        if not covering:
            yield _v(render, doc, "network-policies", "no NetworkPolicy selects its pods")
            continue
        if _component(doc) in ("ray-head", "ray-worker", "redis", "postgresql", "clickhouse", "minio", "qdrant"):
            for policy in covering:
                for rule in (policy.get("spec") or {}).get("ingress") or []:
                    if not rule.get("from"):
                        yield _v(render, doc, "network-policies", f"{_name(policy)} admits traffic from every pod; allow only the components that use it")


def _decoded_secrets(doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in (doc.get("data") or {}).items():
        try:
            yield key, base64.b64decode(str(value)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    for key, value in (doc.get("stringData") or {}).items():
        yield key, str(value)


def _default_strings(node: Any) -> set[str]:
    if isinstance(node, Mapping):
        return set().union(*(_default_strings(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_default_strings(v) for v in node)) if node else set()
    return {str(node)} if isinstance(node, str) and node else set()


def check_secret_defaults(render: ChartRender) -> Iterator[Violation]:
    shipped = _default_strings(render.defaults.get("secrets") or {})
    for doc in render.manifests:
        if doc.get("kind") != "Secret":
            continue
        for key, value in _decoded_secrets(doc):
            if value.lower() in WEAK_SECRETS or "not-for-production" in value or "example" in value.lower():
                yield _v(render, doc, "secret-defaults", f"key {key!r} holds a well-known placeholder password")
            elif value in shipped:
                yield _v(render, doc, "secret-defaults", f"key {key!r} holds a plaintext default from values.yaml")


def check_service_accounts(render: ChartRender) -> Iterator[Violation]:
    accounts = {(doc.get("metadata") or {}).get("name"): doc for doc in render.manifests if doc.get("kind") == "ServiceAccount"}
    for doc, spec in _pods(render):
        name = spec.get("serviceAccountName")
        if doc.get("kind") in LONG_RUNNING:
            if not name or name == "default":
                yield _v(render, doc, "service-accounts", "uses the default ServiceAccount: give each component its own")
            elif name not in accounts:
                yield _v(render, doc, "service-accounts", f"ServiceAccount {name!r} is not rendered by the chart")
        account = accounts.get(name) or {}
        if spec.get("automountServiceAccountToken", account.get("automountServiceAccountToken")) is not False:
            yield _v(render, doc, "service-accounts", "mounts a ServiceAccount token it does not need (automountServiceAccountToken: false)")


def check_pinned_images(render: ChartRender) -> Iterator[Violation]:
    for doc, spec in _pods(render):
        for _, container in _containers(spec):
            image = str(container.get("image") or "")
            if not is_pinned(image):
                yield _v(render, doc, "pinned-images", f"image {image!r} has no pinned tag", container.get("name"))


def _claims(render: ChartRender) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for doc in render.manifests:
        if doc.get("kind") == "PersistentVolumeClaim":
            yield doc, doc.get("spec") or {}
        for template in (doc.get("spec") or {}).get("volumeClaimTemplates") or [] if doc.get("kind") == "StatefulSet" else []:
            yield doc, template.get("spec") or {}


def check_storage(render: ChartRender) -> Iterator[Violation]:
    wanted = render.get("global.storageClass") or None
    for doc, claim in _claims(render):
        if claim.get("storageClassName") != wanted:
            yield _v(render, doc, "storage", f"claim uses storageClassName {claim.get('storageClassName')!r}, not global.storageClass {wanted!r}")
    for doc in render.manifests:
        if doc.get("kind") == "StatefulSet" and not (doc.get("spec") or {}).get("volumeClaimTemplates"):
            yield _v(render, doc, "storage", "StatefulSet without volumeClaimTemplates: its state would not persist")


def check_autoscaling(render: ChartRender) -> Iterator[Violation]:
    hpas = [doc for doc in render.manifests if doc.get("kind") == "HorizontalPodAutoscaler"]
    workers = [doc for doc in render.manifests if doc.get("kind") == "Deployment" and _component(doc) == "ray-worker"]
    if render.get("ray.worker.autoscaling.enabled"):
        if not hpas:
            yield Violation(f"chart [{render.variant}]", "autoscaling", "ray.worker.autoscaling.enabled renders no HorizontalPodAutoscaler")
        for hpa in hpas:
            if (hpa.get("spec") or {}).get("maxReplicas") != render.get("ray.worker.autoscaling.maxReplicas"):
                yield _v(render, hpa, "autoscaling", "maxReplicas differs from ray.worker.autoscaling.maxReplicas")
        for worker in workers:
            if "replicas" in (worker.get("spec") or {}):
                yield _v(render, worker, "autoscaling", "sets replicas while an HPA owns the count")
    else:
        if hpas:
            yield Violation(f"chart [{render.variant}]", "autoscaling", "an HPA is rendered while autoscaling is off")
        for worker in workers:
            if (worker.get("spec") or {}).get("replicas") != render.get("ray.worker.replicas"):
                yield _v(render, worker, "autoscaling", "replicas differ from ray.worker.replicas")


RULES: tuple[Rule[ChartRender], ...] = (
    Rule("schema-valid", f"every manifest validates against Kubernetes {KUBERNETES_VERSION}", check_schema),
    Rule("non-root", "containers run as non-root", check_non_root),
    Rule("no-privilege-escalation", "no privilege escalation, all capabilities dropped", check_privilege),
    Rule("read-only-root", "read-only root filesystem or a listed exception", check_read_only_root),
    Rule("resources", "requests and limits on every container", check_resources),
    Rule("probes", "liveness and readiness everywhere", check_probes),
    Rule("no-host-path", "no hostPath, host network, PID or IPC", check_host_access),
    Rule("network-policies", "NetworkPolicies cover every component when enabled", check_network_policies),
    Rule("secret-defaults", "no plaintext default password in Secrets", check_secret_defaults),
    Rule("service-accounts", "a ServiceAccount per component, no token automount", check_service_accounts),
    Rule("pinned-images", "pinned image tags", check_pinned_images),
    Rule("storage", "claims honour global.storageClass", check_storage),
    Rule("autoscaling", "ray worker HPA follows its values", check_autoscaling),
)
