"""Flow 2 (the proxy's cache lives in Redis), its path broken: the suite's checks against real
proxies (tests/live_parts) with the cache off, without Redis, and with the entry's TTL gone."""
from __future__ import annotations

import uuid

import pytest
import redis

from integration_proxy import assert_same_hit, cacheable_body, find_cache_entry, miss_then_hit, post_chat
from tests.live_parts import MODEL, REDIS_PASSWORD, start_redis


def _redis(container) -> redis.Redis:
    return redis.Redis(port=container.port, password=REDIS_PASSWORD, socket_timeout=10)


def test_miss_then_hit_and_the_entry_in_redis(start_proxy, redis_container) -> None:
    proxy = start_proxy(redis=redis_container, PROXY_CACHE_TTL="120")
    body = cacheable_body(MODEL, uuid.uuid4().hex)
    first, _ = miss_then_hit(proxy.base_url, proxy.key, body)
    client = _redis(redis_container)
    try:
        found = find_cache_entry(client, first.content)
        assert found is not None and 0 < found[2] <= 120, found
    finally:
        client.close()


def test_the_cache_disabled_fails_the_flow(start_proxy, redis_container) -> None:
    proxy = start_proxy(redis=redis_container, PROXY_CACHE="false")
    with pytest.raises(AssertionError, match="x-cache was None then None, expected 'miss' then 'hit'"):
        miss_then_hit(proxy.base_url, proxy.key, cacheable_body(MODEL, uuid.uuid4().hex))


def test_a_proxy_without_redis_fails_the_flow(start_proxy) -> None:
    proxy = start_proxy()
    with pytest.raises(AssertionError, match="the proxy's cache is off or not reaching Redis"):
        miss_then_hit(proxy.base_url, proxy.key, cacheable_body(MODEL, uuid.uuid4().hex))


def test_a_second_replica_serves_the_hit_through_the_same_redis(start_proxy, redis_container) -> None:
    first = start_proxy(redis=redis_container)
    second = start_proxy(redis=redis_container, PROXY_API_KEYS=first.key)  # the same client key
    body = cacheable_body(MODEL, uuid.uuid4().hex)
    cached, _ = miss_then_hit(first.base_url, first.key, body)
    answer = post_chat(second.base_url, first.key, body)
    assert_same_hit(answer.status_code, dict(answer.headers), answer.content, cached.content)


def test_a_second_replica_on_another_redis_fails_the_flow(start_proxy, redis_container) -> None:
    """Replicas share the cache only through one Redis: one on a Redis of its own answers a miss."""
    other = start_redis()
    try:
        first = start_proxy(redis=redis_container)
        second = start_proxy(redis=other, PROXY_API_KEYS=first.key)
        body = cacheable_body(MODEL, uuid.uuid4().hex)
        cached, _ = miss_then_hit(first.base_url, first.key, body)
        answer = post_chat(second.base_url, first.key, body)
        with pytest.raises(AssertionError, match="x-cache is 'miss': replicas do not share the cache"):
            assert_same_hit(answer.status_code, dict(answer.headers), answer.content, cached.content)
    finally:
        other.remove()
