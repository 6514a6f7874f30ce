"""Smoke: one test per service the assets define, so the report lists every service by name."""
from __future__ import annotations

import pytest

from swarm_checks import SwarmError, deployment_catalog


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "service_name" not in metafunc.fixturenames:
        return
    try:
        names = sorted(deployment_catalog(metafunc.config).services)
    except (SwarmError, pytest.UsageError) as error:
        raise pytest.UsageError(f"swarm: cannot read the services of the deployment: {error}") from None
    metafunc.parametrize("service_name", names)
