"""The services of this deployment, read from the assets themselves.

A service's kind (which probe and clients apply), its main port and its model come from labels
on the Compose service (`swarm.kind`, `swarm.port`, `swarm.model`) or from annotations on the
chart's Services (`swarm.io/kind`, `swarm.io/port`, `swarm.io/model`). Nothing here lists
service names: a service added to the assets is covered without code changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from swarm_checks import compose_cli

ALL_PROFILES = "*"


@dataclass(frozen=True)
class Service:
    """One service of the stack as the assets describe it."""

    name: str
    kind: str
    port: int | None = None
    model: str | None = None
    profiles: tuple[str, ...] = ()
    image: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """Every service the assets define, and which of them the chosen profiles enable."""

    services: Mapping[str, Service]
    active: frozenset[str]
    profiles: tuple[str, ...] = ()
    source: str = ""
    # How services are added to this deployment, when it is not through Compose profiles
    # (the external target: "add it to the endpoints file ...").
    enable_hint: str | None = None
    # Whether inactive Compose profiles of a service belong in the hint (not for the external target).
    profiles_apply: bool = True

    def of_kind(self, kind: str) -> list[Service]:
        return [svc for name, svc in sorted(self.services.items()) if name in self.active and svc.kind == kind]

    def defined_of_kind(self, kind: str) -> list[Service]:
        return [svc for _, svc in sorted(self.services.items()) if svc.kind == kind]

    def primary_llm(self) -> Service | None:
        """The deployed engine of the primary LLM slot: label swarm.primary, else the only LLM."""
        llms = self.of_kind("llm")
        primary = [svc for svc in llms if svc.labels.get("swarm.primary") == "true"]
        if primary:
            return primary[0]
        return llms[0] if len(llms) == 1 else None

    def why_none_of_kind(self, kind: str) -> str:
        """Skip reason when no service of a kind is deployed: names them and how to enable each."""
        defined = self.defined_of_kind(kind)
        if not defined:
            return f"no {kind} service is defined in {self.source or 'the assets'}"
        hints = "; ".join(f"{svc.name}: {self.how_to_enable(svc.name)}" for svc in defined)
        return f"no {kind} service is deployed ({hints})"

    def how_to_enable(self, name: str) -> str:
        """A hint that says how to deploy a service that is not active."""
        service = self.services.get(name)
        if service is None:
            known = ", ".join(sorted(self.services)) or "none"
            return f"it is not defined in {self.source or 'the assets'} (known services: {known})"
        profile_note = f" (Compose profile {', '.join(service.profiles)})" if service.profiles else ""
        if self.enable_hint:
            hint = self.enable_hint.format(name=name)
            inactive = [p for p in service.profiles if p not in self.profiles] if self.profiles_apply else []
            if inactive:
                return hint + " and enable it with " + " or ".join(f"--profile {p}" for p in inactive)
            return hint + profile_note
        if service.profiles:
            flags = " or ".join(f"--profile {p}" for p in service.profiles)
            return f"enable it with {flags} (Compose profile {', '.join(service.profiles)})"
        return "it is defined but was not deployed"

    @classmethod
    def from_compose_config(cls, everything: Mapping[str, Any], active: Iterable[str], profiles: Iterable[str], source: str = "") -> "Catalog":
        """Build from `docker compose config --format json` rendered with every profile on."""
        services = {name: _service_from_compose(name, spec) for name, spec in everything.get("services", {}).items()}
        return cls(services=services, active=frozenset(active), profiles=tuple(profiles), source=source)

    @classmethod
    def from_manifests(cls, manifests: Iterable[Mapping[str, Any]], source: str = "") -> "Catalog":
        """Build from the chart's rendered manifests: every annotated Service is a service."""
        services: dict[str, Service] = {}
        for doc in manifests:
            if doc.get("kind") != "Service":
                continue
            meta = doc.get("metadata", {})
            annotations = meta.get("annotations") or {}
            kind = annotations.get("swarm.io/kind")
            if not kind:
                continue
            component = (meta.get("labels") or {}).get("app.kubernetes.io/component", meta.get("name"))
            port = annotations.get("swarm.io/port")
            services[component] = Service(
                name=component, kind=kind, port=int(port) if port else None,
                model=annotations.get("swarm.io/model"), labels=dict(annotations),
            )
        return cls(services=services, active=frozenset(services), source=source)


def _service_from_compose(name: str, spec: Mapping[str, Any]) -> Service:
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    port = labels.get("swarm.port")
    return Service(
        name=name,
        kind=labels.get("swarm.kind", name),
        port=int(port) if port and port.isdigit() else None,
        model=labels.get("swarm.model"),
        profiles=tuple(spec.get("profiles") or ()),
        image=spec.get("image"),
        labels=labels,
    )


def load_compose_catalog(compose_file: Path, env_files: Sequence[Path], profiles: Iterable[str]) -> Catalog:
    """Render the Compose file twice: with every profile (all services) and with the chosen ones."""
    chosen = tuple(profiles)
    everything = compose_cli.render_config(compose_file, env_files, [ALL_PROFILES])
    active = compose_cli.render_config(compose_file, env_files, chosen)
    return Catalog.from_compose_config(everything, active.get("services", {}).keys(), chosen, source=str(compose_file))
