"""The plugin's fixtures: a small surface, overridable like pytest-docker's.

swarm_settings   the resolved options (SwarmSettings)
swarm_target     the target, stood up for the session and torn down after it
swarm_catalog    the services of the deployment (Catalog)
swarm_endpoint   a function: service name -> Endpoint (skips when the service is not deployed)
swarm_probes     service kind -> readiness probe (extend it to cover a new kind of service)
swarm_load       runs loads (swarm_checks.load) and puts their tables and charts into the report
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

import pytest

from swarm_checks.catalog import Catalog
from swarm_checks.errors import SwarmError, fail
from swarm_checks.options import SwarmSettings
from swarm_checks.probes import Probe, default_probes
from swarm_checks.stash import LOAD_RECORDER, USED_SERVICES, swarm_run
from swarm_checks.endpoint import Endpoint
from swarm_checks.targets.base import Target

@pytest.fixture(scope="session")
def swarm_settings(pytestconfig: pytest.Config) -> SwarmSettings:
    """The run's resolved options."""
    return swarm_run(pytestconfig).settings


@pytest.fixture(scope="session")
def swarm_target(request: pytest.FixtureRequest, swarm_settings: SwarmSettings,
                 swarm_probes: Mapping[str, Probe]) -> Iterator[Target]:
    """The stack for this session, built from `swarm_settings` and `swarm_probes` (override
    either in a conftest.py): `up` before the first test that needs it.

    With pytest-xdist every worker attaches to one stack. One owner tears it down at the end of
    the run (the xdist controller, or the only process; see SwarmRun.finish); a failed `up`
    removes what it created itself; --keep-stack and --reuse-stack skip the teardown.
    """
    run = swarm_run(request.config)
    try:
        target = run.use(swarm_settings, swarm_probes)
    except (SwarmError, pytest.UsageError) as error:
        fail(str(error))
    run.guard_sigterm()
    try:
        target.up()
    except SwarmError as error:
        run.setup_error = error
        fail(f"the stack did not come up: {error}")
    yield target


@pytest.fixture(scope="session")
def swarm_probes() -> Mapping[str, Probe]:
    """Service kind -> its probe (`Endpoint -> str`, raising while the service is not ready).

    Override it in a conftest.py to cover a kind the package does not know, e.g.
    `return {**default_probes(), "my-kind": probe_my_kind}`; the target waits on the same
    mapping, so the new kind gates readiness too.
    """
    return default_probes()


@pytest.fixture(scope="session")
def swarm_catalog(pytestconfig: pytest.Config, swarm_settings: SwarmSettings,
                  swarm_probes: Mapping[str, Probe]) -> Catalog:
    """The services the deployment defines and which of them are deployed (the stack is not
    stood up for this: it is read from the assets or the endpoints file)."""
    try:
        return swarm_run(pytestconfig).use(swarm_settings, swarm_probes).catalog()
    except (SwarmError, pytest.UsageError) as error:
        fail(str(error))


@pytest.fixture
def swarm_endpoint(swarm_target: Target, request: pytest.FixtureRequest) -> Callable[[str], Endpoint]:
    """Look up a deployed service's endpoint; a service that is not deployed skips the test."""
    used = request.node.stash.setdefault(USED_SERVICES, set())

    def lookup(service: str) -> Endpoint:
        catalog = swarm_target.catalog()
        if service not in catalog.active:
            pytest.skip(f"service {service!r} is not deployed: {catalog.how_to_enable(service)}")
        used.add(service)
        try:
            return swarm_target.endpoint(service)
        except SwarmError as error:
            fail(str(error))

    return lookup


@pytest.fixture
def swarm_load(swarm_target: Target, request: pytest.FixtureRequest):  # -> LoadRecorder
    """Run loads from a test: `swarm_load.run(endpoint, Workload(...), LoadSpec(...), "label")`.
    Results go to <log dir>/load/*.json and into the test's HTML report entry."""
    from swarm_checks.load_recording import LoadRecorder

    run = swarm_run(request.config)
    recorder = LoadRecorder(request.node, run.context.log_dir / "load", swarm_target.has_gpu())
    request.node.stash[LOAD_RECORDER] = recorder
    return recorder
