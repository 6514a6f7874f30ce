"""The state of one pytest run: resolved settings, who this process is, the lazily created target."""
from __future__ import annotations

from swarm_checks import targets
from swarm_checks.catalog import Catalog
from swarm_checks.options import SwarmSettings
from swarm_checks.shared_state import RunContext
from swarm_checks.targets.base import Target


class SwarmRun:
    """Created at configure time; builds the target only when something needs it."""

    def __init__(self, settings: SwarmSettings, context: RunContext) -> None:
        self.settings = settings
        self.context = context
        self._target: Target | None = None
        # Logs of services concerned by a failed stack setup, attached to the first report only.
        self.setup_logs_reported = False
        self.setup_error: Exception | None = None

    @property
    def target_name(self) -> str:
        return self.settings.target

    @property
    def target_created(self) -> bool:
        return self._target is not None

    def target(self) -> Target:
        if self._target is None:
            self._target = targets.create(self.settings, self.context)
        return self._target

    def catalog(self) -> Catalog:
        return self.target().catalog()

    def has_gpu(self) -> bool:
        return self.target().has_gpu()

    @property
    def owns_teardown(self) -> bool:
        """Only the run's owner (xdist controller or a plain process) tears down, and only when asked to."""
        return not (self.context.is_worker or self.settings.keep_stack or self.settings.reuse_stack)
