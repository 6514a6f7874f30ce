"""Fixtures of the integration suite: commands inside services, faults that skip where the target
cannot inject them, the second proxy replica, the stack's health after each fault, and the
faults table (printed at the end and written to <log dir>/integration-faults.json).

Flows run in file order except that the cache (flow 2, which starts the second proxy replica)
comes first (RUN_ORDER): the agents of flow 1 then meet the limited key's window that the
replica's start opened, and the 429s they honour last what is left of that minute. The faults
(flows 3, 4, 8) come after both. Each fault test restores what it broke in a `finally` and waits
for the whole stack (stack_healthy), so a failing test leaves a healthy stack for the next.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
import pytest

from swarm_checks import Catalog, Endpoint, ExecResult, SwarmSettings, Target, TargetCapabilityError

from integration_faults import FaultRecord, back_on_redis
from integration_proxy import Replica, start_replica
from integration_stack import ExecFn, alive_ray_nodes, in_stack_url, postgres_ready, redis_ready, wait_until

FAULTS = pytest.StashKey[list]()
BACKUPS = pytest.StashKey[list]()
STACK_HEALTHY_LIMIT = 240.0


RUN_ORDER = ("test_02_cache_in_redis.py",)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FAULTS] = []
    config.stash[BACKUPS] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Sort this suite's tests by RUN_ORDER (stable: the rest keep their file order, after them)."""
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        if Path(str(item.fspath)).parent != here:
            return -1
        name = f"{Path(str(item.fspath)).name}::{item.name}"
        return next((i for i, prefix in enumerate(RUN_ORDER) if name.startswith(prefix)), len(RUN_ORDER))

    ranked = [item for item in items if rank(item) >= 0]
    if ranked:
        positions = [i for i, item in enumerate(items) if rank(item) >= 0]
        for position, item in zip(positions, sorted(ranked, key=rank)):
            items[position] = item


