"""Per-key limits on requests and tokens per minute, shared by every replica through Redis.

Built on `limits` (fixed windows: a refused request and the tokens of an answer are always
counted, with one INCR each). When Redis is configured but unreachable the limiter falls back
to in-process windows (logged once) and tries Redis again after a pause: a Redis outage
degrades the limits to per-replica, it never fails a request.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from swarm_proxy.config import ClientKey
from swarm_proxy.telemetry import REDIS_DEGRADED, log_once

RETRY_REDIS_AFTER = 30.0


@dataclass
class Verdict:
    """Whether a request may go on, and the x-ratelimit-* headers that describe the windows."""

    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0
    limit: str = ""


async def _none() -> None:
    return None


WINDOW = 60  # seconds: every limit is per minute


def _wait(seconds: float) -> int:
    """Whole seconds to wait, 1..WINDOW: Redis reports a window's TTL in whole seconds, read after
    `now`, so the raw difference can exceed the window by a fraction (and ceil made it 61)."""
    return min(WINDOW, math.ceil(max(1.0, seconds)))


def _reset(seconds: float) -> str:
    return f"{min(float(WINDOW), max(0.0, seconds)):.0f}s"


class RateLimiter:
    def __init__(self, redis_url: str) -> None:
        self._memory = FixedWindowRateLimiter(MemoryStorage())
        self._redis: FixedWindowRateLimiter | None = None
        if redis_url:
            storage: Storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", wrap_exceptions=True,
                socket_timeout=0.5, socket_connect_timeout=0.5,
            )
            self._redis = FixedWindowRateLimiter(storage)
        self._redis_down_until = 0.0

    @property
    def shared(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._redis_down_until

    def _active(self) -> FixedWindowRateLimiter:
        return self._redis if self._redis is not None and self.shared else self._memory

    async def _call(self, method: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        limiter = self._active()
        try:
            result = await getattr(limiter, method)(*args, **kwargs)
        except (StorageError, OSError, ConnectionError) as error:
            if limiter is self._memory:
                raise
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER
            REDIS_DEGRADED.labels("limits").set(1)
            log_once("ratelimit-redis-down", "rate limits fall back to in-process windows: Redis is unreachable",
                     error=type(error).__name__)
            return await getattr(self._memory, method)(*args, **kwargs)
        if limiter is not self._memory:
            REDIS_DEGRADED.labels("limits").set(0)
        return result

    async def admit(self, client: ClientKey) -> Verdict:
        """Count the request against the key's RPM window; refuse when RPM or TPM is spent."""
        rpm = RateLimitItemPerMinute(client.rpm) if client.rpm else None
        tpm = RateLimitItemPerMinute(client.tpm) if client.tpm else None
        headers: dict[str, str] = {}
        allowed, retry_after, which = True, 0, ""
        now = time.time()
        # One round trip for the hit, one (concurrent) for both windows' stats.
        ok = await self._call("hit", rpm, "rpm", client.key_id) if rpm is not None else True
        rpm_stats, tpm_stats = await asyncio.gather(
            self._call("get_window_stats", rpm, "rpm", client.key_id) if rpm is not None else _none(),
            self._call("get_window_stats", tpm, "tpm", client.key_id) if tpm is not None else _none(),
        )
        if rpm_stats is not None:
            headers |= {"x-ratelimit-limit-requests": str(client.rpm),
                        "x-ratelimit-remaining-requests": str(max(0, rpm_stats.remaining)),
                        "x-ratelimit-reset-requests": _reset(rpm_stats.reset_time - now)}
            if not ok:
                allowed, retry_after, which = False, _wait(rpm_stats.reset_time - now), "requests"
        if tpm_stats is not None:
            headers |= {"x-ratelimit-limit-tokens": str(client.tpm),
                        "x-ratelimit-remaining-tokens": str(max(0, tpm_stats.remaining)),
                        "x-ratelimit-reset-tokens": _reset(tpm_stats.reset_time - now)}
            if allowed and tpm_stats.remaining <= 0:
                allowed, retry_after, which = False, _wait(tpm_stats.reset_time - now), "tokens"
        return Verdict(allowed, headers, retry_after, which)

    async def charge_tokens(self, client: ClientKey, tokens: int) -> None:
        """Count an answer's tokens in the key's TPM window (after the fact: usage is known then)."""
        if client.tpm and tokens > 0:
            await self._call("hit", RateLimitItemPerMinute(client.tpm), "tpm", client.key_id, cost=tokens)
