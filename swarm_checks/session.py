"""The state of one pytest run: resolved settings, who this process is, the lazily created
target, and the run's end (summary, readiness record, teardown) owned by one process.

Nothing here touches Docker, the temp directory or signal handlers until a test asks for the
stack: a run of unrelated tests in an environment where the plugin is installed leaves no trace.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Mapping

from swarm_checks import targets
from swarm_checks.catalog import Catalog
from swarm_checks.options import SwarmSettings
from swarm_checks.probes import Probe, default_probes
from swarm_checks.shared_state import RunContext
from swarm_checks.targets.base import StackSummary, Target


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class SwarmRun:
    """Created at configure time; builds the target only when something needs it."""

    def __init__(self, settings: SwarmSettings, context: RunContext) -> None:
        self.settings = settings
        self.context = context
        self._target: Target | None = None
        self._probes: Mapping[str, Probe] | None = None
        self._previous_sigterm: Any = None
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
            self._target = targets.create(self.settings, self.context, self._probes)
        return self._target

    def use(self, settings: SwarmSettings, probes: Mapping[str, Probe]) -> Target:
        """The target for what the fixtures say: a conftest that overrides `swarm_settings` or
        `swarm_probes` changes the target every later fixture and hook of the run sees."""
        current_probes = self._probes if self._probes is not None else default_probes()
        if settings != self.settings or dict(probes) != dict(current_probes):
            self.settings = settings
            self._probes = probes
            self._target = None
        return self.target()

    def catalog(self) -> Catalog:
        return self.target().catalog()

    def has_gpu(self) -> bool:
        return self.target().has_gpu()

    @property
    def owns_teardown(self) -> bool:
        """Only the run's owner (xdist controller or a plain process) tears down, and only when asked to."""
        return not (self.context.is_worker or self.settings.keep_stack or self.settings.reuse_stack)

    def guard_sigterm(self) -> None:
        """SIGTERM (CI cancelling a job) unwinds like Ctrl-C, so the stack is still torn down.
        Installed only once a stack is needed, and only over the default handler."""
        if self._previous_sigterm is None and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    def release_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def finish(self) -> StackSummary | None:
        """The owner's end of the run: tear down what the run stood up, then say what it was.
        Returns None (and does nothing) when nothing of the run touched a stack."""
        if self.context.is_worker or not (self.target_created or self.context.has_state):
            return None
        try:
            target = self.target()
            if self.owns_teardown:
                target.down()
            return target.summary()
        finally:
            self.context.remove_state()
            self.release_sigterm()
