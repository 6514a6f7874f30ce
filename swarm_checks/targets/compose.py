"""The compose target: stand the stack up with Docker Compose v2, wait until every service is
ready, hand out endpoints from the published ports, read logs, tear everything down.

We drive the official `docker compose` CLI directly rather than testcontainers' DockerCompose
(which wraps the same CLI): we need a project name per run, env overrides (random host ports,
a free subnet), an override file that labels every resource with the run id, `up --no-build`
(with --pull missing or never) so a missing image is one clear error, and `ps --format json` to fail fast
on a container that exits or turns unhealthy. testcontainers' fixed-interval waits on container
ports would give none of that.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from swarm_checks import compose_cli, orphans
from swarm_checks.compose_endpoints import build_endpoint, endpoint_from_json, endpoint_to_json
from swarm_checks.compose_errors import culprits, explain
from swarm_checks.catalog import ALL_PROFILES, Catalog
from swarm_checks.errors import SwarmError, SwarmUsageError
from swarm_checks.options import SwarmSettings
from swarm_checks.probes import PROBES
from swarm_checks.redaction import Redactor
from swarm_checks.shared_state import RunContext, SharedState
from swarm_checks.endpoint import Endpoint
from swarm_checks.targets.base import LOG_TAIL, ExecResult
from swarm_checks.waiting import Backoff, GiveUp, WaitTimeout, describe, wait_until

ENGINE_PROFILES = ("gpu", "cpu")
PORT_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*_PORT)[-:]")
DOWN_TIMEOUT = 180.0


class StackError(SwarmError):
    """The stack did not come up; `services` names those concerned (their logs go in the report)."""

    def __init__(self, message: str, services: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.services = tuple(services)
        self.logs: dict[str, str] = {}


def detect_gpu() -> bool:
    """An NVIDIA GPU is visible on this host (nvidia-smi lists one)."""
    if shutil.which("nvidia-smi") is None:
        return False
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False, timeout=30)
    return result.returncode == 0 and "GPU" in result.stdout


def effective_profiles(settings: SwarmSettings) -> tuple[str, ...]:
    """The chosen profiles, plus the engine profile (gpu with a GPU, cpu without) when none is."""
    profiles = tuple(settings.profiles)
    if not set(profiles) & set(ENGINE_PROFILES):
        profiles += ("gpu" if detect_gpu() else "cpu",)
    return profiles


class ComposeTarget:
    """One Compose project per run, shared by every xdist worker of the run."""

    name = "compose"

    def __init__(self, settings: SwarmSettings, context: RunContext) -> None:
        self.settings = settings
        self.context = context
        self.state = SharedState(context)
        self.env_files = settings.compose_env_files()
        self.profiles = effective_profiles(settings)
        self.redact = Redactor.from_env_files(self.env_files)
        self.project = self._attach_project_name() if settings.reuse_stack else f"swarm-{context.run_id}"
        self.overrides: dict[str, str] = {}
        self.readiness: dict[str, dict[str, Any]] = {}
        self._override_file: Path | None = None
        self._catalog: Catalog | None = None
        self._config: dict[str, Any] | None = None
        self._endpoints: dict[str, Endpoint] = {}

    # -- configuration ---------------------------------------------------------------------

    def _attach_project_name(self) -> str:
        """--reuse-stack attaches to the project `make compose-up` starts: the file's `name:`."""
        return str(self._render([], overrides={}).get("name") or "vllm-swarm")

    def _render(self, profiles: Sequence[str], overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        return compose_cli.render_config(
            self.settings.compose_file, self.env_files, profiles,
            overrides=self.overrides if overrides is None else overrides,
        )

    def config(self) -> dict[str, Any]:
        """The rendered project for the chosen profiles (services, networks, volumes)."""
        if self._config is None:
            self._config = self._render(self.profiles)
        return self._config

    def deployed_services(self) -> list[str]:
        """The selected services (--services, default all of the active profiles) and their dependencies."""
        services = self.config().get("services", {})
        selection = self.settings.services or tuple(services)
        everything = self.catalog_all()
        missing = [name for name in selection if name not in services]
        for name in missing:
            if name in everything.services:
                raise SwarmUsageError(f"--services {name}: {everything.how_to_enable(name)}")
            raise SwarmUsageError(f"--services {name}: no such service; known services: {', '.join(sorted(everything.services))}")
        deployed: set[str] = set()
        pending = list(selection)
        while pending:
            name = pending.pop()
            if name in deployed:
                continue
            deployed.add(name)
            pending.extend(dep for dep in (services[name].get("depends_on") or {}) if dep in services)
        return sorted(deployed)

    def catalog_all(self) -> Catalog:
        if self._catalog is None:
            everything = self._render([ALL_PROFILES])
            self._catalog = Catalog.from_compose_config(everything, (), self.profiles, source=str(self.settings.compose_file))
        return self._catalog

    def catalog(self) -> Catalog:
        everything = self.catalog_all()
        deployed = self.deployed_services()
        hint = None
        if self.settings.services:
            hint = f"this run deploys only --services {','.join(self.settings.services)}: add {{name}} to --services"
        return Catalog(services=everything.services, active=frozenset(deployed), profiles=self.profiles,
                       source=everything.source, enable_hint=hint)

    def has_gpu(self) -> bool:
        return "gpu" in self.profiles

    def _replicas(self, service: str) -> int:
        spec = self.config()["services"][service]
        return int((spec.get("deploy") or {}).get("replicas") or 1)

    # -- compose calls ---------------------------------------------------------------------

    def _args(self, profiles: Sequence[str] | None = None) -> list[str]:
        extra = [self._override_file] if self._override_file else []
        return compose_cli.base_args(self.settings.compose_file, self.env_files, self.project,
                                     self.profiles if profiles is None else profiles, extra)

    def _compose(self, *args: str, timeout: float = 120.0, profiles: Sequence[str] | None = None) -> subprocess.CompletedProcess[str]:
        return compose_cli.run([*self._args(profiles), *args], timeout=timeout, overrides=self.overrides)

    def containers(self) -> list[dict[str, Any]]:
        """`docker compose ps --all --format json`: one dict per container of the project (listed
        again when one vanishes mid-listing, see compose_cli.ps)."""
        result = compose_cli.ps(self._args(), overrides=self.overrides)
        if result.returncode != 0:
            raise SwarmError(explain(result.stderr, self.redact))
        text = result.stdout.strip()
        if not text:
            return []
        if text.startswith("["):
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def check_engine(self) -> None:
        """One clear line when Compose or the Docker engine is missing, before anything starts."""
        result = compose_cli.run([*compose_cli.compose_command(), "ls", "--format", "json"], timeout=60)
        if result.returncode != 0:
            raise SwarmError(explain(result.stderr, self.redact))

    # -- up --------------------------------------------------------------------------------

    def up(self) -> None:
        """Stand the stack up once per run (the first worker does it) or attach to it."""
        if self.settings.reuse_stack:
            self._attach_running()
            return
        with self.state.locked():
            state = self.state.read()
            status = state.get("status")
            if status == "ready":
                self._load(state)
                return
            if status in ("failed", "starting"):
                failed = StackError(state.get("error") or "another worker failed to start the stack", state.get("services", ()))
                failed.logs = dict(state.get("logs") or {})
                raise failed
            if status == "down":
                raise SwarmError("the stack of this run was already torn down")
            self.check_engine()
            self.deployed_services()  # bad --services: a clear error before anything starts
            orphans.sweep()
            try:
                self._start()
            except BaseException as error:
                services = getattr(error, "services", ())
                message = str(error) if isinstance(error, SwarmError) else f"interrupted ({type(error).__name__})"
                if isinstance(error, StackError):
                    error.logs = {name: self._safe_logs(name) for name in services}
                self.state.write({**self._state(), "status": "failed", "error": message, "services": list(services),
                                  "logs": getattr(error, "logs", {})})
                if not self.settings.keep_stack:
                    self._teardown()
                raise

    def _state(self) -> dict[str, Any]:
        return {"project": self.project, "overrides": self.overrides, "readiness": self.readiness,
                "override_file": str(self._override_file) if self._override_file else None,
                "profiles": list(self.profiles), "endpoints": {n: endpoint_to_json(e) for n, e in self._endpoints.items()}}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.project = state["project"]
        self.overrides = dict(state.get("overrides") or {})
        self.readiness = dict(state.get("readiness") or {})
        self._override_file = Path(state["override_file"]) if state.get("override_file") else None
        self._endpoints = {n: endpoint_from_json(e) for n, e in (state.get("endpoints") or {}).items()}
        for endpoint in self._endpoints.values():
            self.redact.add(endpoint.password, endpoint.api_key)

    def _start(self) -> None:
        services = self.deployed_services()
        self.overrides = self._host_overrides()
        self._override_file = self._write_label_override()
        self.state.write({**self._state(), "status": "starting"})
        for attempt in range(3):
            self.overrides.update(self._subnet_override())
            self.state.write({**self._state(), "status": "starting"})
            try:
                self._up_and_wait(services)
                break
            except StackError as error:
                if "overlap" not in str(error).lower() or attempt == 2:
                    raise
                self._compose("down", "--remove-orphans", profiles=[ALL_PROFILES], timeout=DOWN_TIMEOUT)
        self.state.write({**self._state(), "status": "ready"})

    def _host_overrides(self) -> dict[str, str]:
        """Random host ports (empty *_PORT variables) unless --host-ports=env."""
        if self.settings.host_ports != "random":
            return {}
        names = set(PORT_VARIABLE.findall(self.settings.compose_file.read_text()))
        return {name: "" for name in sorted(names)}

    def _subnet_override(self) -> dict[str, str]:
        """A /16 for the swarm network that no other Docker network uses (two runs side by side)."""
        used = _used_subnets()
        candidates = [f"172.{n}" for n in range(21, 32)] + [f"10.{n}" for n in range(200, 250)]
        free = [prefix for prefix in candidates if f"{prefix}.0.0/16" not in used]
        return {"SWARM_SUBNET_PREFIX": random.choice(free or candidates)}

    def _write_label_override(self) -> Path:
        """A Compose override that labels every container, network and volume with the run id."""
        everything = self._render([ALL_PROFILES], overrides={})
        labels = {orphans.LABEL_RUN: self.context.run_id,
                  orphans.LABEL_OWNER: orphans.owner_label(self.context.owner_pid),
                  orphans.LABEL_KEEP: "true" if self.settings.keep_stack else "false"}
        override = {
            "services": {name: {"labels": labels} for name in everything.get("services", {})},
            "networks": {name: {"labels": labels} for name in everything.get("networks", {})},
            "volumes": {name: {"labels": labels} for name in everything.get("volumes", {})},
        }
        path = self.state.path("labels.override.yml")
        path.write_text(yaml.safe_dump(override, sort_keys=True))
        return path

    def _up_and_wait(self, services: Sequence[str]) -> None:
        started = time.monotonic()
        deadline = started + self.settings.stack_timeout
        args = [*self._args(), "up", "--detach", "--no-build", "--pull", self.settings.pull, "--remove-orphans", *services]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=compose_cli.environment(self.overrides))
        outcome: list[tuple[str, str]] = []
        reader = threading.Thread(target=lambda: outcome.append(process.communicate()), daemon=True)
        reader.start()
        try:
            self._wait_ready(services, started, deadline, process, outcome)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            reader.join(timeout=10)

    def _attach_running(self) -> None:
        """--reuse-stack: the project must be running; wait for readiness, start nothing."""
        self.check_engine()
        if not [c for c in self.containers() if c.get("State") == "running"]:
            raise StackError(f"--reuse-stack: no running container in Compose project {self.project!r}: "
                             "start the stack with `make compose-up`, or drop --reuse-stack")
        services = sorted({c["Service"] for c in self.containers()})
        started = time.monotonic()
        self._wait_ready(services, started, started + self.settings.stack_timeout, None, [])

    def _wait_ready(self, services: Sequence[str], started: float, deadline: float,
                    process: subprocess.Popen[str] | None, outcome: list[tuple[str, str]]) -> None:
        """Poll container states (fail fast) and probe each service in parallel until all are ready."""
        stop = threading.Event()
        futures: dict[str, Future[str]] = {}
        pending = set(services)
        backoff = Backoff(first=0.5, cap=3.0)
        with ThreadPoolExecutor(max_workers=max(1, len(services)), thread_name_prefix="swarm-probe") as pool:
            try:
                polls = 0
                while pending:
                    up_done = process is None or process.poll() is not None
                    if process is not None and up_done and process.returncode != 0:
                        for _ in range(100):  # the reader thread collects the output right after exit
                            if outcome:
                                break
                            time.sleep(0.05)
                        stderr = outcome[0][1] if outcome else ""
                        raise StackError(f"`docker compose up` failed: {explain(stderr, self.redact, self._images())}",
                                         culprits(stderr, services))
                    containers = self.containers()
                    self._fail_fast(containers)
                    by_service: dict[str, list[dict[str, Any]]] = {}
                    for container in containers:
                        by_service.setdefault(container.get("Service", ""), []).append(container)
                    for name in sorted(pending - set(futures)):
                        group = by_service.get(name, [])
                        # A service with a probe is probed as soon as it runs (its healthcheck may
                        # still be in its first interval); one without waits for its healthcheck.
                        gate = _running if self._has_probe(name) else _healthy
                        if len(group) < self._replicas_of(name) or not all(gate(c) for c in group):
                            continue
                        endpoint = self._endpoint_from(name, group, by_service)
                        futures[name] = pool.submit(self._probe, name, endpoint, started, deadline, stop)
                    for name, future in list(futures.items()):
                        if name in pending and future.done():
                            future.result()  # raises the probe's error
                            pending.discard(name)
                    if not pending and process is not None and process.poll() is None:
                        # Every service answers; `up` itself must still finish (and succeed).
                        if time.monotonic() > deadline:
                            raise StackError("`docker compose up` did not finish before --stack-timeout")
                        pending.add(_UP_PENDING)
                        futures[_UP_PENDING] = pool.submit(_wait_process, process, deadline)
                    if pending and time.monotonic() > deadline:
                        raise StackError(self._timeout_message(pending, by_service), sorted(pending))
                    if pending:
                        time.sleep(backoff.delay(min(polls, 4)))
                        polls += 1
                if process is not None and process.wait() != 0:
                    stderr = outcome[0][1] if outcome else ""
                    raise StackError(f"`docker compose up` failed: {explain(stderr, self.redact, self._images())}",
                                     culprits(stderr, services))
            except BaseException:
                stop.set()
                raise

    def _images(self) -> dict[str, str]:
        return {name: str(spec.get("image", "")) for name, spec in self.config().get("services", {}).items()}

    def _has_probe(self, name: str) -> bool:
        service = self.catalog_all().services.get(name)
        return bool(service and service.port and service.kind in PROBES)

    def _replicas_of(self, name: str) -> int:
        return self._replicas(name) if name in self.config().get("services", {}) else 1

    def _fail_fast(self, containers: Sequence[Mapping[str, Any]]) -> None:
        for container in containers:
            state, health, name = container.get("State", ""), container.get("Health", ""), container.get("Service", "?")
            if state in ("exited", "dead"):
                raise StackError(f"service {name}: container {container.get('Name')} exited with code "
                                 f"{container.get('ExitCode')} while starting; its logs are attached", [name])
            if state == "restarting":
                raise StackError(f"service {name}: container {container.get('Name')} keeps restarting "
                                 f"(last exit code {container.get('ExitCode')}); its logs are attached", [name])
            if health == "unhealthy":
                raise StackError(f"service {name}: container {container.get('Name')} is unhealthy "
                                 "(its healthcheck failed every retry); its logs are attached", [name])

    def _timeout_message(self, pending: set[str], by_service: Mapping[str, list[dict[str, Any]]]) -> str:
        states = []
        for name in sorted(pending):
            group = by_service.get(name, [])
            state = ", ".join(f"{c.get('State')}/{c.get('Health') or 'no healthcheck'}" for c in group) or "not created"
            states.append(f"{name} ({state})")
        return (f"not ready within --stack-timeout={self.settings.stack_timeout:g} s: {'; '.join(states)}; "
                "their logs are attached")

    def _probe(self, name: str, endpoint: Endpoint | None, started: float, deadline: float, stop: threading.Event) -> str:
        service = self.catalog_all().services.get(name)
        probe = PROBES.get(service.kind) if service else None
        if probe is None or endpoint is None:
            detail = "container healthy"
        else:
            try:
                detail = wait_until(lambda: probe(endpoint), deadline, what=f"service {name}", stop=stop)
            except (GiveUp, WaitTimeout) as error:
                raise StackError(f"service {name}: {self.redact(str(error))}", [name]) from None
        self.readiness[name] = {"seconds": round(time.monotonic() - started, 2), "detail": self.redact(detail)}
        if endpoint is not None:
            self._endpoints[name] = endpoint
        return detail

    # -- endpoints -------------------------------------------------------------------------

    def _endpoint_from(self, name: str, group: Sequence[Mapping[str, Any]],
                       by_service: Mapping[str, list[dict[str, Any]]]) -> Endpoint | None:
        service = self.catalog_all().services.get(name)
        if service is None or service.port is None:
            return None
        published = [
            p for c in group for p in (c.get("Publishers") or [])
            if p.get("TargetPort") == service.port and p.get("PublishedPort")
        ]
        if not published:
            return None
        host = published[0].get("URL") or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        port = published[0]["PublishedPort"]
        spec = self.config()["services"].get(name, {})
        environment = {str(k): str(v) for k, v in (spec.get("environment") or {}).items() if v is not None}
        endpoint = build_endpoint(name, service.kind, host, int(port), environment, spec, service.model,
                                  service.labels)
        if service.kind == "ray-head":
            workers = sum(len(by_service.get(s.name, [])) for s in self.catalog_all().services.values() if s.kind == "ray-worker")
            endpoint = Endpoint(**{**endpoint.__dict__, "extra": {**endpoint.extra, "expected_nodes": str(1 + workers)}})
        self.redact.add(endpoint.password, endpoint.api_key)
        return endpoint

    def endpoint(self, service: str) -> Endpoint:
        if service not in self._endpoints:
            state = self.state.read() if not self.settings.reuse_stack else {}
            if state.get("status") == "ready":
                self._load(state)
        try:
            return self._endpoints[service]
        except KeyError:
            raise SwarmError(f"service {service!r} publishes no port that the plugin knows "
                             f"(label swarm.port); deployed: {', '.join(self.deployed_services())}") from None

    # -- logs, exec, down ------------------------------------------------------------------

    def logs(self, service: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color", "--timestamps"]
        if tail is not None:
            args += ["--tail", str(tail)]
        result = self._compose(*args, service, timeout=60)
        return self.redact(result.stdout + result.stderr)

    def exec(self, service: str, command: Sequence[str]) -> ExecResult:
        result = self._compose("exec", "-T", service, *command, timeout=300)
        return ExecResult(exit_code=result.returncode, output=self.redact(result.stdout + result.stderr))

    def _safe_logs(self, service: str) -> str:
        try:
            return self.logs(service, tail=LOG_TAIL)
        except (SwarmError, OSError, subprocess.TimeoutExpired) as error:
            return f"(logs unavailable: {describe(error)})"

    def save_logs(self, directory: Path) -> list[Path]:
        """The full (redacted) log of every deployed service, one file each."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.deployed_services():
            path = directory / f"{name}.log"
            path.write_text(self.logs(name))
            written.append(path)
        return written

    def down(self) -> None:
        """Remove the run's stack (called by the owner only): logs first, then `down -v`."""
        with self.state.locked():
            state = self.state.read()
            if not state or state.get("status") in ("down", None) or state.get("torn_down"):
                return
            self._load(state)
            self._teardown()

    def _teardown(self) -> None:
        try:
            self.save_logs(self.context.log_dir / self.project)
        except (SwarmError, OSError, subprocess.TimeoutExpired):
            pass
        self._compose("down", "--volumes", "--remove-orphans", "--timeout", "10",
                      profiles=[ALL_PROFILES], timeout=DOWN_TIMEOUT)
        orphans.remove_project(self.project)
        state = self.state.read()
        self.state.write({**state, "torn_down": True, "status": "down" if state.get("status") != "failed" else "failed"})


_UP_PENDING = "(docker compose up)"


def _wait_process(process: subprocess.Popen[str], deadline: float) -> str:
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise StackError("`docker compose up` did not finish before --stack-timeout") from None
    return "done"


def _running(container: Mapping[str, Any]) -> bool:
    return container.get("State") == "running" and container.get("Health", "") != "unhealthy"


def _healthy(container: Mapping[str, Any]) -> bool:
    return container.get("State") == "running" and container.get("Health", "") in ("", "healthy")


def _used_subnets() -> set[str]:
    if shutil.which("docker") is None:
        return set()
    listing = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, check=False, timeout=60)
    ids = listing.stdout.split()
    if not ids:
        return set()
    result = subprocess.run(["docker", "network", "inspect", "--format",
                             "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
                            capture_output=True, text=True, check=False, timeout=60)
    return set(result.stdout.split())
