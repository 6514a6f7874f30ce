"""Helpers shared by the live suites (smoke, health, ...): endpoints by kind, the primary LLM.

Everything here goes through the plugin's fixtures, so a service that is not deployed skips
with a reason naming it and how to enable it.
"""
from __future__ import annotations

from typing import Callable

import pytest

from swarm_checks import Catalog, Endpoint, Service


@pytest.fixture
def endpoint_of_kind(swarm_catalog: Catalog, swarm_endpoint: Callable[[str], Endpoint]) -> Callable[[str], Endpoint]:
    """kind -> the Endpoint of the first deployed service of that kind (skips when there is none)."""

    def lookup(kind: str) -> Endpoint:
        services = swarm_catalog.of_kind(kind)
        if not services:
            pytest.skip(swarm_catalog.why_none_of_kind(kind))
        return swarm_endpoint(services[0].name)

    return lookup


@pytest.fixture
def primary_llm(swarm_catalog: Catalog, swarm_endpoint: Callable[[str], Endpoint]) -> Endpoint:
    """The engine of the primary LLM slot (vllm-phi on a GPU, llm-cpu without one)."""
    service: Service | None = swarm_catalog.primary_llm()
    if service is None:
        pytest.skip(swarm_catalog.why_none_of_kind("llm") + "; the primary slot is vllm-phi (--profile gpu) "
                    "or llm-cpu (--profile cpu)")
    return swarm_endpoint(service.name)
