"""Flow 2: the proxy's cache lives in Redis.

Two identical temperature-0 requests give miss then hit; the entry holding that answer is in
Redis under the proxy's prefix, with a TTL no longer than PROXY_CACHE_TTL; and the second
proxy replica, which shares nothing with the first but Redis, answers the same request (with the
same key) from the cache with the same bytes.
"""
from __future__ import annotations

import pytest

from swarm_checks import Endpoint, Target

from integration_faults import back_on_redis
from integration_proxy import Replica, assert_same_hit, cacheable_body, find_cache_entry, miss_then_hit
from integration_stack import ExecFn, wait_until

DEFAULT_TTL = 300


def _configured(run_in: ExecFn, service: str, name: str) -> str:
    """A setting as the proxy's container has it ("" when unset)."""
    return run_in(service, ["sh", "-c", f'printf %s "${{{name}:-}}"']).output.strip()


@pytest.fixture(scope="module")
def cached(proxy: Endpoint, model: str, nonce: str) -> tuple[dict, bytes]:
    # Precondition: the proxy uses Redis (after a Redis restart it bypasses the cache for 30 s).
    wait_until(lambda: back_on_redis(proxy, model), 75, "the proxy to use Redis", interval=2.0)
    body = cacheable_body(model, f"{nonce}-flow2")
    first, _ = miss_then_hit(proxy.openai_base_url, proxy.api_key, body)
    return body, first.content


def test_identical_requests_give_miss_then_hit(cached: tuple[dict, bytes]) -> None:
    body, content = cached
    assert b'"choices"' in content


def test_the_entry_is_in_redis_with_its_ttl(cached: tuple[dict, bytes], swarm_target: Target, deployed, run_in: ExecFn,
                                            proxy: Endpoint) -> None:
    import redis

    _, content = cached
    endpoint = swarm_target.endpoint(deployed("redis"))
    client = redis.Redis.from_url(endpoint.url, password=endpoint.password, socket_timeout=10)
    try:
        found = find_cache_entry(client, content)
    finally:
        client.close()
    assert found is not None, ("no entry holding the served answer under swarm-proxy:cache:* in any Redis database: "
                               "the proxy does not cache in this Redis")
    db, key, ttl = found
    configured = _configured(run_in, proxy.service, "PROXY_CACHE_TTL")
    limit = int(configured) if configured.isdigit() else DEFAULT_TTL
    assert 0 < ttl <= limit, f"the entry's TTL is {ttl} s, expected 1..{limit} (PROXY_CACHE_TTL): entries must expire"
    print(f"cache entry in Redis db {db}, TTL {ttl} s of {limit}")


def test_a_second_proxy_replica_serves_the_same_hit(cached: tuple[dict, bytes], replica: Replica, proxy: Endpoint) -> None:
    body, content = cached
    answer = replica.request("POST", "/v1/chat/completions", key=proxy.api_key, body=body)
    assert_same_hit(answer.status, dict(answer.headers), answer.body.encode(), content)
