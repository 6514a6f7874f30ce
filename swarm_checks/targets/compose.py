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

import random
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from swarm_checks import docker_engine, orphans
from swarm_checks.catalog import ALL_PROFILES, Catalog
from swarm_checks.compose_config import ComposeConfig
from swarm_checks.compose_endpoints import build_endpoint, endpoint_from_json, endpoint_to_json, metrics_extra
from swarm_checks.compose_errors import culprits, explain
from swarm_checks.compose_project import ComposeProject, Container, UpCall
from swarm_checks.endpoint import Endpoint
from swarm_checks.errors import StackError, SwarmError
from swarm_checks.options import SwarmSettings
from swarm_checks.probes import Probe, default_probes
from swarm_checks.readiness import ReadinessWaiter, UnitState
from swarm_checks.redaction import Redactor
from swarm_checks.shared_state import RunContext, SharedState
from swarm_checks.targets.base import LOG_TAIL, ExecResult, StackSummary
from swarm_checks.waiting import describe

ENGINE_PROFILES = ("gpu", "cpu")
PORT_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*_PORT)[-:]")


def detect_gpu() -> bool:
    """An NVIDIA GPU is visible on this host: Compose runs the engine here."""
    from swarm_checks.load import roofline  # here, not at the top: the load extra stays optional

    return bool(roofline.local_gpus())


def effective_profiles(settings: SwarmSettings) -> tuple[str, ...]:
    """The chosen profiles, plus the engine profile (gpu with a GPU, cpu without) when none is."""
    profiles = tuple(settings.profiles)
    if not set(profiles) & set(ENGINE_PROFILES):
        profiles += ("gpu" if detect_gpu() else "cpu",)
    return profiles


