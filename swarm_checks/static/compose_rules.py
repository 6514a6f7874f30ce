"""Rules for the Compose stack, checked on what `docker compose config` renders.

The rendered form (interpolated with .env.example, anchors merged, every profile on) is what
Compose will run, so most rules read it; rules about how the file is written (variables,
literal secrets) read the raw YAML.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from swarm_checks import compose_cli
from swarm_checks.catalog import ALL_PROFILES
from swarm_checks.secrets import is_secret_name, read_env_file
from swarm_checks.static.rule import Rule, Violation, is_pinned

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_TRIVIAL_TEST = re.compile(r"^\s*(true|exit 0|:|echo\b.*)\s*$")
_URL_CREDENTIAL = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
_SECRET_FLAGS = ("--requirepass", "--password", "--api-key")
_DEFAULT_PINNED = re.compile(r"^\$\{[A-Z0-9_]+_IMAGE:-[^}]+\}$")


@dataclass(frozen=True)
class ComposeAssets:
    """The Compose file, raw and rendered, with its documented variables and the matrix."""

    compose_file: Path
    env_example: Path
    raw_text: str
    raw: Mapping[str, Any]
    rendered: Mapping[str, Any]  # every profile on
    documented: frozenset[str]
    matrix: Mapping[str, Any]

    @property
    def services(self) -> Mapping[str, Any]:
        return self.rendered.get("services", {})

    def raw_service(self, name: str) -> Mapping[str, Any]:
        return (self.raw.get("services") or {}).get(name) or {}


def read_env_keys(path: Path) -> frozenset[str]:
    """The variable names an env file defines."""
    return frozenset(read_env_file(path))


def load_assets(compose_file: Path, matrix: Mapping[str, Any]) -> ComposeAssets:
    env_example = compose_file.parent / ".env.example"
    # Compose validates first: its message for a broken file is the one the user needs.
    rendered = compose_cli.render_config(compose_file, [env_example], [ALL_PROFILES])
    raw_text = compose_file.read_text()
    return ComposeAssets(
        compose_file=compose_file,
        env_example=env_example,
        raw_text=raw_text,
        raw=yaml.safe_load(raw_text) or {},
        rendered=rendered,
        documented=read_env_keys(env_example) if env_example.exists() else frozenset(),
        matrix=matrix,
    )


def profile_combinations(matrix: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Every engine profile with every subset of the optional profiles."""
    optional = list(matrix["optional_profiles"])
    combos = []
    for engine in matrix["engine_profiles"]:
        for size in range(len(optional) + 1):
            for subset in itertools.combinations(optional, size):
                combos.append((engine, *subset))
    return combos


def expected_services(matrix: Mapping[str, Any], profiles: tuple[str, ...]) -> set[str]:
    return {name for name, spec in matrix["compose"].items() if spec["profile"] is None or spec["profile"] in profiles}


def _obj(name: str) -> str:
    return f"compose service '{name}'"


def _each(assets: ComposeAssets) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield from sorted(assets.services.items())


def check_matrix_services(assets: ComposeAssets) -> Iterator[Violation]:
    expected = set(assets.matrix["compose"])
    for name in sorted(expected - set(assets.services)):
        yield Violation(_obj(name), "matrix-services", "missing from the Compose file (it is in the service matrix)")
    for name, spec in assets.matrix["compose"].items():
        service = assets.services.get(name)
        if service is None:
            continue
        want = [spec["profile"]] if spec["profile"] else []
        if list(service.get("profiles") or []) != want:
            yield Violation(_obj(name), "matrix-services", f"profiles {service.get('profiles') or []} differ from the matrix's {want}")


def check_healthcheck(assets: ComposeAssets) -> Iterator[Violation]:
    for name, service in _each(assets):
        check = service.get("healthcheck")
        if not check or check.get("disable"):
            yield Violation(_obj(name), "healthcheck", "no healthcheck: add one that really tests the service")
            continue
        test = check.get("test") or []
        command = " ".join(test[1:]) if isinstance(test, list) else str(test)
        if not test or test[0] == "NONE" or not command.strip() or _TRIVIAL_TEST.match(command):
            yield Violation(_obj(name), "healthcheck", f"healthcheck {command!r} cannot fail: make it ask the service")


