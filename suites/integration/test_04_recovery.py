"""Flow 4: recovery. Each live service fails in turn while a bounded load runs through the proxy.

During the outage the proxy answers (in OpenAI's error shape where it cannot serve: never a hang,
never a 500), `/ready` names what is down, and everything is back within the stated limit once
the service is. The faults: the LLM engine stopped and started again (the suite's one engine
restart), Redis stopped and started, a Ray worker's raylet killed (its container's restart
policy brings it back), PostgreSQL stopped and started. Redis and PostgreSQL must also keep
what was written before their stop (flow 3's persistence check, on the same restart). Time to detect runs from the fault to
the first sign of it; time to recover from the service's start (from the kill, for the worker
its restart policy revives) to the stack answering as before. Both go into the faults table.
"""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from swarm_checks import Catalog, Endpoint, Target

from integration_faults import Outage, answers, back_on_redis, observe, ready_problems
from integration_state import postgres_marker, redis_marker
from integration_stack import ExecFn, alive_ray_nodes, postgres_ready, psql, reachable_from

LLM_RECOVER_LIMIT = 180.0
# The proxy tries Redis again 30 s after it last failed, and its first call after the restart can
# fail on a dead pooled connection (another 30 s): 31-56 s measured; the limit keeps 2.5x of that.
REDIS_RECOVER_LIMIT = 150.0
RAY_RECOVER_LIMIT = 150.0
PG_RECOVER_LIMIT = 90.0
_KILL_RAYLET = r'''
import os, signal
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv0 = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
    except OSError:
        continue
    if argv0.endswith(b"/raylet"):
        os.kill(int(pid), signal.SIGKILL)
        print("killed raylet", pid)
'''
_OWN_ADDRESS = "import socket; print(socket.gethostbyname(socket.gethostname()))"


@pytest.fixture
def recovering(inject, stack_healthy) -> Iterator[Callable[[str], None]]:
    """Whatever happens in the test, the service is started again and the stack healthy after it."""
    services: list[str] = []
    yield services.append
    for service in services:
        inject(service, "start")
    stack_healthy()


def test_llm_engine_stopped_and_started(inject, recovering, swarm_catalog: Catalog, proxy: Endpoint, model: str,
                                        record_fault) -> None:
    engine = swarm_catalog.primary_llm()
    if engine is None:
        pytest.skip(swarm_catalog.why_none_of_kind("llm"))
    recovering(engine.name)
    observe(Outage(
        engine.name, "stop, start", "proxy /ready lists the upstream",
        cause=lambda: inject(engine.name, "stop"),
        detected=lambda: any(p.startswith("upstream") for p in ready_problems(proxy)),
        end=lambda: inject(engine.name, "start"),
        recovered=lambda: not ready_problems(proxy) and answers(proxy, model),
        recover_limit=LLM_RECOVER_LIMIT, proxy_serves=False), proxy, model, record_fault)


def test_redis_down_and_back_with_its_data(inject, recovering, run_in: ExecFn, deployed, proxy: Endpoint, model: str,
                                           nonce: str, record_fault) -> None:
    service = deployed("redis")
    recovering(service)
    persisted = redis_marker(run_in, f"swarm-integration:persist:{nonce}", service)

    observe(Outage(
        service, "stop, start", "proxy /ready lists redis",
        cause=lambda: inject(service, "stop"),
        detected=lambda: any(p.startswith("redis") for p in ready_problems(proxy)),
        end=lambda: inject(service, "start"),
        recovered=lambda: back_on_redis(proxy, model), recover_limit=REDIS_RECOVER_LIMIT), proxy, model, record_fault)
    persisted()  # flow 3: what was written before the stop is there after the start


def test_ray_worker_killed_comes_back_by_its_restart_policy(recovering, run_in: ExecFn, deployed, expected_ray_nodes: int,
                                                            proxy: Endpoint, model: str, record_fault) -> None:
    worker, head = deployed("ray-worker"), deployed("ray-head")
    recovering(worker)
    address = run_in(worker, ["python3", "-c", _OWN_ADDRESS]).output.strip().splitlines()[-1]
    victim = [n["node_id"] for n in alive_ray_nodes(run_in, head) if n.get("node_ip") == address]
    assert victim, f"no alive Ray node has the address of {worker} ({address})"

    def killed() -> None:
        output = run_in(worker, ["python3", "-c", _KILL_RAYLET]).output
        assert "killed raylet" in output, f"found no raylet to kill in {worker}: {output[-200:]}"

    alive = lambda: {n["node_id"] for n in alive_ray_nodes(run_in, head)}  # noqa: E731
    observe(Outage(
        worker, "raylet killed (SIGKILL)", "the head's state API: node not alive",
        cause=killed, detected=lambda: victim[0] not in alive(), end=lambda: None,
        recovered=lambda: len(alive()) >= expected_ray_nodes, recover_limit=RAY_RECOVER_LIMIT,
        self_healing=True), proxy, model, record_fault)


def test_postgres_stopped_and_started_with_its_data(inject, recovering, swarm_target: Target, swarm_catalog: Catalog,
                                                    run_in: ExecFn, deployed, proxy: Endpoint, model: str, nonce: str,
                                                    record_fault) -> None:
    service = deployed("postgres")
    if swarm_target.name != "compose":
        pytest.skip("the in-stack address of PostgreSQL is known for the compose target only")
    port = swarm_catalog.services[service].port or 5432
    recovering(service)
    persisted = postgres_marker(run_in, f"swarm_integration_persist_{nonce}", service)
    observe(Outage(
        service, "stop, start", f"{proxy.service} cannot connect to {service}:{port}",
        cause=lambda: inject(service, "stop"),
        detected=lambda: not reachable_from(run_in, proxy.service, service, port),
        end=lambda: inject(service, "start"),
        recovered=lambda: postgres_ready(run_in, service) and psql(run_in, "SELECT 1", service=service) == "1",
        recover_limit=PG_RECOVER_LIMIT), proxy, model, record_fault)
    persisted()  # flow 3: the rows written before the stop are there after the start
