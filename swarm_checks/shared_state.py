"""One stack for all pytest-xdist workers: a file lock and a JSON state file per run.

pytest-docker starts one stack per xdist worker (its issue #124). Here the first worker to need
the stack takes the lock, stands it up and writes the state (project, endpoints, readiness or
the error); the others wait on the lock and attach to what the state says. Teardown belongs to
the process that owns the run (the xdist controller, or the only process), never to a worker.

The directory is keyed by the run id that the controller hands to its workers, so concurrent
runs on one machine never share a state.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

STATE_ROOT = Path(tempfile.gettempdir()) / "swarm-checks"


@dataclass(frozen=True)
class RunContext:
    """Who this process is within the run: the run id, its state directory, and whether it is an
    xdist worker (which never tears down) or the owner (the controller or a plain process)."""

    run_id: str
    owner_pid: int
    is_worker: bool
    log_dir: Path

    @property
    def state_dir(self) -> Path:
        path = STATE_ROOT / self.run_id
        path.mkdir(parents=True, exist_ok=True)
        return path


class SharedState:
    """The run's stack state: read and written only under the lock."""

    def __init__(self, context: RunContext) -> None:
        self._dir = context.state_dir
        self._file = self._dir / "stack.json"
        self._lock = FileLock(str(self._dir / "stack.lock"))

    @contextmanager
    def locked(self) -> Iterator["SharedState"]:
        with self._lock:
            yield self

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self._file.read_text())
        except FileNotFoundError:
            return {}

    def write(self, state: dict[str, Any]) -> None:
        # The state holds the stack's credentials: readable by this user only.
        partial = self._file.with_suffix(".part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(state, indent=2, sort_keys=True))
        os.replace(partial, self._file)

    def path(self, name: str) -> Path:
        return self._dir / name