def check_pinned_image(assets: ComposeAssets) -> Iterator[Violation]:
    for name, service in _each(assets):
        image = str(service.get("image") or "")
        if not image:
            yield Violation(_obj(name), "pinned-image", "no image: name an image with a pinned tag")
        elif not is_pinned(image):
            yield Violation(_obj(name), "pinned-image", f"image {image!r} is not pinned: use an explicit version tag, never latest")
        raw_image = str(assets.raw_service(name).get("image") or "")
        if raw_image and not _DEFAULT_PINNED.match(raw_image):
            yield Violation(_obj(name), "pinned-image", f"image {raw_image!r} cannot be overridden: write it as ${{NAME_IMAGE:-repo:tag}}")


def check_resource_limits(assets: ComposeAssets) -> Iterator[Violation]:
    for name, service in _each(assets):
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        missing = [key for key in ("cpus", "memory") if not limits.get(key)]
        if missing:
            yield Violation(_obj(name), "resource-limits", f"no {' and no '.join(missing)} limit under deploy.resources.limits")


def check_loopback_ports(assets: ComposeAssets) -> Iterator[Violation]:
    for name, service in _each(assets):
        for port in service.get("ports") or []:
            host_ip = port.get("host_ip") if isinstance(port, dict) else None
            if host_ip != "127.0.0.1":
                target = port.get("target") if isinstance(port, dict) else port
                yield Violation(_obj(name), "loopback-ports",
                                f"port {target} is published on {host_ip or '0.0.0.0 (all interfaces)'}: bind it to ${{BIND_ADDRESS:-127.0.0.1}}")


def check_restart_policy(assets: ComposeAssets) -> Iterator[Violation]:
    for name, service in _each(assets):
        if service.get("restart") in (None, "no"):
            yield Violation(_obj(name), "restart-policy", "no restart policy: set restart (e.g. unless-stopped)")


def _gpu_services(assets: ComposeAssets) -> list[str]:
    return sorted(name for name, spec in assets.matrix["compose"].items() if spec.get("gpu") and name in assets.services)


def check_gpu_reservation(assets: ComposeAssets) -> Iterator[Violation]:
    for name in _gpu_services(assets):
        service = assets.services[name]
        devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        ok = any(d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or []) and (d.get("count") or d.get("device_ids")) for d in devices)
        if not ok:
            yield Violation(_obj(name), "gpu-reservation", "no NVIDIA GPU reservation (deploy.resources.reservations.devices: driver nvidia, count, capabilities [gpu])")
        if service.get("ipc") != "host" and not service.get("shm_size"):
            yield Violation(_obj(name), "gpu-reservation", "neither ipc: host nor shm_size: vLLM's workers need shared memory")
        command = [str(part) for part in service.get("command") or []]
        if "--max-model-len" not in command:
            yield Violation(_obj(name), "gpu-reservation", "no --max-model-len: cap the context so the KV cache fits")
        start = _seconds((service.get("healthcheck") or {}).get("start_period", "0s"))
        if start < 600:
            yield Violation(_obj(name), "gpu-reservation", f"healthcheck start_period {start:.0f}s is too short for model loading (>= 600s)")


def check_vllm_on_cpu(assets: ComposeAssets) -> Iterator[Violation]:
    """vLLM's CPU build (an engine labelled vllm that the matrix gives no GPU): what it needs to
    start on a machine without a GPU, and nothing that would stop it there."""
    for name, service in sorted(assets.services.items()):
        if (service.get("labels") or {}).get("swarm.engine") != "vllm" or assets.matrix["compose"].get(name, {}).get("gpu"):
            continue
        devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        if devices:
            yield Violation(_obj(name), "vllm-cpu", "a device reservation on the CPU engine: it would not start without a GPU")
        if service.get("ipc") != "host" and not service.get("shm_size"):
            yield Violation(_obj(name), "vllm-cpu", "neither ipc: host nor shm_size: vLLM's worker processes need shared memory")
        command = [str(part) for part in service.get("command") or []]
        if "--max-model-len" not in command and not _env(service).get("MAX_MODEL_LEN"):
            yield Violation(_obj(name), "vllm-cpu", "no --max-model-len (or MAX_MODEL_LEN): cap the context so the KV cache fits")
        healthcheck = service.get("healthcheck") or {}
        if "/health" not in " ".join(str(part) for part in healthcheck.get("test") or []):
            yield Violation(_obj(name), "vllm-cpu", "the healthcheck does not ask vLLM's /health")
        start = _seconds(healthcheck.get("start_period", "0s"))
        if start < 120:
            yield Violation(_obj(name), "vllm-cpu", f"healthcheck start_period {start:.0f}s is too short for vLLM to load on a CPU (>= 120s)")


