"""Rules for what one rendered manifest refers to: the pods and ports a Service sends traffic to,
the registry every image is pulled from, the pods a PodDisruptionBudget protects and the pods a
ServiceMonitor scrapes through the NetworkPolicies. Each reads one `ChartRender` as a whole."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from swarm_checks.static.helm_rules import LONG_RUNNING, ChartRender, _containers, _name, _pods, _v
from swarm_checks.static.rule import Rule, Violation


def _template_labels(doc: Mapping[str, Any]) -> Mapping[str, str]:
    if doc.get("kind") == "Pod":
        return (doc.get("metadata") or {}).get("labels") or {}
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) selects these labels; an
    empty selector selects everything, as the API server reads it."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if (operator == "In" and labels.get(key) not in values) or (operator == "NotIn" and present and labels.get(key) in values) \
                or (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return True


def _declares(spec: Mapping[str, Any], target: Any) -> bool:
    """A container of the pod declares this port, by number or by name."""
    for _, container in _containers(spec):
        for port in container.get("ports") or []:
            if (isinstance(target, int) and port.get("containerPort") == target) or (isinstance(target, str) and port.get("name") == target):
                return True
    return False


def check_service_targets(render: ChartRender) -> Iterator[Violation]:
    """Every Service selects the pods of a rendered workload, and each of its ports targets a port
    those pods' containers declare (a number or a name)."""
    workloads = [(doc, spec) for doc, spec in _pods(render) if doc.get("kind") in (*LONG_RUNNING, "Pod")]
    for service in render.manifests:
        if service.get("kind") != "Service":
            continue
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            continue  # endpoints managed outside the chart
        selected = [(doc, spec) for doc, spec in workloads
                    if all(_template_labels(doc).get(k) == v for k, v in selector.items())]
        if not selected:
            yield _v(render, service, "service-targets", f"selector {dict(selector)} matches no pod template of the chart's workloads")
            continue
        for port in (service.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for doc, spec in selected:
                if not _declares(spec, target):
                    yield _v(render, service, "service-targets", f"port {port.get('name') or port.get('port')!r} targets {target!r}, which no container of {_name(doc)} declares")


def check_image_registry(render: ChartRender) -> Iterator[Violation]:
    """With global.imageRegistry set, every container image is pulled from it (the swarm.image helper)."""
    registry = str(render.get("global.imageRegistry") or "").rstrip("/")
    if not registry:
        return
    for doc, spec in _pods(render):
        for _, container in _containers(spec):
            image = str(container.get("image") or "")
            if not image.startswith(f"{registry}/"):
                yield _v(render, doc, "image-registry", f"image {image!r} does not start with global.imageRegistry {registry!r}/", container.get("name"))


def _replicas(render: ChartRender, doc: Mapping[str, Any]) -> tuple[int, int]:
    """(fewest, most) pods of a Deployment or StatefulSet: its replicas, or the range of the HPA
    that scales it."""
    name = (doc.get("metadata") or {}).get("name")
    for hpa in render.manifests:
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if hpa.get("kind") == "HorizontalPodAutoscaler" and target.get("kind") == doc.get("kind") and target.get("name") == name:
            spec = hpa.get("spec") or {}
            return int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
    replicas = int((doc.get("spec") or {}).get("replicas", 1))
    return replicas, replicas


def _blocks_eviction(budget: Mapping[str, Any], fewest: int) -> str | None:
    """Why this budget would refuse every voluntary eviction at `fewest` pods (a node drain would
    hang), or None."""
    spec = budget.get("spec") or {}
    if "maxUnavailable" in spec and str(spec["maxUnavailable"]) in ("0", "0%"):
        return f"maxUnavailable {spec['maxUnavailable']}"
    minimum = spec.get("minAvailable")
    if minimum is not None and (str(minimum) == "100%" or (isinstance(minimum, int) and minimum >= fewest)):
        return f"minAvailable {minimum} with {fewest} replica(s)"
    return None


def check_disruption_budgets(render: ChartRender) -> Iterator[Violation]:
    """Every Deployment or StatefulSet that may run more than one pod is covered by a
    PodDisruptionBudget selecting its pod template's labels (a drain would otherwise evict all its
    pods at once), and no budget selecting a workload's pods refuses every eviction."""
    budgets = [doc for doc in render.manifests if doc.get("kind") == "PodDisruptionBudget"]
    for doc in render.manifests:
        if doc.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        fewest, most = _replicas(render, doc)
        covering = [b for b in budgets if _matches((b.get("spec") or {}).get("selector"), _template_labels(doc))]
        if most > 1 and not covering:
            yield _v(render, doc, "disruption-budgets", f"up to {most} replicas and no PodDisruptionBudget selects its pods")
        for budget in covering:
            blocked = _blocks_eviction(budget, fewest)
            if blocked:
                yield _v(render, budget, "disruption-budgets", f"{blocked} refuses every eviction of {_name(doc)}'s pods: node drains would hang")


def _port_of(spec: Mapping[str, Any], target: Any) -> tuple[int | None, str | None]:
    """(number, name) of the container port a Service's targetPort names, by number or name."""
    for _, container in _containers(spec):
        for port in container.get("ports") or []:
            if port.get("containerPort") == target or (isinstance(target, str) and port.get("name") == target):
                return port.get("containerPort"), port.get("name")
    return (target, None) if isinstance(target, int) else (None, target)


def _admits_other_namespaces(rule: Mapping[str, Any], number: int | None, name: str | None) -> bool:
    """This ingress rule lets a pod of another namespace reach the port: it has no `from` (every
    source) or a namespaceSelector / ipBlock peer, and no `ports` (every port) or one naming it."""
    peers = rule.get("from")
    if peers and not any("namespaceSelector" in peer or "ipBlock" in peer for peer in peers):
        return False
    ports = rule.get("ports")
    return not ports or any(p.get("port") is None or p.get("port") in (number, name) for p in ports)


def check_monitoring_reachable(render: ChartRender) -> Iterator[Violation]:
    """Prometheus runs in its own namespace: for every ServiceMonitor endpoint, each pod its
    Services select that a NetworkPolicy isolates must admit some other namespace on the scraped
    port, or the target is down from the day monitoring is switched on."""
    services = [doc for doc in render.manifests if doc.get("kind") == "Service"]
    policies = [doc for doc in render.manifests if doc.get("kind") == "NetworkPolicy"
                and ("Ingress" in ((doc.get("spec") or {}).get("policyTypes") or ["Ingress"]))]
    workloads = [(doc, spec) for doc, spec in _pods(render) if doc.get("kind") in (*LONG_RUNNING, "Pod")]
    for monitor in render.manifests:
        if monitor.get("kind") != "ServiceMonitor":
            continue
        selector = (monitor.get("spec") or {}).get("selector")
        for service in (s for s in services if _matches(selector, (s.get("metadata") or {}).get("labels") or {})):
            pod_selector = (service.get("spec") or {}).get("selector") or {}
            pods = [(d, s) for d, s in workloads if pod_selector and all(_template_labels(d).get(k) == v for k, v in pod_selector.items())]
            for endpoint in (monitor.get("spec") or {}).get("endpoints") or []:
                port = next((p for p in (service.get("spec") or {}).get("ports") or [] if p.get("name") == endpoint.get("port")), None)
                if port is None:
                    yield _v(render, monitor, "monitoring-reachable", f"scrapes port {endpoint.get('port')!r}, which {_name(service)} does not name")
                    continue
                for doc, spec in pods:
                    number, name = _port_of(spec, port.get("targetPort", port.get("port")))
                    isolating = [p for p in policies if _matches((p.get("spec") or {}).get("podSelector"), _template_labels(doc))]
                    rules = [rule for p in isolating for rule in (p.get("spec") or {}).get("ingress") or []]
                    if isolating and not any(_admits_other_namespaces(rule, number, name) for rule in rules):
                        yield _v(render, monitor, "monitoring-reachable",
                                 f"scrapes port {endpoint.get('port')!r} of {_name(doc)}, but {', '.join(_name(p) for p in isolating)} "
                                 f"{'admits' if len(isolating) == 1 else 'admit'} no other namespace on port {name or number}")


RULES: tuple[Rule[ChartRender], ...] = (
    Rule("service-targets", "Services select rendered pods and target ports their containers declare", check_service_targets),
    Rule("image-registry", "every image is pulled from global.imageRegistry when it is set", check_image_registry),
    Rule("disruption-budgets", "workloads with more than one replica have a PodDisruptionBudget that allows evictions", check_disruption_budgets),
    Rule("monitoring-reachable", "every pod a ServiceMonitor scrapes admits another namespace on its port through the NetworkPolicies", check_monitoring_reachable),
)
