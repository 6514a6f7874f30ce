"""Health: the Ray cluster runs work on its workers. A job submitted through the dashboard's
Jobs REST API (POST /api/jobs/) pins one task to each alive worker node and reports where each
ran; no Ray client is needed on the test host, so Python versions need not match."""
from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Callable

import httpx

from swarm_checks import Catalog, Endpoint, ray_alive_nodes

JOB_TIMEOUT = 120.0
TASK_PER_WORKER = '''
import json, socket, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
head = ray.get_runtime_context().get_node_id()
workers = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head)

@ray.remote(num_cpus=1)
def where():
    return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}

refs = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=w, soft=False)).remote() for w in workers]
print("SWARM_RESULT " + json.dumps({"head": head, "workers": workers, "ran": ray.get(refs, timeout=60)}))
'''


def _run_job(base: str, script: str) -> dict:
    encoded = base64.b64encode(script.encode()).decode()
    entrypoint = f"python -c \"import base64; exec(base64.b64decode('{encoded}').decode())\""
    submission_id = f"swarm-check-{uuid.uuid4().hex[:12]}"
    response = httpx.post(f"{base}/api/jobs/", json={"entrypoint": entrypoint, "submission_id": submission_id}, timeout=30)
    assert response.status_code == 200, f"job submission refused: HTTP {response.status_code} {response.text[:200]}"
    deadline = time.monotonic() + JOB_TIMEOUT
    status = "PENDING"
    try:
        while time.monotonic() < deadline:
            status = httpx.get(f"{base}/api/jobs/{submission_id}", timeout=30).json()["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(1.0)
        logs = httpx.get(f"{base}/api/jobs/{submission_id}/logs", timeout=30).json().get("logs", "")
        assert status == "SUCCEEDED", f"job ended {status} within {JOB_TIMEOUT:g} s; its log:\n{logs[-2000:]}"
        line = next((l for l in logs.splitlines() if l.startswith("SWARM_RESULT ")), None)
        assert line, f"the job printed no result; its log:\n{logs[-2000:]}"
        return json.loads(line.removeprefix("SWARM_RESULT "))
    finally:
        if status not in ("SUCCEEDED", "FAILED", "STOPPED"):
            httpx.post(f"{base}/api/jobs/{submission_id}/stop", timeout=30)
        httpx.delete(f"{base}/api/jobs/{submission_id}", timeout=30)


def test_ray_runs_a_task_on_every_worker(swarm_catalog: Catalog, endpoint_of_kind: Callable[[str], Endpoint]) -> None:
    head = endpoint_of_kind("ray-head")
    result = _run_job(head.root_url, TASK_PER_WORKER)
    assert result["workers"], "the cluster has no worker node: every task would run on the head"
    ran_on = sorted(item["node"] for item in result["ran"])
    assert ran_on == result["workers"], "a task did not run on the worker it was pinned to"
    assert result["head"] not in ran_on


def test_ray_reports_the_expected_workers(swarm_catalog: Catalog, endpoint_of_kind: Callable[[str], Endpoint]) -> None:
    head = endpoint_of_kind("ray-head")
    workers = swarm_catalog.of_kind("ray-worker")
    heads = swarm_catalog.of_kind("ray-head")
    expected = int(heads[0].labels.get("swarm.ray-workers", "0")) if workers else 0
    alive = ray_alive_nodes(head)
    assert len(alive) - 1 == expected, f"{len(alive) - 1} alive worker(s), the stack asks for {expected} (RAY_WORKERS)"
