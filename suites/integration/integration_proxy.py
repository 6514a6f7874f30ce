"""The proxy's side of the integration flows: its cache in Redis, and a second replica of it.

Cache entries are scoped per client key by default (PROXY_CACHE_SCOPE=key): a second replica serves
the hit to the same key. The second replica is a second proxy process started inside the proxy's own container through
`Target.exec`: the same image, the same configuration (it inherits the container's environment,
REDIS_URL included) and the same Redis, on port 8081, plus one extra client key with a tiny
request limit for the rate-limit flow. The CPU stack deploys one proxy (it has a fixed address,
so `--scale` cannot add one); a process of its own shares nothing with the first but Redis, which
is exactly what "a second replica serves the same hit" has to show. Where the target cannot run
commands the checks that need it skip.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from integration_stack import ExecFn, HttpAnswer, http_in, wait_until

REPLICA_PORT = 8081
_PID_FILE = "/tmp/swarm-integration-replica.pid"
_START = ('[ -f {pid} ] && kill "$(cat {pid})" 2>/dev/null; '
          'PROXY_API_KEYS="$PROXY_API_KEYS,$1" nohup python -m swarm_proxy.server --host 0.0.0.0 '
          '--port "$2" >/tmp/swarm-integration-replica.log 2>&1 & echo $! > {pid}').format(pid=_PID_FILE)


def key_id(key: str) -> str:
    """The proxy's id of a client key (limits, logs, cache scope): a sha256 prefix."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def cacheable_body(model: str, nonce: str | None = None) -> dict[str, Any]:
    """A temperature-0, non-streaming chat request no earlier run has sent (the nonce)."""
    nonce = nonce or uuid.uuid4().hex[:12]
    return {"model": model, "messages": [{"role": "user", "content": f"Cache probe {nonce}: reply with one word."}],
            "temperature": 0, "max_tokens": 4}


def post_chat(base_url: str, key: str | None, body: dict[str, Any], timeout: float = 120.0) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(base_url.rstrip("/") + "/chat/completions", json=body, headers=headers, timeout=timeout)


def miss_then_hit(base_url: str, key: str | None, body: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
    """Send the same cacheable request twice: the first must be a miss, the second a hit with the
    same answer. Raises AssertionError saying which part of the cache path is broken."""
    first = post_chat(base_url, key, body)
    assert first.status_code == 200, f"the first request failed: HTTP {first.status_code} {first.text[:200]}"
    second = post_chat(base_url, key, body)
    assert second.status_code == 200, f"the repeated request failed: HTTP {second.status_code} {second.text[:200]}"
    marks = (first.headers.get("x-cache"), second.headers.get("x-cache"))
    assert marks == ("miss", "hit"), (
        f"x-cache was {marks[0]!r} then {marks[1]!r}, expected 'miss' then 'hit': the proxy's cache is off or not "
        "reaching Redis (PROXY_CACHE, PROXY_CACHE_TTL, REDIS_URL)")
    assert second.content == first.content, "the cache hit is not the answer the miss stored"
    return first, second


def assert_same_hit(status: int, headers: dict[str, str], body: bytes, cached: bytes) -> None:
    """What a second replica must answer for a request the first cached: the same bytes, a hit."""
    assert status == 200, f"the second replica answered HTTP {status}: {body[:200]!r}"
    assert headers.get("x-cache") == "hit", (
        f"the second replica's x-cache is {headers.get('x-cache')!r}: replicas do not share the cache through Redis")
    assert body == cached, "the second replica's hit differs from the answer the first one cached"


CACHE_PATTERN = "swarm-proxy:cache:*"


def find_cache_entry(client: Any, answer: bytes, databases: int = 16) -> tuple[int, str, int] | None:
    """(database, key, TTL seconds) of the proxy's cache entry that holds `answer`, looking
    through every database (the proxy's REDIS_URL picks one; the Compose file uses 1) under the
    proxy's key prefix. Found by what it holds, not by re-deriving the proxy's key: how the proxy
    hashes a request is its own business (and scoping per key has tests of its own, tests/proxy).
    `client`: a redis-py client of that server."""
    import redis

    pool = client.connection_pool
    for db in range(databases):
        other = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                                 **{**pool.connection_kwargs, "db": db}))
        try:
            for key in other.scan_iter(match=CACHE_PATTERN, count=500):
                if other.get(key) == answer:
                    return db, key.decode(), int(other.ttl(key))
        finally:
            other.close()
    return None


@dataclass
class Replica:
    """A second proxy process in the proxy's container, reached at `in_stack_url` by the stack
    and through `request` (run from inside the container) by the test."""

    run: ExecFn
    service: str
    in_stack_url: str
    limited_key: str = field(repr=False)
    limited_rpm: int

    def request(self, method: str, path: str, key: str | None = None, body: Any = None, timeout: float = 120.0) -> HttpAnswer:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_in(self.run, self.service, method, f"http://127.0.0.1:{REPLICA_PORT}{path}", headers=headers,
                       body=body, timeout=timeout)

    def metrics(self) -> str:
        answer = self.request("GET", "/metrics", timeout=10)
        return answer.body if answer.status == 200 else ""

    def stop(self) -> None:
        self.run(self.service, ["sh", "-c", f'[ -f {_PID_FILE} ] && kill "$(cat {_PID_FILE})"; rm -f {_PID_FILE}; true'])


def start_replica(run: ExecFn, service: str, proxy_in_stack_url: str, model: str, rpm: int = 2,
                  limit: float = 60.0) -> Replica:
    """Start the second replica with one extra key limited to `rpm` requests per minute (and no
    token limit); return once its /health answers."""
    key = f"sk-integration-{uuid.uuid4().hex}"
    result = run(service, ["sh", "-c", _START, "sh", f"{key}:{rpm}:0", str(REPLICA_PORT)])
    if result.exit_code != 0:
        raise RuntimeError(f"could not start a second proxy process in {service}: {result.output[-300:]}")
    host = proxy_in_stack_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    replica = Replica(run, service, f"http://{host}:{REPLICA_PORT}/v1", key, rpm)
    try:
        wait_until(lambda: replica.request("GET", "/health", timeout=3).status == 200, limit,
                   f"the second proxy process in {service} to answer /health", interval=0.5)
    except AssertionError:
        log = run(service, ["sh", "-c", "tail -20 /tmp/swarm-integration-replica.log"]).output
        replica.stop()
        raise AssertionError(f"the second proxy process did not start within {limit:g} s; its log:\n{log}") from None
    # Open the limited key's one-minute window now: the agents of flow 1, which run later, then
    # wait only for what is left of it when they exceed the limit (see conftest's test order).
    replica.request("POST", "/v1/chat/completions", key=key, body={
        "model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "Say ok."}]})
    return replica
