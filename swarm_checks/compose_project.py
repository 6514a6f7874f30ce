"""One Compose project as typed objects: the adapter every `docker compose` call of a target
goes through (up, ps, logs, exec, down, and the faults the integration suite injects).

As testcontainers' `ComposeContainer` does, `ps --format json` is parsed once, here, into
`Container` values, so that the lifecycle and readiness code reason about fields, not about the
CLI's JSON (whose shape changed between Compose releases: one array, or one object per line).
"""
from __future__ import annotations

import json
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from swarm_checks import compose_cli
from swarm_checks.compose_errors import explain
from swarm_checks.errors import SwarmError
from swarm_checks.redaction import Redactor

DOWN_TIMEOUT = 180.0


@dataclass(frozen=True)
class Publisher:
    """One published port of a container: `target_port` inside, `published_port` on `host`."""

    target_port: int
    published_port: int
    host: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Publisher":
        host = str(data.get("URL") or "127.0.0.1")
        return cls(int(data.get("TargetPort") or 0), int(data.get("PublishedPort") or 0),
                   "127.0.0.1" if host in ("0.0.0.0", "::", "") else host)


@dataclass(frozen=True)
class Container:
    """A container of the project as `docker compose ps --all --format json` reports it."""

    id: str
    name: str
    service: str
    state: str  # created, running, restarting, exited, dead, paused, removing
    health: str  # "" (no healthcheck), starting, healthy, unhealthy
    exit_code: int
    publishers: tuple[Publisher, ...] = field(default=())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Container":
        return cls(id=str(data.get("ID", "")), name=str(data.get("Name", "")), service=str(data.get("Service", "")),
                   state=str(data.get("State", "")), health=str(data.get("Health", "") or ""),
                   exit_code=int(data.get("ExitCode") or 0),
                   publishers=tuple(Publisher.from_json(p) for p in (data.get("Publishers") or [])))

    @property
    def running(self) -> bool:
        """Running and not (yet) failing its healthcheck: a probe may try it."""
        return self.state == "running" and self.health != "unhealthy"

    @property
    def healthy(self) -> bool:
        """Running, and healthy where it has a healthcheck."""
        return self.state == "running" and self.health in ("", "healthy")

    def published(self, target_port: int) -> Publisher | None:
        """Where the container's `target_port` is published on the host, if it is."""
        return next((p for p in self.publishers if p.target_port == target_port and p.published_port), None)

    def describe(self) -> str:
        return f"{self.state}/{self.health or 'no healthcheck'}"


def parse_ps(text: str) -> list[Container]:
    """Both shapes Compose has printed: one JSON array, or one JSON object per line."""
    text = text.strip()
    if not text:
        return []
    items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Container.from_json(item) for item in items]


class ComposeProject:
    """`docker compose -f FILE [-f OVERRIDE] --env-file ... -p PROJECT --profile ...` and its calls.

    `overrides` are environment variables given to every call (Compose lets the shell win over
    env files): random host ports, the subnet. Errors come back as one redacted line.
    """

    def __init__(self, compose_file: Path, env_files: Sequence[Path], name: str, profiles: Sequence[str],
                 redact: Redactor) -> None:
        self.compose_file = compose_file
        self.env_files = tuple(env_files)
        self.name = name
        self.profiles = tuple(profiles)
        self.redact = redact
        self.override_file: Path | None = None
        self.overrides: dict[str, str] = {}

    def args(self, profiles: Sequence[str] | None = None) -> list[str]:
        extra = [self.override_file] if self.override_file else []
        return compose_cli.base_args(self.compose_file, self.env_files, self.name,
                                     self.profiles if profiles is None else profiles, extra)

    def run(self, *args: str, timeout: float = 120.0, profiles: Sequence[str] | None = None) -> subprocess.CompletedProcess[str]:
        return compose_cli.run([*self.args(profiles), *args], timeout=timeout, overrides=self.overrides)

    def check_engine(self) -> None:
        """One clear line when Compose or the Docker engine is missing, before anything starts."""
        result = compose_cli.run([*compose_cli.compose_command(), "ls", "--format", "json"], timeout=60)
        if result.returncode != 0:
            raise SwarmError(explain(result.stderr, self.redact))

    def containers(self) -> list[Container]:
        """Every container of the project, listed again when one vanishes mid-listing."""
        result = compose_cli.ps(self.args(), overrides=self.overrides)
        if result.returncode != 0:
            raise SwarmError(explain(result.stderr, self.redact))
        return parse_ps(result.stdout)

    def images(self) -> dict[str, str]:
        """Service -> `repository:tag (short image id)` of its containers, for the report."""
        result = self.run("images", "--format", "json", timeout=60)
        if result.returncode != 0 or not result.stdout.strip():
            return {}
        by_container = {c.name: c.service for c in self.containers()}
        found: dict[str, str] = {}
        for item in json.loads(result.stdout):
            service = by_container.get(str(item.get("ContainerName", "")))
            if service:
                image_id = str(item.get("ID", "")).removeprefix("sha256:")[:12]
                found[service] = f"{item.get('Repository', '?')}:{item.get('Tag', '?')} ({image_id})"
        return found

    def start_up(self, services: Sequence[str], pull: str, pool: ThreadPoolExecutor) -> "UpCall":
        """`up --detach --no-build` in the background: readiness is watched while it runs."""
        args = [*self.args(), "up", "--detach", "--no-build", "--pull", pull, "--remove-orphans", *services]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=compose_cli.environment(self.overrides))
        return UpCall(process, pool.submit(process.communicate))

    def logs(self, service: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color", "--timestamps", *(["--tail", str(tail)] if tail is not None else []), service]
        result = self.run(*args, timeout=60)
        return self.redact(result.stdout + result.stderr)

    def exec(self, service: str, command: Sequence[str], timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", service, *command, timeout=timeout)

    def down(self, profiles: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return self.run("down", "--volumes", "--remove-orphans", "--timeout", "10", profiles=profiles, timeout=DOWN_TIMEOUT)

    def fault(self, action: str, service: str, timeout: float = 180.0) -> None:
        """stop, start, restart or kill one service's containers (the integration suite's faults)."""
        if action not in ("stop", "start", "restart", "kill"):
            raise SwarmError(f"unknown fault {action!r}: use stop, start, restart or kill")
        extra = ["--timeout", "10"] if action in ("stop", "restart") else []
        result = self.run(action, *extra, service, timeout=timeout)
        if result.returncode != 0:
            raise SwarmError(f"`docker compose {action} {service}` failed: {explain(result.stderr, self.redact)}")


@dataclass
class UpCall:
    """A running `docker compose up`: its process and the future collecting its output."""

    process: subprocess.Popen[str]
    output: Future[tuple[str, str]]

    def failed(self) -> str | None:
        """Compose's stderr once `up` exited non-zero; None while it runs or after success."""
        if not self.output.done() or self.process.returncode == 0:
            return None
        return self.output.result()[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
