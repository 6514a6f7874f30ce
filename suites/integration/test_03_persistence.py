"""Flow 3: persistence. After the Ray head restarts, the workers rejoin (their restart policy
brings them back when their raylet gives up on the old head) and a job runs on each again.

That data written to Redis and PostgreSQL survives a restart of the service is checked on the
restarts flow 4 makes anyway (test_04_recovery: a marker written before the stop is read back
after the start), which spares the suite two more restarts; the framework's tests
(tests/integration/test_persistence_broken.py) show those checks failing on data kept on tmpfs.
Everything after a restart is checked from inside the stack (commands in the services): a
restarted container may publish its port anew on the host.
"""
from __future__ import annotations

import time

import pytest

from swarm_checks import Catalog

from integration_agents import run_job
from integration_faults import FaultRecord
from integration_stack import ExecFn, alive_ray_nodes, exec_http, wait_until

RAY_REJOIN_LIMIT = 240.0
# One task pinned to each alive worker (hard node affinity): the rejoined workers run work again.
PER_WORKER_JOB = r'''
import json, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
head = ray.get_runtime_context().get_node_id()
workers = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head)

@ray.remote(num_cpus=0.25)
def where():
    return ray.get_runtime_context().get_node_id()

refs = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=w, soft=False)).remote() for w in workers]
print("SWARM_RESULT " + json.dumps({"head": head, "workers": workers, "ran": ray.get(refs, timeout=120)}))
'''


def test_ray_workers_rejoin_a_restarted_head_and_a_job_runs(inject, run_in: ExecFn, deployed, swarm_catalog: Catalog,
                                                            expected_ray_nodes: int, record_fault, stack_healthy) -> None:
    head = deployed("ray-head")
    if expected_ray_nodes < 2:
        pytest.skip("the stack deploys no Ray worker (RAY_WORKERS=0)")
    before = {n["node_id"] for n in alive_ray_nodes(run_in, head)}
    try:
        started = time.monotonic()
        inject(head, "restart")
        wait_until(lambda: len(alive_ray_nodes(run_in, head)) >= expected_ray_nodes, RAY_REJOIN_LIMIT,
                   f"{expected_ray_nodes - 1} workers to rejoin the restarted head", interval=2.0)
        rejoined = time.monotonic() - started
        nodes = {n["node_id"] for n in alive_ray_nodes(run_in, head)}
        assert not nodes & before, "the nodes alive after the restart are the old ones: the head did not restart"
        outcome = run_job(exec_http(run_in, head, "http://127.0.0.1:8265"), PER_WORKER_JOB, {}, 180)
        workers = set(outcome["ran"])
        assert len(workers) == expected_ray_nodes - 1 and workers == set(outcome["workers"]), (
            f"after the head's restart tasks ran on {len(workers)} of {expected_ray_nodes - 1} workers")
        record_fault(FaultRecord("3 persistence", head, "restart", "alive nodes in the head's state API",
                                 recover_s=round(rejoined, 1), recover_limit_s=RAY_REJOIN_LIMIT,
                                 note=f"{expected_ray_nodes - 1} workers rejoined; a job ran on {len(workers)} of them"))
    finally:
        inject(head, "start")
        stack_healthy()
