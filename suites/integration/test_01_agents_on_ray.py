"""Flow 1: agents on Ray call the LLM through the proxy, inside the stack.

One Ray job (Jobs REST API) runs two groups of agent tasks at once, spread over the cluster:
- `answer`: each task calls the proxy at its in-stack address with the deployment's proxy key
  and returns its answer and usage; all must answer, on at least two workers, and the proxy's
  /metrics must count them;
- `limited`: one task more than a key allows per minute, on the second proxy replica (the key
  is its own, and its window was opened by one request when the replica started): some get 429
  with Retry-After, wait what it says, and are then answered. The job lasts what is left of the
  proxy's one-minute window (up to a minute). Where the second replica cannot be started (no
  commands inside services), the job runs the `answer` group alone and the limit test skips.
"""
from __future__ import annotations

from typing import Any, Callable

import httpx
import pytest

from swarm_checks import Endpoint, Target, fail

from integration_agents import judge_agents, judge_rate_limited, run_agents, worker_spread
from integration_proxy import Replica
from integration_stack import host_http, metric

ANSWER_TASKS = 4
CHAT_OK = {"endpoint": "/v1/chat/completions", "status": "200"}


@pytest.fixture(scope="module")
def agents(request: pytest.FixtureRequest, swarm_target: Target, deployed: Callable[[str], str], proxy: Endpoint,
           proxy_in_stack: str, model: str) -> dict[str, Any]:
    """Run the job once for the module: its results, and the counters before and after it."""
    head = swarm_target.endpoint(deployed("ray-head"))
    if not proxy.api_key:
        fail(f"{proxy.service} has no client key in its configuration (PROXY_API_KEYS)")
    try:
        replica: Replica | None = request.getfixturevalue("replica")
    except pytest.skip.Exception as why:
        replica, skipped = None, str(why)
    groups = [{"name": "answer", "url": proxy_in_stack, "key": proxy.api_key, "tasks": ANSWER_TASKS}]
    if replica is not None:
        groups.append({"name": "limited", "url": replica.in_stack_url, "key": replica.limited_key,
                       "tasks": replica.limited_rpm + 1})
    before = httpx.get(proxy.root_url + "/metrics", timeout=10).text
    limited_before = metric(replica.metrics(), "proxy_rate_limited_total", limit="requests") if replica else 0.0
    outcome = run_agents(host_http(head.root_url), model, groups)
    return {"outcome": outcome, "replica": replica, "skipped": None if replica else skipped,
            "metrics_before": before, "metrics_after": httpx.get(proxy.root_url + "/metrics", timeout=10).text,
            "limited_before": limited_before,
            "limited_after": metric(replica.metrics(), "proxy_rate_limited_total", limit="requests") if replica else 0.0}


def test_agents_on_ray_answer_through_the_proxy_on_the_workers(agents: dict[str, Any], expected_ray_nodes: int) -> None:
    outcome = agents["outcome"]
    answered = [r for r in outcome["results"] if r["group"] == "answer"]
    judge_agents(answered, ANSWER_TASKS)
    spread = worker_spread(outcome["results"], outcome["head"])
    workers = len(outcome["workers"])
    print(f"agents: {len(outcome['results'])} tasks on {len(spread)} of {workers} workers (+ head); "
          f"tokens {sum((r['usage'] or {}).get('total_tokens', 0) for r in answered)}")
    assert workers >= expected_ray_nodes - 1, f"{workers} Ray workers alive, the stack asks for {expected_ray_nodes - 1}"
    assert len(spread) >= min(2, workers), (f"the tasks ran on {len(spread)} worker(s) of {workers}: SPREAD did not fan "
                                            "them out over the workers")
    counted = (metric(agents["metrics_after"], "proxy_requests_total", **CHAT_OK)
               - metric(agents["metrics_before"], "proxy_requests_total", **CHAT_OK))
    assert counted >= ANSWER_TASKS, f"the proxy's metrics count {counted:g} answered chats, the agents got {ANSWER_TASKS}"


def test_agents_over_a_keys_limit_get_429_and_honour_retry_after(agents: dict[str, Any]) -> None:
    replica: Replica | None = agents["replica"]
    if replica is None:
        pytest.skip(f"no second proxy replica for the limited key: {agents['skipped']}")
    limited = [r for r in agents["outcome"]["results"] if r["group"] == "limited"]
    refusals = judge_rate_limited(limited, replica.limited_rpm)
    rose = agents["limited_after"] - agents["limited_before"]
    assert rose >= len(refusals), f"the replica's proxy_rate_limited_total rose by {rose:g}, the tasks saw {len(refusals)} 429s"
    print(f"rate limit: {len(limited)} tasks on a key of {replica.limited_rpm}/min; 429s honoured: {refusals}")
