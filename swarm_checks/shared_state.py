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
import shutil
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
        """Where the run's shared state lives; created by the first write, not by asking."""
        return STATE_ROOT / self.run_id

    @property
    def has_state(self) -> bool:
        """Whether any process of this run stood up (or tried to stand up) a stack."""
        return self.state_dir.exists()

    def remove_state(self) -> None:
        """The owner's last act: nothing of the run stays in the temp directory."""
        shutil.rmtree(self.state_dir, ignore_errors=True)


class SharedState:
    """The run's stack state: read and written only under the lock."""

    def __init__(self, context: RunContext) -> None:
        self._dir = context.state_dir
        self._file = self._dir / "stack.json"
        self._lock: FileLock | None = None

    def exists(self) -> bool:
        return self._file.exists()

    @contextmanager
    def locked(self) -> Iterator["SharedState"]:
        if self._lock is None:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = FileLock(str(self._dir / "stack.lock"))
        with self._lock:
            yield self

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self._file.read_text())
        except FileNotFoundError:
            return {}

    def write(self, state: dict[str, Any]) -> None:
        # The state holds the stack's credentials: readable by this user only.
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self._file.with_suffix(".part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(state, indent=2, sort_keys=True))
        os.replace(partial, self._file)

    def path(self, name: str) -> Path:
        """A file of the run beside the state (the Compose label override)."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self._dir / name
