"""The proxy's link to Redis: how its clients connect, and whether a component may use Redis now.

Every Redis client of the proxy (the shared limits' windows, the cache) is made with
`client_options()`: short socket timeouts (`SOCKET_TIMEOUT`), so that a Redis that vanished costs a request at
most about a second; redis-py's own Retry (one retry, a few milliseconds of backoff, on connection
errors, never on timeouts: a timed-out script may have run), so that a pooled connection that
died with a restarted Redis is replaced by a fresh one within the same command instead of failing it; and redis-py's health check, which
PINGs a connection idle longer than HEALTH_CHECK_INTERVAL before using it.

`RedisHealth` keeps, per component, whether Redis failed it lately. After a failure the component
does without Redis (in-process limits, no cache) for a pause that grows with consecutive failures
(redis-py's ExponentialBackoff: 0.5, 1, 2 s, at most RETRY_CAP), then the next request tries
Redis again: it is back in use within about RETRY_CAP seconds of answering again, where the proxy
once waited 30 s after each failure (and a dead pooled connection cost a second 30 s). Each
outage is logged once when it starts and once when it ends, whatever the number of requests.
"""
from __future__ import annotations

import os
import time
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from swarm_proxy.config import env_int
from swarm_proxy.telemetry import REDIS_DEGRADED, log

# Seconds for a command's answer, and for a connection (PROXY_REDIS_TIMEOUT_MS, default 500): past
# it the component does without Redis for a moment. Raise it for a Redis across a slow network.
SOCKET_TIMEOUT = max(1, env_int(os.environ, "PROXY_REDIS_TIMEOUT_MS", 500)) / 1000
HEALTH_CHECK_INTERVAL = 2  # seconds a pooled connection may idle before redis-py PINGs it first
RETRY_BASE, RETRY_CAP = 0.25, 2.0  # seconds without Redis after a failure: 0.5, 1, 2, 2, ...


def client_options() -> dict[str, Any]:
    """Keyword arguments for redis.asyncio.from_url."""
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.005), retries=1),
        # Connection errors only: a command that timed out may have run (a reservation, a settle,
        # a cache store), and sending it again would apply it twice.
        "retry_on_error": [RedisConnectionError, ConnectionError],
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }


class RedisHealth:
    """Whether one component (`limits`, `cache`) may use Redis now, and its outages' log lines."""

    def __init__(self, component: str, outage: str, recovery: str) -> None:
        self.component, self._outage, self._recovery = component, outage, recovery
        self._backoff = ExponentialBackoff(cap=RETRY_CAP, base=RETRY_BASE)
        self._failures = 0
        self._down_until = 0.0
        self._logged_down = False

    @property
    def usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, error: BaseException) -> None:
        """Redis failed a call: do without it for a while; log the outage if it just began."""
        self._failures += 1
        self._down_until = time.monotonic() + self._backoff.compute(self._failures)
        REDIS_DEGRADED.labels(self.component).set(1)
        if not self._logged_down:
            self._logged_down = True
            log.warning(self._outage, extra={"fields": {"error": type(error).__name__}})

    def succeeded(self) -> None:
        """Redis answered a call: in use again; log the recovery if an outage was logged."""
        if self._failures:
            self._failures, self._down_until = 0, 0.0
        REDIS_DEGRADED.labels(self.component).set(0)
        if self._logged_down:
            self._logged_down = False
            log.warning(self._recovery, extra={"fields": {}})