def check_gpu_memory_split(assets: ComposeAssets) -> Iterator[Violation]:
    """vLLM services that can share one GPU must leave room for each other."""
    total = 0.0
    names = _gpu_services(assets)
    for name in names:
        command = [str(part) for part in assets.services[name].get("command") or []]
        if "--gpu-memory-utilization" not in command:
            yield Violation(_obj(name), "gpu-memory-split", "no --gpu-memory-utilization: two models on one GPU must split it")
            continue
        total += float(command[command.index("--gpu-memory-utilization") + 1])
    if len(names) > 1 and total >= 1.0:
        yield Violation("compose services " + ", ".join(names), "gpu-memory-split", f"--gpu-memory-utilization adds up to {total:.2f}: keep it below 1")


def _seconds(text: str) -> float:
    total, number = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in str(text):
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
    return total + (float(number) if number else 0.0)


def check_depends_on(assets: ComposeAssets) -> Iterator[Violation]:
    for name, spec in sorted(assets.matrix["compose"].items()):
        service = assets.services.get(name)
        if service is None:
            continue
        actual = service.get("depends_on") or {}
        expected = {dep.rstrip("?"): not dep.endswith("?") for dep in spec["depends_on"]}
        for dep in sorted(set(expected) - set(actual)):
            yield Violation(_obj(name), "depends-on", f"does not wait for {dep!r} (dependency matrix)")
        for dep in sorted(set(actual) - set(expected)):
            yield Violation(_obj(name), "depends-on", f"waits for {dep!r}, which the dependency matrix does not list")
        for dep, required in sorted(expected.items()):
            condition = actual.get(dep)
            if condition is None:
                continue
            if condition.get("condition") != "service_healthy":
                yield Violation(_obj(name), "depends-on", f"waits for {dep!r} with {condition.get('condition')!r}: use service_healthy")
            if bool(condition.get("required", True)) != required:
                yield Violation(_obj(name), "depends-on", f"dependency on {dep!r} should have required: {str(required).lower()}")


def check_network_address(assets: ComposeAssets) -> Iterator[Violation]:
    prefix = assets.matrix["subnet_prefix_default"]
    for name, spec in sorted(assets.matrix["compose"].items()):
        service = assets.services.get(name)
        if service is None:
            continue
        network = (service.get("networks") or {}).get("swarm")
        if "swarm" not in (service.get("networks") or {}):
            yield Violation(_obj(name), "network-address", "not attached to the swarm network")
            continue
        want = f"{prefix}.0.{spec['address']}" if spec["address"] is not None else None
        got = (network or {}).get("ipv4_address")
        if got != want:
            yield Violation(_obj(name), "network-address", f"address {got or 'dynamic'} differs from the matrix's {want or 'dynamic'}")
    subnets = [c.get("subnet") for c in ((assets.rendered.get("networks") or {}).get("swarm", {}).get("ipam") or {}).get("config", [])]
    if f"{prefix}.0.0/16" not in subnets:
        yield Violation("compose network 'swarm'", "network-address", f"subnet {subnets} is not {prefix}.0.0/16")


def check_named_volumes(assets: ComposeAssets) -> Iterator[Violation]:
    for name, spec in sorted(assets.matrix["compose"].items()):
        service = assets.services.get(name)
        if service is None:
            continue
        mounted = {v.get("source") for v in service.get("volumes") or [] if isinstance(v, dict) and v.get("type") == "volume"}
        for volume in spec["volumes"]:
            if volume not in mounted:
                yield Violation(_obj(name), "named-volumes", f"named volume {volume!r} is not mounted (storage matrix)")


