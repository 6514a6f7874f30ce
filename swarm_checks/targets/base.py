"""What every target offers: the small protocol the fixtures and suites program against.

A target is how a run reaches the stack: it stands it up (or attaches), hands out endpoints,
reads logs and runs commands inside services, and tears down what it started.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence, runtime_checkable

from swarm_checks.catalog import Catalog
from swarm_checks.endpoint import Endpoint

# Lines of a service's log that go into a failed test's report (the full log goes to a file).
LOG_TAIL = 40


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run inside a service."""

    exit_code: int
    output: str


@dataclass(frozen=True)
class StackSummary:
    """What a run did with its stack, for the terminal summary, readiness.json and the report:
    target-neutral, so the plugin never reads a backend's private state."""

    target: str
    name: str  # the Compose project, the Kubernetes namespace, the endpoints file
    status: str  # ready, failed, down, attached
    what: str = "project"  # what `name` names: project, namespace, endpoints file
    readiness: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # unit -> {seconds, detail}
    error: str | None = None
    logs_at: Path | None = None  # where every service's full log was written
    notes: tuple[str, ...] = ()  # lines worth reading (how to attach to a kept stack, ...)
    images: Mapping[str, str] = field(default_factory=dict)  # unit -> image and its id
    facts: Mapping[str, str] = field(default_factory=dict)  # e.g. GPU and driver, where the target knows them


@runtime_checkable
class Target(Protocol):
    """The backend protocol: one implementation per file in this package."""

    name: str

    def up(self) -> None:
        """Stand the stack up, or attach to it, and return once every service is ready."""

    def down(self) -> None:
        """Remove what `up` created. Safe to call after a failed or partial `up`."""

    def catalog(self) -> Catalog:
        """The services of this deployment and which of them are deployed."""

    def endpoint(self, service: str) -> Endpoint:
        """The address and credentials of a deployed service."""

    def logs(self, service: str, tail: int | None = None) -> str:
        """The service's recent log lines."""

    def exec(self, service: str, command: Sequence[str]) -> ExecResult:
        """Run a command inside the service."""

    def has_gpu(self) -> bool:
        """Whether the LLM engine of this deployment runs on a GPU."""

    def fault(self, service: str, action: str) -> None:
        """Inject a fault: `stop`, `start`, `restart` or `kill` the service (TargetCapabilityError
        where the target cannot)."""

    def summary(self) -> StackSummary | None:
        """What this run did with its stack; None when nothing of this run touched one."""
