"""Flow 1 (agents on Ray through the proxy), its path broken: the very function each Ray task
runs (integration_agents.AGENT_SOURCE), run here against proxies of tests/live_parts, and the
verdicts the suite applies to what the tasks return."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from integration_agents import agent_function, judge_agents, judge_rate_limited, worker_spread
from tests.live_parts import MODEL


def _agents(base_url: str, key: str, count: int) -> list[dict]:
    call = agent_function()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda i: call(base_url, key, MODEL, f"Agent {i}: name one colour.", give_up_after=0),
                                range(count)))
    return [{**result, "index": i} for i, result in enumerate(results)]


def test_agents_answer_through_a_working_proxy(start_proxy) -> None:
    proxy = start_proxy()
    judge_agents(_agents(proxy.base_url, proxy.key, 2), 2)


def test_a_proxy_pointed_at_a_wrong_upstream_fails_the_flow(start_proxy) -> None:
    proxy = start_proxy(upstream="http://127.0.0.1:9/v1")
    results = _agents(proxy.base_url, proxy.key, 2)
    with pytest.raises(AssertionError, match=r"2 of 2 agent tasks got no answer through the proxy: task 0: HTTP 502"):
        judge_agents(results, 2)


def test_a_key_without_a_request_limit_fails_the_rate_limit_check(start_proxy) -> None:
    proxy = start_proxy(":0:0")
    results = _agents(proxy.base_url, proxy.key, 3)
    with pytest.raises(AssertionError, match="no 429: the proxy does not enforce"):
        judge_rate_limited(results, 2)


def test_a_429_without_waiting_fails_the_rate_limit_check(start_proxy) -> None:
    """Tasks that give up at once (give_up_after=0) never honour Retry-After: never answered."""
    proxy = start_proxy(":1:0")
    results = _agents(proxy.base_url, proxy.key, 3)
    with pytest.raises(AssertionError, match="never answered after honouring Retry-After"):
        judge_rate_limited(results, 1)


def test_tasks_on_one_worker_are_not_a_spread() -> None:
    results = [{"node": "w1"}, {"node": "w1"}, {"node": "head"}]
    assert worker_spread(results, "head") == {"w1"}