# The only host paths a service may mount: the repository's own config files, read-only.
HOST_MOUNT_DIRS = ("configs",)
_DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def check_host_access(assets: ComposeAssets) -> Iterator[Violation]:
    allowed = [(assets.compose_file.parent / d).resolve() for d in HOST_MOUNT_DIRS]
    for name, service in _each(assets):
        if service.get("privileged"):
            yield Violation(_obj(name), "no-host-access", "privileged: true gives the container the host's devices and capabilities")
        for flag in ("pid", "network_mode"):
            if service.get(flag) == "host":
                yield Violation(_obj(name), "no-host-access", f"{flag}: host shares the host's {flag.split('_')[0]} namespace")
        for volume in service.get("volumes") or []:
            if not isinstance(volume, dict) or volume.get("type") != "bind":
                continue
            source = str(volume.get("source") or "")
            if source in _DOCKER_SOCKETS or source.endswith("/docker.sock") or volume.get("target") in _DOCKER_SOCKETS:
                yield Violation(_obj(name), "no-host-access", f"mounts the Docker socket {source}: root on the host")
            elif not any(Path(source).resolve().is_relative_to(d) for d in allowed):
                yield Violation(_obj(name), "no-host-access", f"mounts host path {source}: only files under compose/{', compose/'.join(HOST_MOUNT_DIRS)} may be mounted")
            elif not volume.get("read_only"):
                yield Violation(_obj(name), "no-host-access", f"mounts {source} writable: mount config files read-only (:ro)")


def check_env_documented(assets: ComposeAssets) -> Iterator[Violation]:
    if not assets.env_example.exists():
        yield Violation(str(assets.env_example), "env-documented", "missing: document every variable the Compose file reads")
        return
    used = sorted(set(_VARIABLE.findall(assets.raw_text)))
    for variable in used:
        if variable not in assets.documented:
            yield Violation(f"compose variable '{variable}'", "env-documented", f"used in {assets.compose_file.name} but not documented in .env.example")


def _literal_secret(value: str) -> bool:
    return bool(value) and "${" not in value


def check_no_secret_literal(assets: ComposeAssets) -> Iterator[Violation]:
    for name, service in sorted((assets.raw.get("services") or {}).items()):
        service = service or {}
        environment = service.get("environment") or {}
        items = environment.items() if isinstance(environment, dict) else (
            (entry.split("=", 1) + [""])[:2] for entry in environment)
        for key, value in items:
            if key == "<<":
                continue
            value = "" if value is None else str(value)
            if is_secret_name(str(key)) and _literal_secret(value):
                yield Violation(_obj(name), "no-secret-literal", f"environment {key} is a literal: take it from .env as ${{{key}}}")
            match = _URL_CREDENTIAL.search(value)
            if match and _literal_secret(match.group(1)):
                yield Violation(_obj(name), "no-secret-literal", f"environment {key} embeds a literal password in a URL")
        command = service.get("command") or []
        if isinstance(command, list):
            for flag, value in zip(command, command[1:]):
                if str(flag) in _SECRET_FLAGS and _literal_secret(str(value)):
                    yield Violation(_obj(name), "no-secret-literal", f"command passes a literal after {flag}")
    for anchor_key, block in (assets.raw or {}).items():
        if str(anchor_key).startswith("x-") and isinstance(block, dict):
            for key, value in block.items():
                if is_secret_name(str(key)) and isinstance(value, str) and _literal_secret(value):
                    yield Violation(f"compose block '{anchor_key}'", "no-secret-literal", f"{key} is a literal: take it from .env")


def _env(service: Mapping[str, Any]) -> Mapping[str, str]:
    return service.get("environment") or {}


