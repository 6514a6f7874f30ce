"""The plugin's options: one table, registered once, resolved with one precedence rule.

Each option can be given on the command line, through an environment variable or as an ini key
(pytest.ini / pyproject.toml / tox.ini). Precedence, highest first: command line, environment,
ini file, built-in default. Keeping the table in one place is what keeps ``--help``, README and
the resolution consistent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarm_checks.errors import SwarmUsageError

TARGET_NAMES = ("compose", "k8s", "external")


@dataclass(frozen=True)
class OptionSpec:
    """One option: its flag, ini key, environment variable, kind and help text."""

    flag: str
    dest: str
    env: str
    kind: str  # "str", "path", "list", "paths", "bool", "float"
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    must_exist: bool = True  # for path options: a named file that is missing is a usage error

    @property
    def ini(self) -> str:
        return f"swarm_{self.dest}"


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("--target", "target", "SWARM_TARGET", "str", "compose",
               "how the stack is reached: compose (stand it up with Docker Compose), "
               "k8s (a Helm release), external (an already running stack described by --endpoints)",
               choices=TARGET_NAMES),
    OptionSpec("--compose-file", "compose_file", "SWARM_COMPOSE_FILE", "path", "compose/docker-compose.yml",
               "the Compose file of the stack"),
    OptionSpec("--profile", "profiles", "SWARM_PROFILES", "list", (),
               "Compose profile to enable (repeatable; the environment variable takes a comma list). "
               "gpu or cpu is added from GPU detection when neither is given"),
    OptionSpec("--env-file", "env_files", "SWARM_ENV_FILE", "paths", (),
               "environment file for Compose (repeatable, later files win; the environment variable takes a "
               "comma list). Default: compose/.env, else compose/.env.example"),
    OptionSpec("--services", "services", "SWARM_SERVICES", "list", (),
               "deploy only these Compose services and what they depend on (repeatable or a comma list); "
               "default: every service of the active profiles"),
    OptionSpec("--host-ports", "host_ports", "SWARM_HOST_PORTS", "str", "random",
               "host ports of a stack the plugin starts: random (free ports, no clash with a running stack) "
               "or env (the *_PORT values of the env files)", choices=("random", "env")),
    OptionSpec("--namespace", "namespace", "SWARM_NAMESPACE", "str", "vllm-swarm",
               "Kubernetes namespace of the release"),
    OptionSpec("--release", "release", "SWARM_RELEASE", "str", "swarm", "Helm release name"),
    OptionSpec("--chart", "chart", "SWARM_CHART", "path", "helm", "the Helm chart directory"),
    OptionSpec("--kubeconfig", "kubeconfig", "KUBECONFIG", "path", None, "kubeconfig file"),
    OptionSpec("--kube-context", "kube_context", "SWARM_KUBE_CONTEXT", "str", None, "kubeconfig context"),
    OptionSpec("--values", "values", "SWARM_VALUES", "paths", (),
               "Helm values file (repeatable; the environment variable takes a comma list)"),
    OptionSpec("--endpoints", "endpoints", "SWARM_ENDPOINTS", "path", None,
               "YAML file mapping each service to its URL and credentials (the external target)"),
    OptionSpec("--keep-stack", "keep_stack", "SWARM_KEEP_STACK", "bool", False,
               "leave the stack running after the session (no teardown)"),
    OptionSpec("--reuse-stack", "reuse_stack", "SWARM_REUSE_STACK", "bool", False,
               "attach to an already running project: no up, no down"),
    OptionSpec("--pull", "pull", "SWARM_PULL", "str", "missing",
               "image pulls for a stack the plugin starts: missing (pull what is not local) or never "
               "(air-gapped: only local images)", choices=("missing", "never")),
    OptionSpec("--stack-timeout", "stack_timeout", "SWARM_STACK_TIMEOUT", "float", 900.0,
               "seconds to wait for every service to become ready"),
    OptionSpec("--log-dir", "log_dir", "SWARM_LOG_DIR", "path", None,
               "where service logs and the readiness record are written (default: beside the --html "
               "report, else reports/)", must_exist=False),
    OptionSpec("--contract-examples", "contract_examples", "SWARM_CONTRACT_EXAMPLES", "str", "5",
               "examples Hypothesis generates per property of suites/contracts (a whole number; each costs "
               "a request or two against the live stack)"),
)

_INI_TYPES = {"str": "string", "path": "string", "list": "args", "paths": "args", "bool": "bool", "float": "string"}


def register(parser: pytest.Parser) -> None:
    """Add every option to pytest's parser, under one group, with a matching ini key."""
    group = parser.getgroup("swarm", "vLLM Local Swarm (swarm_checks)")
    for spec in OPTIONS:
        suffix = f" [env {spec.env}, ini {spec.ini}; default: {_show_default(spec)}]"
        kwargs: dict[str, Any] = {"dest": f"swarm_{spec.dest}", "default": None, "help": spec.help + suffix}
        if spec.kind == "bool":
            kwargs["action"] = "store_true"
        elif spec.kind in ("list", "paths"):
            kwargs["action"] = "append"
        if spec.choices:
            kwargs["choices"] = spec.choices
        group.addoption(spec.flag, **kwargs)
        parser.addini(spec.ini, help=spec.help, type=_INI_TYPES[spec.kind], default=None)