@pytest.fixture(scope="session")
def nonce() -> str:
    """Names this run's data, so a rerun on a kept stack never meets an earlier run's."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def run_in(swarm_target: Target) -> ExecFn:
    """`run_in(service, argv) -> ExecResult` inside a service; skips where the target cannot."""

    def run(service: str, argv: Sequence[str]) -> ExecResult:
        try:
            return swarm_target.exec(service, list(argv))
        except TargetCapabilityError as error:
            pytest.skip(f"needs commands inside {service}: {error}")

    return run


@pytest.fixture
def inject(swarm_target: Target) -> Callable[[str, str], None]:
    """`inject(service, action)`: stop, start, restart or kill. Asking for it skips the test up
    front where the target cannot inject faults (the external target: the stack is someone else's);
    `start` of a running service is the harmless probe of that."""
    probe = next(iter(sorted(swarm_target.catalog().active)), "")
    try:
        swarm_target.fault(probe, "start")
    except TargetCapabilityError as error:
        pytest.skip(f"fault injection: {error}")
    return swarm_target.fault


@pytest.fixture(scope="session")
def deployed(swarm_catalog: Catalog) -> Callable[[str], str]:
    """kind -> the name of the deployed service of that kind (skips naming how to deploy one)."""

    def name_of(kind: str) -> str:
        services = swarm_catalog.of_kind(kind)
        if not services:
            pytest.skip(swarm_catalog.why_none_of_kind(kind))
        return services[0].name

    return name_of


@pytest.fixture(scope="session")
def proxy(swarm_target: Target, deployed: Callable[[str], str]) -> Endpoint:
    """The proxy's published endpoint (the proxy itself is never faulted: its port stays)."""
    return swarm_target.endpoint(deployed("proxy"))


@pytest.fixture(scope="session")
def model(swarm_catalog: Catalog, proxy: Endpoint) -> str:
    primary = swarm_catalog.primary_llm()
    name = (primary.model if primary else None) or proxy.model
    if not name:
        pytest.skip("no primary LLM model is named in the assets (label swarm.model)")
    return name


@pytest.fixture(scope="session")
def proxy_in_stack(swarm_target: Target, swarm_catalog: Catalog, proxy: Endpoint) -> str:
    url = in_stack_url(swarm_target.name, swarm_catalog, proxy)
    if url is None:
        pytest.skip(f"the in-stack address of {proxy.service} is unknown on target {swarm_target.name}: "
                    "give it as `extra: {in_stack_url: ...}` in the endpoints file")
    return url


@pytest.fixture(scope="session")
def replica(run_in: ExecFn, proxy: Endpoint, proxy_in_stack: str, model: str) -> Iterator[Replica]:
    """A second proxy process beside the first, on the same Redis (see integration_proxy)."""
    second = start_replica(run_in, proxy.service, proxy_in_stack, model)
    try:
        yield second
    finally:
        second.stop()


@pytest.fixture(scope="session")
def expected_ray_nodes(swarm_catalog: Catalog) -> int:
    """1 head + the workers the stack asks for (the head's swarm.ray-workers label, RAY_WORKERS)."""
    heads = swarm_catalog.of_kind("ray-head")
    if not heads:
        return 0
    workers = int(heads[0].labels.get("swarm.ray-workers", "0")) if swarm_catalog.of_kind("ray-worker") else 0
    return 1 + workers


def proxy_ready(proxy: Endpoint) -> httpx.Response:
    return httpx.get(proxy.root_url + "/ready", timeout=10)


@pytest.fixture(scope="session")
def stack_healthy(swarm_target: Target, swarm_catalog: Catalog, run_in: ExecFn,
                  expected_ray_nodes: int) -> Callable[[float], float]:
    """Wait until every deployed part answers again, seen from inside the stack where a restart
    may have moved a published port: Redis, PostgreSQL, the Ray cluster's alive nodes, and the
    proxy's /ready and its use of Redis (after a Redis restart the proxy bypasses its cache and
    keeps limits in-process until it tries Redis again, at most 2 s after its last failure; 30 s
    before the reconnect fix of issue 14)."""

    def first(kind: str) -> str | None:
        services = swarm_catalog.of_kind(kind)
        return services[0].name if services else None

    def wait(limit: float = STACK_HEALTHY_LIMIT) -> float:
        started = time.monotonic()
        left = lambda: max(1.0, limit - (time.monotonic() - started))  # noqa: E731
        if redis := first("redis"):
            wait_until(lambda: redis_ready(run_in, redis), left(), "Redis to answer PING")
        if postgres := first("postgres"):
            wait_until(lambda: postgres_ready(run_in, postgres), left(), "PostgreSQL to accept connections")
        if expected_ray_nodes and (head := first("ray-head")):
            wait_until(lambda: len(alive_ray_nodes(run_in, head)) >= expected_ray_nodes, left(),
                       f"{expected_ray_nodes} alive Ray nodes")
        if proxy_name := first("proxy"):
            proxy = swarm_target.endpoint(proxy_name)
            wait_until(lambda: proxy_ready(proxy).status_code == 200, left(), "the proxy's /ready to answer 200")
            primary = swarm_catalog.primary_llm()
            model = (primary.model if primary else None) or proxy.model
            if redis and model:
                wait_until(lambda: back_on_redis(proxy, model), left(), "the proxy to use Redis again", interval=2.0)
        return time.monotonic() - started

    return wait


@pytest.fixture
def record_fault(request: pytest.FixtureRequest) -> Callable[[FaultRecord], None]:
    """Add a row to the faults table (and print it, so -s shows it as it happens)."""

    def add(row: FaultRecord) -> None:
        request.config.stash[FAULTS].append(row)
        print(f"fault {row.service} {row.action}: detect {row.detect_s} s, recover {row.recover_s} s, {row.note}")

    return add


@pytest.fixture
def record_backup(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the "backup and restore" section of the terminal summary."""

    def add(line: str) -> None:
        request.config.stash[BACKUPS].append(line)
        print(line)

    return add


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    backups: list[str] = config.stash.get(BACKUPS, [])
    if backups:
        terminalreporter.section("integration: backup and restore")
        for line in backups:
            terminalreporter.write_line(line)
    rows: list[FaultRecord] = config.stash.get(FAULTS, [])
    if not rows:
        return
    terminalreporter.section("integration: faults, time to detect and to recover (s)")
    terminalreporter.write_line(f"{'service':<12} {'action':<22} {'detect':>7} {'limit':>6} {'recover':>8} {'limit':>6}  "
                                f"{'answered/sent':>13}  detected by / errors")
    for row in rows:
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(row.errors.items()))
        terminalreporter.write_line(
            f"{row.service:<12} {row.action:<22} {_fmt(row.detect_s):>7} {row.detect_limit_s:>6.0f} {_fmt(row.recover_s):>8} "
            f"{row.recover_limit_s:>6.0f}  {row.answered:>6}/{row.requests:<6}  {row.detected_by}; {errors or 'no errors'}")
    try:
        settings: SwarmSettings | None = getattr(config, "_swarm_integration_settings", None)
        base = Path(settings.log_dir) if settings and settings.log_dir else Path(str(config.rootpath)) / "reports" / "swarm-logs"
        base.mkdir(parents=True, exist_ok=True)
        path = base / "integration-faults.json"
        path.write_text(json.dumps([row.as_json() for row in rows], indent=2))
        terminalreporter.write_line(f"written to {path}")
    except OSError as error:
        terminalreporter.write_line(f"(faults table not written: {error})")


@pytest.fixture(scope="session", autouse=True)
def _remember_settings(pytestconfig: pytest.Config, swarm_settings: SwarmSettings) -> None:
    """Where the faults table goes: the run's log dir (the terminal summary has no fixtures)."""
    pytestconfig._swarm_integration_settings = swarm_settings  # type: ignore[attr-defined]
