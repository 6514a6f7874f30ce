"""Rules for what one rendered manifest refers to: the pods and ports a Service sends traffic to,
and the registry every image is pulled from. Each reads one `ChartRender` as a whole."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from swarm_checks.static.helm_rules import LONG_RUNNING, ChartRender, _containers, _name, _pods, _v
from swarm_checks.static.rule import Rule, Violation


def _template_labels(doc: Mapping[str, Any]) -> Mapping[str, str]:
    if doc.get("kind") == "Pod":
        return (doc.get("metadata") or {}).get("labels") or {}
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


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


RULES: tuple[Rule[ChartRender], ...] = (
    Rule("service-targets", "Services select rendered pods and target ports their containers declare", check_service_targets),
    Rule("image-registry", "every image is pulled from global.imageRegistry when it is set", check_image_registry),
)
