"""The cache's share of Redis (issue 14, item 6): Redis holds Langfuse's queues too, with
`noeviction` and no maxmemory, so the cache must bound itself. An answer over
PROXY_CACHE_MAX_ENTRY_BYTES is not cached; once what the cache stored reaches PROXY_CACHE_MAX_BYTES
it stops storing (it never evicts, and never touches a key outside its namespace); a Redis that
answers OOM costs the cache its entries, never a request."""
from __future__ import annotations

import time
import uuid
from typing import Iterator

import httpx
import pytest
import redis

from tests.docker_helpers import Container
from tests.live_parts import MODEL, REDIS_PASSWORD, Proxy, start_redis


@pytest.fixture
def own_redis() -> Iterator[Container]:
    """A Redis of its own: the cache's byte budget is shared by every proxy on one Redis."""
    container = start_redis()
    try:
        yield container
    finally:
        container.remove()


def _client(container: Container) -> redis.Redis:
    return redis.Redis(port=container.port, password=REDIS_PASSWORD, db=1)


def _ask(proxy: Proxy, prompt: str) -> httpx.Response:
    response = httpx.post(proxy.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {proxy.key}"},
                          json={"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0})
    assert response.status_code == 200, response.text[:300]
    return response


def test_an_answer_over_the_entry_cap_is_not_cached(start_proxy, redis_container, scripted) -> None:
    upstream, script = scripted
    script.usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "padding": "x" * 5000}
    proxy = start_proxy(upstream=upstream, redis=redis_container, PROXY_CACHE_MAX_ENTRY_BYTES="2000")
    prompt = f"large {uuid.uuid4().hex}"
    assert [_ask(proxy, prompt).headers["x-cache"] for _ in range(2)] == ["miss", "miss"], \
        "a 5 kB answer was cached under a 2000-byte entry cap"
    script.usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    small = f"small {uuid.uuid4().hex}"
    assert [_ask(proxy, small).headers["x-cache"] for _ in range(2)] == ["miss", "hit"]


def test_the_cache_stops_storing_at_its_byte_budget_and_leaves_other_keys_alone(start_proxy, own_redis, scripted) -> None:
    upstream, _ = scripted
    store = _client(own_redis)
    store.set("langfuse:queue:ingestion", b"q" * 1000)  # what the cache must never touch
    store.set("bull:evaluation:1", b"job")
    budget = 4000
    proxy = start_proxy(upstream=upstream, redis=own_redis, PROXY_CACHE_MAX_BYTES=str(budget))
    prompts = [f"budget {n} {uuid.uuid4().hex}" for n in range(20)]
    for prompt in prompts:
        assert _ask(proxy, prompt).headers["x-cache"] == "miss"
    hits = sum(_ask(proxy, prompt).headers["x-cache"] == "hit" for prompt in prompts)
    entries = [key for key in store.scan_iter("swarm-proxy:cache:*")]
    stored = sum(store.strlen(key) for key in entries)
    assert 1 <= hits < len(prompts), f"{hits} of {len(prompts)} answers were cached under a {budget}-byte budget"
    assert stored <= budget, f"the cache holds {stored} bytes in {len(entries)} entries, over its budget of {budget}"
    assert store.get("langfuse:queue:ingestion") == b"q" * 1000 and store.get("bull:evaluation:1") == b"job"
    foreign = [key for key in store.scan_iter() if not key.startswith((b"swarm-proxy:", b"LIMITS", b"langfuse:", b"bull:"))]
    assert foreign == [], f"keys outside the proxy's namespaces: {foreign}"


def test_a_redis_that_answers_oom_skips_the_cache_and_serves(start_proxy, own_redis, scripted) -> None:
    upstream, _ = scripted
    store = _client(own_redis)
    proxy = start_proxy(upstream=upstream, redis=own_redis)
    _ask(proxy, "warm")
    store.config_set("maxmemory", "1")  # noeviction below what it holds: every write is refused with OOM
    try:
        prompt = f"full {uuid.uuid4().hex}"
        answers = [_ask(proxy, prompt) for _ in range(3)]  # _ask asserts each is a 200
        assert all(a.headers.get("x-cache") in (None, "miss") for a in answers)
    finally:
        store.config_set("maxmemory", "0")
    prompt = f"room again {uuid.uuid4().hex}"
    deadline, seen = time.monotonic() + 10, []
    while time.monotonic() < deadline and seen[-2:] != ["miss", "hit"]:
        seen.append(_ask(proxy, prompt).headers.get("x-cache", "bypass"))
        time.sleep(0.2)
    assert seen[-2:] == ["miss", "hit"], f"the cache did not store again within 10 s of Redis having room: {seen}"
    assert proxy.metric('proxy_requests_total{endpoint="/v1/chat/completions",status="500"}') == 0
