"""The plugin's markers and the skip reasons they produce from the discovered topology.

A requirement that is not met skips the test with a reason naming what is missing and how to
enable it; it never passes silently.
"""
from __future__ import annotations

from typing import Callable, Protocol

import pytest

from swarm_checks.catalog import Catalog

MARKERS: dict[str, str] = {
    "requires_service": "requires_service(*names): skip unless every named service is deployed",
    "requires_profile": "requires_profile(*names): skip unless every named Compose profile is active",
    "requires_gpu": "requires_gpu: skip unless the LLM engine runs on an NVIDIA GPU",
    "target": "target(*names): run only when --target is one of the names",
}


class Topology(Protocol):
    """What marker evaluation needs to know about the run."""

    target_name: str

    def catalog(self) -> Catalog: ...

    def has_gpu(self) -> bool: ...



def _names(marker: pytest.Mark, marker_name: str) -> tuple[str, ...]:
    names = tuple(str(arg) for arg in marker.args)
    if not names:
        raise pytest.UsageError(f"@pytest.mark.{marker_name} needs at least one name")
    return names


def _target_reason(item: pytest.Item, topology: Topology) -> str | None:
    for marker in item.iter_markers("target"):
        wanted = _names(marker, "target")
        if topology.target_name not in wanted:
            return f"runs only with --target={' or --target='.join(wanted)}; this run uses --target={topology.target_name}"
    return None


def _gpu_reason(item: pytest.Item, topology: Topology) -> str | None:
    if item.get_closest_marker("requires_gpu") and not topology.has_gpu():
        return ("no GPU: the LLM engine of this deployment does not run on an NVIDIA GPU; run on a GPU host "
                "with --profile gpu (compose) or set `gpu: true` in the endpoints file (external)")
    return None


def _service_reason(item: pytest.Item, topology: Topology) -> str | None:
    for marker in item.iter_markers("requires_service"):
        catalog = topology.catalog()
        for name in _names(marker, "requires_service"):
            if name not in catalog.active:
                return f"service {name!r} is not deployed: {catalog.how_to_enable(name)}"
    return None


def _profile_reason(item: pytest.Item, topology: Topology) -> str | None:
    for marker in item.iter_markers("requires_profile"):
        catalog = topology.catalog()
        active_profiles = set(catalog.profiles) | {p for n in catalog.active for p in catalog.services[n].profiles}
        for name in _names(marker, "requires_profile"):
            if name not in active_profiles:
                return f"Compose profile {name!r} is not active: enable it with --profile {name}"
    return None


# Cheapest first: the target check needs no discovery at all.
_CHECKS: tuple[Callable[[pytest.Item, Topology], str | None], ...] = (
    _target_reason, _gpu_reason, _service_reason, _profile_reason,
)


def uses_markers(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in MARKERS)


def skip_reason(item: pytest.Item, topology: Topology) -> str | None:
    """The first unmet requirement of the item, worded as a skip reason, or None."""
    for check in _CHECKS:
        reason = check(item, topology)
        if reason:
            return reason
    return None
