"""Readiness (`GET /ready`): every local upstream lists its models and Redis (when set) answers.

The probe is unauthenticated (Compose's healthcheck, Kubernetes' readinessProbe), so anyone who
reaches the port may call it, as often as they like. Two things follow. Upstreams are named by
their place in PROXY_ROUTES (`upstream 1`) for a caller without a valid key: the internal
addresses are for the operator, who sends a key and gets them. And the upstream check is made at
most once per UPSTREAM_CHECK_TTL seconds (concurrent calls share one check), so that calling
/ready does not send a request to every upstream each time; Redis, local and cheap, is pinged on
every call, through one client kept for it.
"""
from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis_asyncio

from swarm_proxy.config import OPENAI, Settings
from swarm_proxy.redislink import client_options
from swarm_proxy.upstream import TRANSPORT_ERRORS, Upstreams

UPSTREAM_CHECK_TTL = 5.0  # seconds an upstream check's result is reused


class Readiness:
    def __init__(self, settings: Settings, upstreams: Upstreams) -> None:
        self._upstreams = upstreams
        # The same options as every other client: a pooled connection that died with a restarted
        # Redis is replaced within the ping, so /ready does not report a Redis that is back as down.
        self._redis = redis_asyncio.from_url(settings.redis_url, **client_options()) if settings.redis_url else None
        self._checked_at = -UPSTREAM_CHECK_TTL
        self._upstream_problems: list[tuple[int, str, str]] = []  # (place, URL, error)
        self._lock = asyncio.Lock()

    async def _check_upstreams(self) -> list[tuple[int, str, str]]:
        async with self._lock:
            if time.monotonic() - self._checked_at < UPSTREAM_CHECK_TTL:
                return self._upstream_problems
            problems = []
            for place, upstream in enumerate(self._upstreams.distinct(), start=1):
                if upstream == OPENAI:
                    continue
                try:
                    await self._upstreams.models(upstream, fresh=True)
                except (*TRANSPORT_ERRORS, ValueError) as error:
                    problems.append((place, upstream, type(error).__name__))
            self._upstream_problems, self._checked_at = problems, time.monotonic()
            return problems

    async def problems(self, detailed: bool) -> list[str]:
        """What is not ready, each as `upstream N: Error` (`upstream URL: Error` when `detailed`)
        or `redis: Error`; empty when ready."""
        problems = [f"upstream {url if detailed else place}: {error}"
                    for place, url, error in await self._check_upstreams()]
        if self._redis is not None:
            try:
                await self._redis.ping()
            except Exception as error:  # noqa: BLE001 - any failure means Redis is not usable
                problems.append(f"redis: {type(error).__name__}")
        return problems

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
