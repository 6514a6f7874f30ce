"""Redis stopped and started under a running proxy (issue 14, lower list and the reconnect): the
proxy uses Redis again within seconds of its return (it waited 30 s after each failure, and a dead
pooled connection cost a second 30 s), and logs each outage and each recovery, not one outage per
process lifetime. Redis runs on a fixed port, so that the restarted container is where it was."""
from __future__ import annotations

import hashlib
import time
import uuid

import httpx
import redis

from tests.live_parts import MODEL, REDIS_PASSWORD, Proxy, free_port, start_redis

OUTAGE = "rate limits fall back to in-process windows"
RECOVERY = "rate limits are shared through Redis again"


def _ask(proxy: Proxy) -> None:
    """A cacheable request that misses (a prompt of its own): it books tokens and stores an answer."""
    prompt = [{"role": "user", "content": f"Say hello. ({uuid.uuid4().hex})"}]
    response = httpx.post(proxy.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {proxy.key}"},
                          json={"model": MODEL, "messages": prompt, "temperature": 0})
    assert response.status_code == 200, response.text[:300]


def _wait_for_ping(store: redis.Redis, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            store.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _back_on_redis(proxy: Proxy, store: redis.Redis, window: str) -> bool:
    """The token window is booked in Redis again, and neither limits nor cache report degraded."""
    return bool(store.exists(window)) and proxy.metric('proxy_redis_degraded{component="limits"}') == 0 \
        and proxy.metric('proxy_redis_degraded{component="cache"}') == 0


def test_redis_back_is_used_within_seconds_and_each_transition_is_logged(start_proxy, scripted) -> None:
    upstream, _ = scripted
    container = start_redis(host_port=free_port())
    try:
        proxy = start_proxy(":0:100000", upstream=upstream, redis=container)
        store = redis.Redis(port=container.port, password=REDIS_PASSWORD, db=1)
        window = f"swarm-proxy:tpm:{hashlib.sha256(proxy.key.encode()).hexdigest()[:12]}"
        _ask(proxy)
        assert store.exists(window), "the token window is not in Redis to begin with"
        for outage in (1, 2):
            container.docker("stop")
            for _ in range(3):
                _ask(proxy)
            assert proxy.metric('proxy_redis_degraded{component="limits"}') == 1
            container.docker("start")
            _wait_for_ping(store, 30)
            store.delete(window)  # Redis saved its data at the stop: the window must be booked anew
            back = time.monotonic()
            while not _back_on_redis(proxy, store, window) and time.monotonic() - back < 20:
                _ask(proxy)  # Redis came back empty of the window: it reappears once the proxy books in it again
                time.sleep(0.1)
            took = time.monotonic() - back
            assert _back_on_redis(proxy, store, window) and took < 10, \
                f"outage {outage}: the proxy used Redis again (limits and cache) {took:.1f} s after it was back"
            log = proxy.log_text()
            assert (log.count(OUTAGE), log.count(RECOVERY)) == (outage, outage), \
                f"after outage {outage}: {log.count(OUTAGE)} outages and {log.count(RECOVERY)} recoveries logged"
    finally:
        container.remove()
