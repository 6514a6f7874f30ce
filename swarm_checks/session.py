"""The state of one pytest run: resolved settings and the lazily created target."""
from __future__ import annotations

from swarm_checks import targets
from swarm_checks.catalog import Catalog
from swarm_checks.options import SwarmSettings
from swarm_checks.targets.base import Target


class SwarmRun:
    """Created at configure time; builds the target only when something needs it."""

    def __init__(self, settings: SwarmSettings) -> None:
        self.settings = settings
        self._target: Target | None = None

    @property
    def target_name(self) -> str:
        return self.settings.target

    def target(self) -> Target:
        if self._target is None:
            self._target = targets.create(self.settings)
        return self._target

    def catalog(self) -> Catalog:
        return self.target().catalog()

    def has_gpu(self) -> bool:
        return self.target().has_gpu()
