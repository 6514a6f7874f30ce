"""Optional response cache in Redis for non-streaming, temperature-0 requests.

Key: the scope, the endpoint, the model and the canonical JSON of the body (sorted keys, no
spaces, ASCII escapes: a lone surrogate such as "\ud800" is valid JSON but cannot be UTF-8
encoded), hashed. The scope is the client's key id by default, so that one key neither gets
another key's answer nor learns from `x-cache: hit` that someone asked the same;
PROXY_CACHE_SCOPE=shared makes it one scope for every key.
Whether a request is cacheable, and its key, come from the validated request (intake.py), never
the raw dict: `"stream": "false"` is refused there, and `temperature: 0` and `0.0` are one key.
Only answers with status 200 that are a JSON object with `choices` (or `data`) and no `error`
are stored (accounting.cacheable_answer). Any Redis error bypasses the cache (logged once).
"""
from __future__ import annotations

import hashlib
import json
import time
import redis.asyncio as redis_asyncio
from pydantic import BaseModel
from redis.exceptions import RedisError

from swarm_proxy.telemetry import CACHE, REDIS_DEGRADED, log_once

RETRY_REDIS_AFTER = 30.0


def cacheable(body: BaseModel) -> bool:
    return not getattr(body, "streams", False) and getattr(body, "temperature", None) == 0.0


def cache_key(endpoint: str, body: BaseModel, scope: str = "shared") -> str:
    """The Redis key of an answer; `scope` is a key id, or "shared"."""
    canonical = json.dumps(body.model_dump(mode="python"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(f"{scope}\n{endpoint}\n{canonical}".encode()).hexdigest()
    return f"swarm-proxy:cache:{digest}"


class ResponseCache:
    def __init__(self, redis_url: str, ttl: int, enabled: bool) -> None:
        self._ttl = ttl
        self._client = (redis_asyncio.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
                        if redis_url and enabled and ttl > 0 else None)
        self._down_until = 0.0

    @property
    def active(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    def _degraded(self, error: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_REDIS_AFTER
        REDIS_DEGRADED.labels("cache").set(1)
        log_once("cache-redis-down", "the response cache is bypassed: Redis is unreachable", error=type(error).__name__)

    async def get(self, key: str) -> bytes | None:
        if not self.active:
            CACHE.labels("bypass").inc()
            return None
        try:
            value = await self._client.get(key)  # type: ignore[union-attr]
        except (RedisError, OSError) as error:
            self._degraded(error)
            CACHE.labels("bypass").inc()
            return None
        REDIS_DEGRADED.labels("cache").set(0)
        CACHE.labels("hit" if value is not None else "miss").inc()
        return value

    async def put(self, key: str, value: bytes) -> None:
        if not self.active:
            return
        try:
            await self._client.set(key, value, ex=self._ttl)  # type: ignore[union-attr]
        except (RedisError, OSError) as error:
            self._degraded(error)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