class ComposeTarget:
    """One Compose project per run, shared by every xdist worker of the run.

    The lifecycle lives here; `ComposeProject` makes the `docker compose` calls and parses what
    they print, `ReadinessWaiter` probes the services, `orphans` sweeps what killed runs left.
    """

    name = "compose"

    def __init__(self, settings: SwarmSettings, context: RunContext, probes: Mapping[str, Probe] | None = None) -> None:
        self.settings = settings
        self.context = context
        self.probes = dict(probes if probes is not None else default_probes())
        self.state = SharedState(context)
        self.env_files = settings.compose_env_files()
        self.profiles = effective_profiles(settings)
        self.redact = Redactor.from_env_files(self.env_files)
        self.compose = ComposeProject(settings.compose_file, self.env_files, f"swarm-{context.run_id}", self.profiles,
                                      self.redact)
        self.assets = ComposeConfig(settings, self.env_files, self.profiles, lambda: self.compose.overrides)
        if settings.reuse_stack:
            self.compose.name = self.assets.attach_project_name()
        self.readiness: dict[str, dict[str, Any]] = {}
        self._endpoints: dict[str, Endpoint] = {}

    @property
    def project(self) -> str:
        return self.compose.name

    # -- configuration (the rendered assets: swarm_checks.compose_config) -------------------

    def config(self) -> dict[str, Any]:
        return self.assets.config()

    def deployed_services(self) -> list[str]:
        return self.assets.deployed_services()

    def catalog_all(self) -> Catalog:
        return self.assets.catalog_all()

    def catalog(self) -> Catalog:
        return self.assets.catalog()

    def has_gpu(self) -> bool:
        return "gpu" in self.profiles

    def containers(self) -> list[Container]:
        """The project's containers, typed (see compose_project.Container)."""
        return self.compose.containers()

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
            self.compose.check_engine()
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
        override = self.compose.override_file
        return {"target": self.name, "project": self.project, "overrides": self.compose.overrides,
                "readiness": self.readiness, "override_file": str(override) if override else None,
                "profiles": list(self.profiles), "endpoints": {n: endpoint_to_json(e) for n, e in self._endpoints.items()}}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.compose.name = state["project"]
        self.compose.overrides = dict(state.get("overrides") or {})
        self.compose.override_file = Path(state["override_file"]) if state.get("override_file") else None
        self.readiness = dict(state.get("readiness") or {})
        self._endpoints = {n: endpoint_from_json(e) for n, e in (state.get("endpoints") or {}).items()}
        for endpoint in self._endpoints.values():
            self.redact.add(endpoint.password, endpoint.api_key)

    def _start(self) -> None:
        services = self.deployed_services()
        self.compose.overrides = self._host_overrides()
        self.compose.override_file = self._write_label_override()
        for attempt in range(3):
            self.compose.overrides.update(self._subnet_override())
            self.state.write({**self._state(), "status": "starting"})
            try:
                self._up_and_wait(services)
                break
            except StackError as error:
                # A subnet another network took meanwhile, or (random ports) a chosen port taken
                # between choosing it and Docker binding it: choose again.
                text = str(error).lower()
                port_taken = "already in use" in text and self.settings.host_ports == "random"
                if ("overlap" not in text and not port_taken) or attempt == 2:
                    raise
                self.compose.down([ALL_PROFILES])
                if port_taken:
                    self.compose.overrides.update(self._host_overrides())
        self.state.write({**self._state(), "status": "ready", "images": self._images_safely(), "facts": self._facts()})

    def _images_safely(self) -> dict[str, str]:
        try:
            return self.compose.images()
        except (SwarmError, OSError, subprocess.TimeoutExpired, ValueError):
            return {}

    def _facts(self) -> dict[str, str]:
        """What the report should say about the hardware: the engine runs on this host."""
        if not self.has_gpu():
            return {"engine hardware": "CPU (profile cpu)"}
        from swarm_checks.load import roofline

        gpus = roofline.local_gpus()
        return {"GPU": ", ".join(g.describe() for g in gpus) or "none found", "NVIDIA driver": roofline.local_driver() or "?"}

    def _host_overrides(self) -> dict[str, str]:
        """Free host ports, one per *_PORT variable, unless --host-ports=env. Chosen here for the
        whole run rather than left to Docker (an empty variable), which picks a new random port
        each time a container starts: a service that restarted (its restart policy after a
        crash, or a test's fault) then listened elsewhere, and the address handed out before
        was refused for the rest of the run."""
        if self.settings.host_ports != "random":
            return {}
        names = sorted(set(PORT_VARIABLE.findall(self.settings.compose_file.read_text())))
        return dict(zip(names, (str(port) for port in docker_engine.free_ports(len(names)))))

    def _subnet_override(self) -> dict[str, str]:
        """A /16 for the swarm network that no other Docker network uses (two runs side by side)."""
        used = docker_engine.used_subnets()
        candidates = [f"172.{n}" for n in range(21, 32)] + [f"10.{n}" for n in range(200, 250)]
        free = [prefix for prefix in candidates if f"{prefix}.0.0/16" not in used]
        return {"SWARM_SUBNET_PREFIX": random.choice(free or candidates)}

    def _write_label_override(self) -> Path:
        """A Compose override that labels every container, network and volume with the run id."""
        everything = self.assets.render([ALL_PROFILES], overrides={})
        labels = {orphans.LABEL_RUN: self.context.run_id,
                  orphans.LABEL_OWNER: orphans.owner_label(self.context.owner_pid),
                  orphans.LABEL_KEEP: "true" if self.settings.keep_stack else "false"}
        override = {section: {name: {"labels": labels} for name in everything.get(section, {})}
                    for section in ("services", "networks", "volumes")}
        path = self.state.path("labels.override.yml")
        path.write_text(yaml.safe_dump(override, sort_keys=True))
        return path

    def _waiter(self) -> ReadinessWaiter:
        return ReadinessWaiter(self.probes, self.redact, self.settings.stack_timeout)

    def _up_and_wait(self, services: Sequence[str]) -> None:
        waiter = self._waiter()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="swarm-compose-up") as pool:
            up = self.compose.start_up(services, self.settings.pull, pool)
            try:
                waiter.wait(services, self._poll, lambda: self._up_failed(up, services))
                try:  # every service answers; `up` itself must still finish, and succeed
                    up.output.result(timeout=max(0.0, waiter.deadline - time.monotonic()))
                except TimeoutError:
                    raise StackError("`docker compose up` did not finish before --stack-timeout") from None
                self._up_failed(up, services)
            finally:
                self._record(waiter)
                up.stop()

    def _up_failed(self, up: UpCall, services: Sequence[str]) -> None:
        stderr = up.failed()
        if stderr is not None:
            raise StackError(f"`docker compose up` failed: {explain(stderr, self.redact, self.assets.images())}",
                             culprits(stderr, services))

    def _attach_running(self) -> None:
        """--reuse-stack: the project must be running; wait for readiness, start nothing."""
        self.compose.check_engine()
        containers = self.containers()
        if not [c for c in containers if c.state == "running"]:
            raise StackError(f"--reuse-stack: no running container in Compose project {self.project!r}: "
                             "start the stack with `make compose-up`, or drop --reuse-stack")
        waiter = self._waiter()
        try:
            waiter.wait(sorted({c.service for c in containers}), self._poll)
        finally:
            self._record(waiter)

    def _record(self, waiter: ReadinessWaiter) -> None:
        self.readiness.update({name: ready.to_json() for name, ready in waiter.ready.items()})
        self._endpoints.update(waiter.endpoints)

    def _poll(self) -> dict[str, UnitState]:
        """One `ps`: fail fast on a container that exited, restarts or is unhealthy; then each
        service's state and, once its port is published, its endpoint."""
        containers = self.containers()
        _fail_fast(containers)
        by_service: dict[str, list[Container]] = {}
        for container in containers:
            by_service.setdefault(container.service, []).append(container)
        services = self.catalog_all().services
        states = {}
        for name, group in by_service.items():
            complete = len(group) >= self.assets.replicas(name)
            service = services.get(name)
            states[name] = UnitState(
                kind=service.kind if service else "",
                running=complete and all(c.running for c in group),
                healthy=complete and all(c.healthy for c in group),
                endpoint=self._endpoint_from(name, group, by_service),
                describe=", ".join(c.describe() for c in group))
        return states

    # -- endpoints -------------------------------------------------------------------------

    def _endpoint_from(self, name: str, group: Sequence[Container], by_service: Mapping[str, list[Container]]) -> Endpoint | None:
        service = self.catalog_all().services.get(name)
        if service is None or service.port is None:
            return None
        published = next((p for c in group if (p := c.published(service.port))), None)
        if published is None:
            return None
        spec = self.config()["services"].get(name, {})
        environment = {str(k): str(v) for k, v in (spec.get("environment") or {}).items() if v is not None}
        endpoint = build_endpoint(name, service.kind, published.host, published.published_port, environment, spec,
                                  service.model, service.labels)
        extra = metrics_extra(service.labels, group)
        if service.kind == "ray-head":
            workers = sum(len(by_service.get(s.name, [])) for s in self.catalog_all().services.values() if s.kind == "ray-worker")
            extra["expected_nodes"] = str(1 + workers)
        if extra:
            endpoint = Endpoint(**{**endpoint.__dict__, "extra": {**endpoint.extra, **extra}})
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

    # -- logs, exec, faults, down ----------------------------------------------------------

    def logs(self, service: str, tail: int | None = None) -> str:
        return self.compose.logs(service, tail)

    def exec(self, service: str, command: Sequence[str]) -> ExecResult:
        result = self.compose.exec(service, command)
        return ExecResult(exit_code=result.returncode, output=self.redact(result.stdout + result.stderr))

    def fault(self, service: str, action: str) -> None:
        """Inject a fault: `stop`, `start`, `restart` or `kill` the service's containers.

        A container started again gets a new random host port: its endpoint is read afresh from
        `ps` and written to the run's state, so that every later test (and worker) reaches it."""
        self.compose.fault(action, service)
        if action in ("start", "restart"):
            self._refresh_endpoint(service)

    def _refresh_endpoint(self, service: str) -> None:
        by_service: dict[str, list[Container]] = {}
        for container in self.containers():
            by_service.setdefault(container.service, []).append(container)
        group = by_service.get(service, [])
        endpoint = self._endpoint_from(service, group, by_service) if group else None
        if endpoint is None or self._endpoints.get(service) == endpoint:
            return
        self._endpoints[service] = endpoint
        if not self.settings.reuse_stack:
            with self.state.locked():
                state = self.state.read()
                if state.get("status") == "ready":
                    self.state.write({**state, "endpoints": {n: endpoint_to_json(e) for n, e in self._endpoints.items()}})

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

    def summary(self) -> StackSummary | None:
        if self.settings.reuse_stack:
            if not self.readiness:
                return None
            return StackSummary(self.name, self.project, "attached (--reuse-stack)", readiness=dict(self.readiness))
        state = self.state.read() if self.state.exists() else {}
        if not state:
            return None
        notes = ()
        if self.settings.keep_stack:
            notes = (f"stack kept (--keep-stack): attach with --reuse-stack after `export COMPOSE_PROJECT_NAME={self.project}`, "
                     f"remove with `docker compose -p {self.project} down --volumes`",)
        project = state.get("project", self.project)
        return StackSummary(self.name, project, str(state.get("status", "?")), readiness=dict(state.get("readiness") or {}),
                            error=state.get("error"), logs_at=self.context.log_dir / project, notes=notes,
                            images=dict(state.get("images") or {}), facts=dict(state.get("facts") or {}))

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
        self.compose.down([ALL_PROFILES])
        orphans.remove_project(self.project)
        state = self.state.read()
        self.state.write({**state, "torn_down": True, "status": "down" if state.get("status") != "failed" else "failed"})


def _fail_fast(containers: Sequence[Container]) -> None:
    """A container that exited, keeps restarting or failed its healthcheck: waiting cannot help."""
    for container in containers:
        name = container.service or "?"
        if container.state in ("exited", "dead"):
            raise StackError(f"service {name}: container {container.name} exited with code "
                             f"{container.exit_code} while starting; its logs are attached", [name])
        if container.state == "restarting":
            raise StackError(f"service {name}: container {container.name} keeps restarting "
                             f"(last exit code {container.exit_code}); its logs are attached", [name])
        if container.health == "unhealthy":
            raise StackError(f"service {name}: container {container.name} is unhealthy "
                             "(its healthcheck failed every retry); its logs are attached", [name])
