"""The external target: a stack someone else runs, described by an endpoints file.

Nothing is started or stopped. The file maps each service to its URL and credentials::

    gpu: false                      # optional: whether the LLM engine runs on a GPU
    services:
      redis:
        url: redis://127.0.0.1:6379/0
        password: ${REDIS_PASSWORD} # ${VAR} is read from the environment, never stored
      llm-cpu:
        url: http://127.0.0.1:8000/v1
      my-extra-llm:
        kind: llm                   # required for a name the Compose file does not define
        url: http://10.0.0.5:8000/v1
        model: my-model

Service names are those of the Compose file (their kind and model come from its labels); any
other name must say its `kind`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from swarm_checks.catalog import Catalog, Service, load_compose_catalog
from swarm_checks.errors import SwarmError, SwarmUsageError, TargetCapabilityError
from swarm_checks.options import SwarmSettings
from swarm_checks.shared_state import RunContext
from swarm_checks.endpoint import Endpoint
from swarm_checks.probes import Probe
from swarm_checks.targets.base import ExecResult, StackSummary

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FIELDS = {"url", "kind", "model", "username", "password", "api_key", "extra"}


def _expand(value: str, where: str, environ: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SwarmUsageError(f"{where}: environment variable {name} is not set; export it or write the value")
        return environ[name]

    return _VARIABLE.sub(substitute, value)


def parse_endpoints(path: Path, known: Mapping[str, Service], environ: Mapping[str, str] | None = None) -> tuple[dict[str, Endpoint], bool]:
    """Read and check an endpoints file; every problem is a one-line usage error."""
    env = os.environ if environ is None else environ
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SwarmUsageError(f"--endpoints: {path} does not exist; pass the path of an endpoints file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SwarmUsageError(f"endpoints file {path}: not valid YAML{where}; see README, 'external target'") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict) or not document["services"]:
        raise SwarmUsageError(f"endpoints file {path}: expected a mapping with a non-empty 'services:' mapping of name -> {{url: ...}}")
    endpoints: dict[str, Endpoint] = {}
    for name, entry in document["services"].items():
        where = f"endpoints file {path}: service {name!r}"
        if not isinstance(entry, dict):
            raise SwarmUsageError(f"{where}: expected a mapping with at least 'url'")
        unknown_fields = set(entry) - _FIELDS
        if unknown_fields:
            raise SwarmUsageError(f"{where}: unknown field(s) {', '.join(sorted(unknown_fields))}; allowed: {', '.join(sorted(_FIELDS))}")
        if not isinstance(entry.get("url"), str) or "://" not in entry["url"]:
            raise SwarmUsageError(f"{where}: 'url' must be a URL such as http://127.0.0.1:8000")
        service = known.get(name)
        kind = entry.get("kind") or (service.kind if service else None)
        if kind is None:
            names = ", ".join(sorted(known)) or "none"
            raise SwarmUsageError(f"{where}: unknown service; use a name from the Compose file ({names}) or give its 'kind'")
        text = {key: _expand(str(value), where, env) for key, value in entry.items() if key not in ("extra",) and value is not None}
        extra = {str(k): _expand(str(v), where, env) for k, v in (entry.get("extra") or {}).items()}
        endpoints[name] = Endpoint(
            service=name, kind=kind, url=text["url"], username=text.get("username"),
            password=text.get("password"), api_key=text.get("api_key"),
            model=text.get("model") or (service.model if service else None), extra=extra,
        )
    gpu = document.get("gpu", False)
    if not isinstance(gpu, bool):
        raise SwarmUsageError(f"endpoints file {path}: 'gpu' must be true or false")
    return endpoints, gpu


class ExternalTarget:
    """Attach to a running stack through the endpoints file; never starts or stops anything."""

    name = "external"

    def __init__(self, settings: SwarmSettings, context: RunContext | None = None,
                 probes: Mapping[str, Probe] | None = None) -> None:
        if settings.endpoints is None:
            raise SwarmUsageError("--target=external needs --endpoints FILE (a YAML file of service URLs; see README)")
        self._settings = settings
        known = self._compose_services()
        self._endpoints, self._gpu = parse_endpoints(settings.endpoints, known)
        services = {
            name: known.get(name) or Service(name=name, kind=ep.kind, model=ep.model)
            for name, ep in self._endpoints.items()
        }
        self._catalog = Catalog(
            services={**known, **services}, active=frozenset(self._endpoints),
            source=str(settings.endpoints), enable_hint=f"add it to the endpoints file {settings.endpoints}", profiles_apply=False,
        )

    def _compose_services(self) -> dict[str, Service]:
        """Kinds and models of the Compose file's services, so the file can stay short."""
        compose_file = self._settings.compose_file
        if not compose_file.exists():
            return {}
        try:
            return dict(load_compose_catalog(compose_file, self._settings.compose_env_files(), ()).services)
        except SwarmError:
            return {}

    def up(self) -> None:
        """Nothing to start: the stack is someone else's."""

    def down(self) -> None:
        """Nothing to stop: the stack is someone else's."""

    def catalog(self) -> Catalog:
        return self._catalog

    def endpoint(self, service: str) -> Endpoint:
        try:
            return self._endpoints[service]
        except KeyError:
            raise SwarmError(f"service {service!r} is not in the endpoints file {self._settings.endpoints}") from None

    def logs(self, service: str, tail: int | None = None) -> str:
        raise TargetCapabilityError("the external target cannot read service logs; read them where the stack runs")

    def exec(self, service: str, command: Sequence[str]) -> ExecResult:
        raise TargetCapabilityError("the external target cannot run commands inside services")

    def fault(self, service: str, action: str) -> None:
        raise TargetCapabilityError(f"the external target cannot {action} {service}: the stack is someone else's; "
                                    "run fault tests with --target=compose")

    def summary(self) -> StackSummary | None:
        return StackSummary(self.name, str(self._settings.endpoints), "attached", what="endpoints file")

    def has_gpu(self) -> bool:
        return self._gpu
