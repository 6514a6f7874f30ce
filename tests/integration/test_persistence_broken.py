"""Flow 3 (data survives a restart), its path broken: the suite's checks against Redis and
PostgreSQL containers of the image set whose data lies on a volume (they pass) and on tmpfs, as
when the volume is removed from the service (they fail, saying the data is not on a volume)."""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from integration_state import check_postgres_survives, check_redis_survives
from tests.docker_helpers import Container, docker_unavailable
from tests.integration.conftest import docker_exec

REDIS_IMAGE = "vllm-swarm/redis:7.0-bookworm"
POSTGRES_IMAGE = "vllm-swarm/postgres:17-trixie"
PASSWORD = "persistence-test-password"
WHY_NOT = docker_unavailable([REDIS_IMAGE, POSTGRES_IMAGE])
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"persistence checks: {WHY_NOT}")

# tmpfs as root's (PostgreSQL's entrypoint chowns it) or the redis user's (uid 100 in the image
# set's Redis image, which runs as that user; Docker here ignores tmpfs `mode`).
DATA = {"volume": ["-v", "{path}"], "tmpfs": ["--tmpfs", "{path}{owner}"]}


def _redis(storage: str) -> Container:
    return Container(REDIS_IMAGE, 6379, args=["redis-server", "--requirepass", PASSWORD, "--appendonly", "yes"],
                     env={"REDISCLI_AUTH": PASSWORD},
                     run_options=[o.format(path="/data", owner=":uid=100,gid=101") for o in DATA[storage]])


def _postgres(storage: str) -> Container:
    return Container(POSTGRES_IMAGE, 5432, env={"POSTGRES_PASSWORD": PASSWORD, "POSTGRES_USER": "swarm", "POSTGRES_DB": "swarm"},
                     run_options=[o.format(path="/var/lib/postgresql/data", owner="") for o in DATA[storage]])


@pytest.fixture(params=["volume", "tmpfs"])
def redis_box(request: pytest.FixtureRequest) -> Iterator[tuple[str, Container]]:
    container = _redis(request.param)
    try:
        yield request.param, container
    finally:
        container.remove()


@pytest.fixture(params=["volume", "tmpfs"])
def postgres_box(request: pytest.FixtureRequest) -> Iterator[tuple[str, Container]]:
    container = _postgres(request.param)
    try:
        yield request.param, container
    finally:
        container.remove()


def test_redis_check_passes_on_a_volume_and_fails_on_tmpfs(redis_box: tuple[str, Container]) -> None:
    storage, container = redis_box
    run = docker_exec(container.id)
    check = lambda: check_redis_survives(run, lambda: container.docker("restart"), f"persist-{uuid.uuid4().hex}")  # noqa: E731
    from integration_stack import redis_ready, wait_until

    wait_until(lambda: redis_ready(run), 60, "the test's Redis to start")
    if storage == "volume":
        check()
    else:
        with pytest.raises(AssertionError, match="lost a key across a restart: its data is not on a volume"):
            check()


def test_postgres_check_passes_on_a_volume_and_fails_on_tmpfs(postgres_box: tuple[str, Container]) -> None:
    storage, container = postgres_box
    run = docker_exec(container.id)
    from integration_stack import postgres_ready, wait_until

    wait_until(lambda: postgres_ready(run), 120, "the test's PostgreSQL to start")
    check = lambda: check_postgres_survives(run, lambda: container.docker("restart"), f"persist_{uuid.uuid4().hex[:8]}")  # noqa: E731
    if storage == "volume":
        check()
    else:
        with pytest.raises(AssertionError, match="lost rows across a restart .* its data directory is not on a volume"):
            check()
