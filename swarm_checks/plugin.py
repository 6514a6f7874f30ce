"""pytest entry point of swarm_checks: options, markers, hooks. Thin: it delegates."""
from __future__ import annotations

import pytest

from swarm_checks import markers, options, targets
from swarm_checks.errors import SwarmError, fail
from swarm_checks.fixtures import SWARM_RUN, swarm_catalog, swarm_endpoint, swarm_run, swarm_settings, swarm_target
from swarm_checks.session import SwarmRun

__all__ = ["swarm_catalog", "swarm_endpoint", "swarm_settings", "swarm_target"]


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, line in markers.MARKERS.items():
        config.addinivalue_line("markers", line)
    settings = options.resolve(config)
    options.validate_explicit_files(settings)
    run = SwarmRun(settings)
    config.stash[SWARM_RUN] = run
    if "target" in settings.explicit:
        targets.check_available(settings.target)
        if settings.target == "external":
            # Cheap and local: a bad endpoints file is reported once, before collection.
            try:
                run.target()
            except SwarmError as error:
                raise pytest.UsageError(str(error)) from None


def pytest_report_header(config: pytest.Config) -> str:
    settings = swarm_run(config).settings
    profiles = ",".join(settings.profiles) or "auto"
    return f"swarm: target={settings.target} compose_file={settings.compose_file} profiles={profiles}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Test ids carry the target, as in pytest-testinfra: test_x[compose], test_x[external]."""
    if "swarm_target" in metafunc.fixturenames:
        name = swarm_run(metafunc.config).target_name
        metafunc.parametrize("swarm_target", [name], ids=[name], indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not markers.uses_markers(item):
        return
    try:
        reason = markers.skip_reason(item, swarm_run(item.config))
    except (SwarmError, pytest.UsageError) as error:
        fail(str(error))
    if reason:
        pytest.skip(reason)
