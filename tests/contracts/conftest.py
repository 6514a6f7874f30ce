"""The contract checks against deliberately broken endpoints: the session's real CPU engine
behind wrappers (tests/live_parts.py's `llm`), Redis and PostgreSQL containers of the image set,
scripted doubles (tests/contracts/doubles.py)."""
from __future__ import annotations

import pytest

from tests.docker_helpers import REDIS_IMAGE, docker_unavailable
from tests.live_parts import mark_live

POSTGRES_IMAGE = "vllm-swarm/postgres:17-trixie"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups, also when tests/contracts is named alone
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using the engine skip without Docker and run on the worker that holds it; so do
    those that start containers of their own (they share the machine's two cores with it)."""
    mark_live(items, "contracts", "contract tests")
    for item in items:
        if "containers" in getattr(item, "fixturenames", ()) and "tests/contracts/" in str(item.fspath):
            item.add_marker(pytest.mark.xdist_group("docker"))


@pytest.fixture(scope="session")
def docker_ready() -> None:
    why = docker_unavailable([REDIS_IMAGE, POSTGRES_IMAGE])
    if why:
        pytest.skip(f"contract tests with containers: {why}")

