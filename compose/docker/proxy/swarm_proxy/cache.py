"""Optional response cache in Redis for non-streaming, temperature-0 requests.

Key: the scope, the endpoint, the model and the canonical JSON of the body (sorted keys, no
spaces, ASCII escapes: a lone surrogate such as "\ud800" is valid JSON but cannot be UTF-8
encoded), hashed. The scope is the client's key id by default, so that one key neither gets
another key's answer nor learns from `x-cache: hit` that someone asked the same;
PROXY_CACHE_SCOPE=shared makes it one scope for every key.
Whether a request is cacheable, and its key, come from the validated request (intake.py), never
the raw dict: `"stream": "false"` is refused there, and `temperature: 0` and `0.0` are one key.
Only answers with status 200 that are a JSON object with `choices` (or `data`) and no `error`
are stored (accounting.cacheable_answer).

Bounded: the Redis it uses holds Langfuse's queues too (`noeviction`, no maxmemory), so an
unbounded cache could make Redis refuse Langfuse's writes or be OOM-killed. An answer larger than
PROXY_CACHE_MAX_ENTRY_BYTES is not stored; a store is booked in a byte budget,
PROXY_CACHE_MAX_BYTES, shared by every replica: one Lua script (PUT) checks the budget and stores
in one step. The budget counts each entry (value, key and OVERHEAD) in the counter of the TTL-long
time slot it was stored in (Redis's clock); an entry outlives its slot by at most one TTL, so the
live entries are at most the current and the previous slot's counters, which is what is checked.
Counting an entry for up to two TTLs is conservative: the cache may stop storing at half its
budget, never go past it. When the budget is full, nothing is stored until slots age out: the
cache never evicts, and never reads or writes a key outside `swarm-proxy:cache:` and
`swarm-proxy:cache-budget:`. A Redis that refuses writes (OOM) only costs the cache that entry;
Redis unreachable bypasses the cache for a moment (redislink.py). Neither is ever a failed request.
"""
from __future__ import annotations

import hashlib
import json
import redis.asyncio as redis_asyncio
from pydantic import BaseModel
from redis.exceptions import OutOfMemoryError, RedisError

from swarm_proxy.redislink import RedisHealth, client_options
from swarm_proxy.telemetry import CACHE, log

OVERHEAD = 96  # bytes Redis spends on an entry besides its key and value (object, dict entry, expiry)
BUDGET_PREFIX = "swarm-proxy:cache-budget:"
# KEYS[1] the entry; ARGV: the answer, TTL seconds, bytes booked, the budget. Answers 1 (stored) or 0.
PUT = """
local ttl = tonumber(ARGV[2])
local slot = math.floor(tonumber(redis.call('time')[1]) / ttl)
local current, previous = ARGV[5] .. slot, ARGV[5] .. (slot - 1)
local used = tonumber(redis.call('get', current) or '0') + tonumber(redis.call('get', previous) or '0')
local size = tonumber(ARGV[3])
if used + size > tonumber(ARGV[4]) then
  return 0
end
redis.call('set', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('incrby', current, size)
redis.call('expire', current, 2 * ttl + 1)
return 1
"""


def cacheable(body: BaseModel) -> bool:
    return not getattr(body, "streams", False) and getattr(body, "temperature", None) == 0.0


def cache_key(endpoint: str, body: BaseModel, scope: str = "shared") -> str:
    """The Redis key of an answer; `scope` is a key id, or "shared"."""
    canonical = json.dumps(body.model_dump(mode="python"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(f"{scope}\n{endpoint}\n{canonical}".encode()).hexdigest()
    return f"swarm-proxy:cache:{digest}"


class ResponseCache:
    def __init__(self, redis_url: str, ttl: int, enabled: bool, max_bytes: int = 64 * 1024 * 1024,
                 max_entry_bytes: int = 1024 * 1024) -> None:
        self._ttl, self._max_bytes, self._max_entry_bytes = ttl, max_bytes, max_entry_bytes
        self._client = (redis_asyncio.from_url(redis_url, **client_options())
                        if redis_url and enabled and ttl > 0 and max_bytes > 0 and max_entry_bytes > 0 else None)
        self._put = self._client.register_script(PUT) if self._client is not None else None
        self._health = RedisHealth("cache", "the response cache is bypassed: Redis is unreachable",
                                   "the response cache uses Redis again")
        self._full = False  # the budget (or Redis's memory) refused the last store: logged once until one fits

    @property
    def active(self) -> bool:
        return self._client is not None and self._health.usable

    async def get(self, key: str) -> bytes | None:
        if not self.active:
            CACHE.labels("bypass").inc()
            return None
        try:
            value = await self._client.get(key)  # type: ignore[union-attr]
        except (RedisError, OSError) as error:
            self._health.failed(error)
            CACHE.labels("bypass").inc()
            return None
        self._health.succeeded()
        CACHE.labels("hit" if value is not None else "miss").inc()
        return value

    async def put(self, key: str, value: bytes) -> None:
        """Store an answer if it fits the entry cap and the budget; never fails the request."""
        if not self.active:
            return
        if len(value) > self._max_entry_bytes:
            CACHE.labels("too_large").inc()
            return
        size = len(value) + len(key) + OVERHEAD
        try:
            stored = await self._put(keys=[key], args=[value, self._ttl, size, self._max_bytes, BUDGET_PREFIX])  # type: ignore[misc]
        except OutOfMemoryError:  # Redis at its maxmemory: Langfuse's writes come first
            self._refused("Redis refused to store an answer (OOM): the cache stores nothing until Redis has room")
            return
        except (RedisError, OSError) as error:
            self._health.failed(error)
            return
        self._health.succeeded()
        if not stored:
            self._refused("the response cache is full (PROXY_CACHE_MAX_BYTES): answers are not stored until entries expire")
        elif self._full:
            self._full = False
            log.warning("the response cache stores answers again", extra={"fields": {}})

    def _refused(self, message: str) -> None:
        CACHE.labels("full").inc()
        if not self._full:
            self._full = True
            log.warning(message, extra={"fields": {"budget_bytes": self._max_bytes}})

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