def _show_default(spec: OptionSpec) -> str:
    if spec.default in (None, (), False):
        return "none" if spec.kind != "bool" else "off"
    return str(spec.default)


@dataclass(frozen=True)
class SwarmSettings:
    """The resolved options of one run; `explicit` names those the user set somewhere."""

    target: str
    compose_file: Path
    profiles: tuple[str, ...]
    env_files: tuple[Path, ...]
    services: tuple[str, ...]
    host_ports: str
    pull: str
    namespace: str
    release: str
    chart: Path
    kubeconfig: Path | None
    kube_context: str | None
    values: tuple[Path, ...]
    endpoints: Path | None
    keep_stack: bool
    reuse_stack: bool
    stack_timeout: float
    log_dir: Path | None
    rootdir: Path
    contract_examples: str = "5"
    explicit: frozenset[str] = field(default_factory=frozenset)

    def compose_env_files(self) -> tuple[Path, ...]:
        """The env files Compose reads: the chosen ones, else compose/.env, else .env.example."""
        if self.env_files:
            return self.env_files
        local = self.compose_file.parent / ".env"
        return (local if local.exists() else self.compose_file.parent / ".env.example",)


def _convert(spec: OptionSpec, raw: Any, base: Path, source: str) -> Any:
    """Turn a raw CLI/env/ini value into the option's type; bad values are usage errors."""
    where = {"cli": spec.flag, "env": f"environment variable {spec.env}", "ini": f"ini key {spec.ini}"}[source]
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise SwarmUsageError(f"{where}: expected true or false, got {raw!r}")
    if spec.kind == "float":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise SwarmUsageError(f"{where}: expected a number of seconds, got {raw!r}") from None
        if value <= 0:
            raise SwarmUsageError(f"{where}: must be greater than 0, got {raw!r}")
        return value
    if spec.kind in ("list", "paths"):
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
        flat = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
        if spec.kind == "paths":
            return tuple(_as_path(item, base) for item in flat)
        return tuple(dict.fromkeys(flat))
    if spec.kind == "path":
        return _as_path(str(raw), base)
    text = str(raw)
    if spec.choices and text not in spec.choices:
        raise SwarmUsageError(f"{where}: unknown {spec.dest.replace('_', ' ')} {text!r}; choose one of {', '.join(spec.choices)}")
    return text


def _as_path(text: str, base: Path) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path).resolve()


def resolve(config: pytest.Config, environ: dict[str, str] | None = None) -> SwarmSettings:
    """Resolve every option: command line, then environment, then ini, then default.

    Relative paths from the command line and the environment are taken from the current
    directory; those from the ini file and the defaults from pytest's rootdir.
    """
    env = os.environ if environ is None else environ
    rootdir = Path(config.rootpath)
    cwd = Path.cwd()
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for spec in OPTIONS:
        sources: list[tuple[str, Any, Path]] = [
            ("cli", config.getoption(f"swarm_{spec.dest}"), cwd),
            ("env", env.get(spec.env), cwd),
            ("ini", _ini(config, spec.ini), rootdir),
        ]
        for source, raw, base in sources:
            if raw not in (None, [], ""):
                values[spec.dest] = _convert(spec, raw, base, source)
                explicit.add(spec.dest)
                break
        else:
            default = spec.default
            values[spec.dest] = _as_path(default, rootdir) if spec.kind == "path" and default else default
    if values["keep_stack"] and values["reuse_stack"]:
        # Reuse already implies "do not tear down": both together signal a misunderstanding.
        raise SwarmUsageError("--keep-stack and --reuse-stack exclude each other: --reuse-stack never tears down")
    return SwarmSettings(rootdir=rootdir, explicit=frozenset(explicit), **values)


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:
        return None


def validate_explicit_files(settings: SwarmSettings) -> None:
    """Files the user named must exist: checked at start-up so the error comes first and once."""
    for spec in OPTIONS:
        if spec.kind != "path" or spec.dest not in settings.explicit or not spec.must_exist:
            continue
        path, flag = getattr(settings, spec.dest), spec.flag
        if path is not None and not path.exists():
            raise SwarmUsageError(f"{flag}: {path} does not exist; pass the path of an existing file")
    for spec in OPTIONS:
        if spec.kind != "paths":
            continue
        for path in getattr(settings, spec.dest):
            if not path.exists():
                raise SwarmUsageError(f"{spec.flag}: {path} does not exist; pass the path of an existing file")
