"""Helpers shared by the live suites (smoke, health, ...): endpoints by kind, the primary LLM.

Everything here goes through the plugin's fixtures, so a service that is not deployed skips
with a reason naming it and how to enable it.
"""
from __future__ import annotations

import importlib.metadata
import re
from typing import Any, Callable, Generator

import pytest

from swarm_checks import Catalog, Endpoint, Service


def _extras_providing(module: str) -> list[str]:
    """The extras of swarm-checks whose requirements install `module` (by its distribution name)."""
    try:
        requires = importlib.metadata.distribution("swarm-checks").requires or []
    except importlib.metadata.PackageNotFoundError:
        return []
    wanted = re.sub(r"[-_.]+", "-", module).lower()
    found = []
    for requirement in requires:
        match = re.match(r"([A-Za-z0-9_.-]+).*extra == \"([^\"]+)\"", requirement)
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() == wanted and match.group(2) not in found:
            found.append(match.group(2))
    return found


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    """A suite module that cannot be collected for a reason the user fixes outside the code (a
    client of an extra that is not installed, no Compose v2, a missing file) is reported in one
    line saying what to do, instead of a traceback through pytest's collection."""
    report = yield
    if not (report.failed and isinstance(collector, pytest.Module)):
        return report
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    missing = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", text)
    usage = re.match(r"(?:pytest\.UsageError|swarm_checks\.errors\.\w+): (.*)", text, re.S)
    extras = _extras_providing(missing.group(1).split(".")[0]) if missing else []
    if missing and extras:
        # A module of several extras: the one the suite is named after first (load, not proxy).
        extras.sort(key=lambda extra: extra not in collector.path.parts)
        report.longrepr = (f"this suite needs {missing.group(1)}, which is not installed: "
                           + " or ".join(f"pip install 'swarm-checks[{extra}]'" for extra in extras))
    elif usage:
        report.longrepr = usage.group(1).strip()
    return report


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
