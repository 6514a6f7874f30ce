"""Smoke: one test per service the assets define, so the report lists every service by name."""
from __future__ import annotations

import pytest

from swarm_checks.errors import SwarmError
from swarm_checks.fixtures import swarm_run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "service_name" not in metafunc.fixturenames:
        return
    try:
        names = sorted(swarm_run(metafunc.config).catalog().services)
    except (SwarmError, pytest.UsageError) as error:
        raise pytest.UsageError(f"swarm: cannot read the services of the deployment: {error}") from None
    metafunc.parametrize("service_name", names)