def check_upstream_requirements(assets: ComposeAssets) -> Iterator[Violation]:
    """Facts the upstream projects require (Langfuse v3, ClickHouse, Redis, PostgreSQL), from their own docs."""
    services = assets.services
    redis = services.get("redis")
    if redis and "noeviction" not in [str(p) for p in redis.get("command") or []]:
        yield Violation(_obj("redis"), "upstream-requirements", "Langfuse's queues need --maxmemory-policy noeviction")
    clickhouse = services.get("clickhouse")
    if clickhouse:
        version = re.search(r":(\d+)\.(\d+)", str(clickhouse.get("image")))
        if not version or (int(version.group(1)), int(version.group(2))) < (24, 3):
            yield Violation(_obj("clickhouse"), "upstream-requirements", f"image {clickhouse.get('image')} is older than ClickHouse 24.3 (Langfuse v3 needs >= 24.3)")
        if not _env(clickhouse).get("CLICKHOUSE_USER") or not _env(clickhouse).get("CLICKHOUSE_PASSWORD"):
            yield Violation(_obj("clickhouse"), "upstream-requirements", "CLICKHOUSE_USER and CLICKHOUSE_PASSWORD must be set")
        nofile = ((clickhouse.get("ulimits") or {}).get("nofile") or {})
        if (nofile.get("soft") if isinstance(nofile, dict) else nofile) != 262144:
            yield Violation(_obj("clickhouse"), "upstream-requirements", "ulimits nofile must be 262144")
    postgres = services.get("postgres")
    if postgres and not re.search(r":17(\.|-|$)", str(postgres.get("image"))):
        yield Violation(_obj("postgres"), "upstream-requirements", f"image {postgres.get('image')} is not PostgreSQL 17 (18 moves the data directory)")
    for name in ("langfuse-web", "langfuse-worker"):
        service = services.get(name)
        if not service:
            continue
        env = _env(service)
        for key, want in (("CLICKHOUSE_CLUSTER_ENABLED", "false"), ("HOSTNAME", "0.0.0.0")):
            if env.get(key) != want:
                yield Violation(_obj(name), "upstream-requirements", f"{key} must be {want}")
        if not env.get("LANGFUSE_S3_EVENT_UPLOAD_BUCKET"):
            yield Violation(_obj(name), "upstream-requirements", "LANGFUSE_S3_EVENT_UPLOAD_BUCKET is required by Langfuse v3")
        if not str(service.get("image", "")).endswith(":3"):
            yield Violation(_obj(name), "upstream-requirements", f"image {service.get('image')} is not pinned to Langfuse v3")
    web = services.get("langfuse-web")
    if web:
        for key in ("LANGFUSE_INIT_ORG_ID", "LANGFUSE_INIT_PROJECT_ID", "LANGFUSE_INIT_PROJECT_PUBLIC_KEY", "LANGFUSE_INIT_PROJECT_SECRET_KEY"):
            if not _env(web).get(key):
                yield Violation(_obj("langfuse-web"), "upstream-requirements", f"{key} is not set: headless initialisation gives tests their API keys")


RULES: tuple[Rule[ComposeAssets], ...] = (
    Rule("matrix-services", "every service of the matrix, in its profile", check_matrix_services),
    Rule("healthcheck", "a healthcheck that asks the service", check_healthcheck),
    Rule("pinned-image", "a pinned, overridable image", check_pinned_image),
    Rule("resource-limits", "cpus and memory limits", check_resource_limits),
    Rule("loopback-ports", "ports published on 127.0.0.1", check_loopback_ports),
    Rule("restart-policy", "a restart policy", check_restart_policy),
    Rule("gpu-reservation", "vLLM: GPU reservation, shm, capped context, long start", check_gpu_reservation),
    Rule("vllm-cpu", "vLLM on the CPU: shm, capped context, /health, long start, no GPU", check_vllm_on_cpu),
    Rule("gpu-memory-split", "two vLLM models on one GPU split its memory", check_gpu_memory_split),
    Rule("depends-on", "depends_on as the dependency matrix says", check_depends_on),
    Rule("network-address", "the matrix's addresses on the swarm network", check_network_address),
    Rule("named-volumes", "state in the named volumes of the storage matrix", check_named_volumes),
    Rule("no-host-access", "not privileged, no Docker socket, host mounts only from compose/configs, read-only", check_host_access),
    Rule("env-documented", "every variable documented in .env.example", check_env_documented),
    Rule("no-secret-literal", "no secret written into the Compose file", check_no_secret_literal),
    Rule("upstream-requirements", "what Langfuse, ClickHouse, Redis and PostgreSQL require", check_upstream_requirements),
)
