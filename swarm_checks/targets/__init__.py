"""Target registry: a name maps to the module that implements it, imported only when chosen.

As in pytest-testinfra, each backend lives in its own file and costs nothing until used.
"""
from __future__ import annotations

import importlib
from typing import Callable, Mapping

from swarm_checks.errors import SwarmUsageError
from swarm_checks.options import SwarmSettings
from swarm_checks.probes import Probe
from swarm_checks.shared_state import RunContext
from swarm_checks.targets.base import Target

# name -> "module:factory", or the reason the target is not available in this version.
REGISTRY: dict[str, str] = {
    "compose": "swarm_checks.targets.compose:ComposeTarget",
    "external": "swarm_checks.targets.external:ExternalTarget",
}
NOT_YET: dict[str, str] = {
    "k8s": "the k8s target is not implemented in this version of swarm_checks; "
           "port-forward the release's Services and use --target=external --endpoints FILE",
}


def check_available(name: str) -> None:
    """A usage error when the named target does not exist or is not implemented yet."""
    if name in REGISTRY:
        return
    if name in NOT_YET:
        raise SwarmUsageError(f"--target={name}: {NOT_YET[name]}")
    raise SwarmUsageError(f"--target={name}: unknown target; choose one of {', '.join(sorted({*REGISTRY, *NOT_YET}))}")


def create(settings: SwarmSettings, context: RunContext, probes: Mapping[str, Probe] | None = None) -> Target:
    """Import the chosen backend and build it from the run's settings, context and probes."""
    check_available(settings.target)
    module_name, factory_name = REGISTRY[settings.target].split(":")
    factory: Callable[..., Target] = getattr(importlib.import_module(module_name), factory_name)
    return factory(settings, context, probes)
