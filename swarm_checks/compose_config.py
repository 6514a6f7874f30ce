"""The compose target's view of the assets: the Compose file rendered for the run's profiles,
the services a run deploys (--services and their dependencies), and the catalog.

Rendering goes through `docker compose config`, so interpolation, profiles and merges are
exactly what `docker compose up` will do. Kept apart from the lifecycle so that what a run
*would* deploy can be asked (collection, skip reasons, the report) without starting anything.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence
from pathlib import Path

from swarm_checks import compose_cli
from swarm_checks.catalog import ALL_PROFILES, Catalog
from swarm_checks.errors import SwarmUsageError
from swarm_checks.options import SwarmSettings


class ComposeConfig:
    """The rendered project; `overrides` gives the environment overrides in force (random ports)."""

    def __init__(self, settings: SwarmSettings, env_files: Sequence[Path], profiles: Sequence[str],
                 overrides: Callable[[], Mapping[str, str]]) -> None:
        self.settings = settings
        self.env_files = tuple(env_files)
        self.profiles = tuple(profiles)
        self._overrides = overrides
        self._catalog: Catalog | None = None
        self._config: dict[str, Any] | None = None

    def attach_project_name(self) -> str:
        """--reuse-stack attaches to the project `make compose-up` starts: the file's `name:`."""
        return str(self.render([], overrides={}).get("name") or "vllm-swarm")

    def render(self, profiles: Sequence[str], overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        return compose_cli.render_config(self.settings.compose_file, self.env_files, profiles,
                                         overrides=self._overrides() if overrides is None else overrides)

    def config(self) -> dict[str, Any]:
        """The rendered project for the chosen profiles (services, networks, volumes)."""
        if self._config is None:
            self._config = self.render(self.profiles)
        return self._config

    def deployed_services(self) -> list[str]:
        """The selected services (--services, default all of the active profiles) and their dependencies."""
        services = self.config().get("services", {})
        selection = self.settings.services or tuple(services)
        everything = self.catalog_all()
        for name in selection:
            if name in services:
                continue
            if name in everything.services:
                raise SwarmUsageError(f"--services {name}: {everything.how_to_enable(name)}")
            raise SwarmUsageError(f"--services {name}: no such service; known services: {', '.join(sorted(everything.services))}")
        deployed: set[str] = set()
        pending = list(selection)
        while pending:
            name = pending.pop()
            if name not in deployed:
                deployed.add(name)
                pending.extend(dep for dep in (services[name].get("depends_on") or {}) if dep in services)
        return sorted(deployed)

    def catalog_all(self) -> Catalog:
        """Every service of every profile, with the run's profiles marked active."""
        if self._catalog is None:
            everything = self.render([ALL_PROFILES])
            self._catalog = Catalog.from_compose_config(everything, (), self.profiles, source=str(self.settings.compose_file))
        return self._catalog

    def catalog(self) -> Catalog:
        """The catalog with this run's deployed services active."""
        everything = self.catalog_all()
        hint = None
        if self.settings.services:
            hint = f"this run deploys only --services {','.join(self.settings.services)}: add {{name}} to --services"
        return Catalog(services=everything.services, active=frozenset(self.deployed_services()), profiles=self.profiles,
                       source=everything.source, enable_hint=hint)

    def images(self) -> dict[str, str]:
        """Service -> the image its configuration names."""
        return {name: str(spec.get("image", "")) for name, spec in self.config().get("services", {}).items()}

    def replicas(self, name: str) -> int:
        spec = self.config().get("services", {}).get(name)
        return int(((spec or {}).get("deploy") or {}).get("replicas") or 1)
