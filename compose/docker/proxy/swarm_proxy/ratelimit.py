"""Per-key limits on requests and tokens per minute, shared by every replica through Redis.

Requests: fixed windows (budget.py; a refused request is counted too), decided from the headers
before the body is read, in the same step as a first look at the token window (refused when it
is spent). Tokens (budget.py): once the body is read, `reserve` books an
estimate of the request's cost (accounting.py) and refuses with the token 429 when it does not
fit, so that parallel requests cannot all spend the same remaining budget; `settle` charges the
difference to the real usage afterwards (a refund goes back to the reservation's window only).
A reservation is at most the key's whole budget: a request larger than the budget still passes
alone in an empty window (as before), its real usage is then charged in full.
Early admission (with Redis, PROXY_EARLY_ADMISSION, on by default): each Redis round trip waited
for before the upstream call costs about 0.5 ms of the time to first token on an idle machine (the
two of them made the proxy add 2.1 ms where it adds 0.8 without limits). So where a key's windows,
as Redis last showed them to this replica (at most VIEW_AGE ago) with its own unanswered early
admissions added, leave this request and a margin (a tenth of each limit, at least 1) to spare,
the request is neither counted nor booked before its body is read: the relay counts and books a
stream in one script (`admit_and_reserve`) while the request goes upstream (early.py), and
waits for that answer before it relays a byte. Redis stays the only judge: when its answer refuses (other
replicas spent the window meanwhile), the upstream request is cancelled and the client gets the
same 429 as ever; no limit can be overspent. A key near or past its limits when this replica
last saw it, one it has not seen lately, and any request without Redis take the strict way:
admitted from the headers before the body is read, booked before the upstream call (a stream
found near a limit only once its body is read: counted and booked in one step, then sent). A
request of a key with room that is not streamed is admitted once its body is read (relay.py).
When Redis is configured but unreachable the limiter falls back to in-process windows and tries
Redis again after a pause of at most 2 s (redislink.py: the outage and the recovery are logged
once each): a Redis outage degrades the limits to per-replica, it never fails a request.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from swarm_proxy.accounting import clamp
from swarm_proxy.budget import Admission, MemoryWindows, RedisWindows, Window, Windows
from swarm_proxy.config import ClientKey
from swarm_proxy.redislink import RedisHealth


@dataclass
class Verdict:
    """Whether a request may go on, and the x-ratelimit-* headers that describe the windows."""

    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0
    limit: str = ""
    reservation: Reservation | None = None


@dataclass(frozen=True)
class Reservation:
    """Tokens booked for one request, in which window and store, until `settle`."""

    tokens: int
    window_id: str
    shared: bool


WINDOW = 60  # seconds: every limit is per minute
VIEW_AGE = 2.0  # seconds a key's windows as Redis last answered may decide an early admission


@dataclass
class KeyView:
    """A key's windows as Redis last answered this replica, and its early admissions not answered yet."""

    requests: int = 0
    tokens: int = 0
    seen: float = -math.inf  # time.monotonic() of that answer
    pending_requests: int = 0
    pending_tokens: int = 0


def _margin(limit: int) -> int:
    return max(1, limit // 10)


def _wait(seconds: float) -> int:
    """Whole seconds to wait, 1..WINDOW: rounded up, never past the window (a window's time left
    read a moment late once made it 61), never 0."""
    return min(WINDOW, math.ceil(max(1.0, seconds)))


def _reset(seconds: float) -> str:
    return f"{min(float(WINDOW), max(0.0, seconds)):.0f}s"


class RateLimiter:
    def __init__(self, redis_url: str, early: bool = True) -> None:
        self._early = early and bool(redis_url)
        self._views: dict[str, KeyView] = {}  # key id -> view: one per configured key at most
        self._memory_tokens = MemoryWindows()
        self._redis_tokens: RedisWindows | None = RedisWindows(redis_url) if redis_url else None
        self._health = RedisHealth("limits", "rate limits fall back to in-process windows: Redis is unreachable",
                                   "rate limits are shared through Redis again")

    @property
    def shared(self) -> bool:
        return self._redis_tokens is not None and self._health.usable

    async def _windows(self, method: str, *args: object, shared: bool | None = None) -> tuple[Any, bool]:
        """Call the windows (Redis when `shared`, by default while Redis is up), falling back
        to the in-process ones; (the result, whether Redis answered)."""
        use_redis = self._redis_tokens is not None and (self.shared if shared is None else shared)
        if use_redis:
            try:
                result = await getattr(self._redis_tokens, method)(*args)
                self._health.succeeded()
                return result, True
            except (RedisError, OSError, ConnectionError) as error:
                self._health.failed(error)
                if shared:
                    return None, False  # a settlement for Redis's window: nothing to refund in-process
        windows: Windows = self._memory_tokens
        return await getattr(windows, method)(*args), False

    async def admit(self, client: ClientKey) -> Verdict:
        """Count the request against the key's RPM window; refuse when RPM or TPM is spent."""
        if not client.rpm and not client.tpm:  # an unlimited key: nothing to count or look at
            return Verdict(True, {})
        admission, shared = await self._windows("admit", client.key_id, bool(client.rpm), WINDOW * 1000)
        if shared:
            self._saw(client, admission.count, admission.tokens.used)
        return self._verdict(client, admission)

    def _verdict(self, client: ClientKey, admission: Admission, spent_refuses: bool = True) -> Verdict:
        """The admission's verdict: refused when the request count passed the RPM or (unless the
        tokens were booked in the same step) the token window is spent, with the x-ratelimit-*
        headers of both windows."""
        headers: dict[str, str] = {}
        allowed, retry_after, which = True, 0, ""
        if client.rpm:
            headers |= {"x-ratelimit-limit-requests": str(client.rpm),
                        "x-ratelimit-remaining-requests": str(max(0, client.rpm - admission.count)),
                        "x-ratelimit-reset-requests": _reset(admission.reset_ms / 1e3)}
            if admission.count > client.rpm:
                allowed, retry_after, which = False, _wait(admission.reset_ms / 1e3), "requests"
        if client.tpm:
            window = admission.tokens
            headers |= _token_headers(client, window)
            if allowed and spent_refuses and window.used >= client.tpm:
                allowed, retry_after, which = False, _wait(window.reset_ms / 1e3), "tokens"
        return Verdict(allowed, headers, retry_after, which)

    async def reserve(self, client: ClientKey, estimate: int) -> Verdict:
        """Book `estimate` tokens (at most the whole budget) in the key's token window, or refuse."""
        if not client.tpm:
            return Verdict(True, {})
        tokens = min(clamp(estimate), client.tpm)
        window, shared = await self._windows("reserve", client.key_id, tokens, client.tpm, WINDOW * 1000)
        if window is None:  # not reached: only a settlement gives up without a store
            return Verdict(True, {})
        if shared:
            view = self._views.get(client.key_id)
            if view is not None:
                view.tokens = window.used
        headers = _token_headers(client, window)
        if not window.fitted:
            return Verdict(False, headers, _wait(window.reset_ms / 1e3), "tokens")
        return Verdict(True, headers, reservation=Reservation(tokens, window.id, shared))

    def _saw(self, client: ClientKey, requests: int, tokens: int) -> None:
        view = self._views.setdefault(client.key_id, KeyView())
        view.requests, view.tokens, view.seen = requests, tokens, time.monotonic()

    def _room(self, client: ClientKey, tokens: int) -> bool:
        """Whether the key's last known windows leave this request (`tokens` of it booked) and
        the margin to spare, this replica's unanswered early admissions counted."""
        if not self._early or not self.shared:
            return False
        view = self._views.get(client.key_id)
        if view is None or time.monotonic() - view.seen > VIEW_AGE:
            return False
        if client.rpm and view.requests + view.pending_requests + 1 > client.rpm - _margin(client.rpm):
            return False
        return not client.tpm or view.tokens + view.pending_tokens + tokens <= client.tpm - _margin(client.tpm)

    def admits_early(self, client: ClientKey) -> bool:
        """Whether the request may skip admission before its body is read (the module's docstring)."""
        return (bool(client.rpm) or bool(client.tpm)) and self._room(client, 0)

    def books_early(self, client: ClientKey, estimate: int) -> bool:
        """Whether a stream admitted early may go upstream before Redis has counted and booked it."""
        return self._room(client, min(clamp(estimate), client.tpm) if client.tpm else 0)

    def book_early(self, client: ClientKey, estimate: int) -> asyncio.Task[Verdict]:
        """`admit_and_reserve` as a task of its own, counted in the key's view from now until it
        is answered (requests started in the same turn of the loop see it)."""
        tokens = min(clamp(estimate), client.tpm) if client.tpm else 0
        view = self._views.setdefault(client.key_id, KeyView())
        view.pending_requests += 1
        view.pending_tokens += tokens

        async def booked() -> Verdict:
            try:
                return await self.admit_and_reserve(client, estimate)
            finally:
                view.pending_requests -= 1
                view.pending_tokens -= tokens
        return asyncio.ensure_future(booked())

    async def admit_and_reserve(self, client: ClientKey, estimate: int) -> Verdict:
        """Count the request and book its tokens in one step (one Redis round trip); the verdict
        refuses as `admit` or `reserve` would."""
        tokens = min(clamp(estimate), client.tpm) if client.tpm else 0
        (admission, booked), shared = await self._windows("admit_reserve", client.key_id, client.rpm, tokens,
                                                          client.tpm, WINDOW * 1000)
        if shared:
            self._saw(client, admission.count, (booked or admission.tokens).used)
        verdict = self._verdict(client, admission, spent_refuses=booked is None)
        if booked is None or not verdict.allowed:  # refused by requests, or no token limit
            return verdict
        headers = verdict.headers | _token_headers(client, booked)
        if not booked.fitted:
            return Verdict(False, headers, _wait(booked.reset_ms / 1e3), "tokens")
        return Verdict(True, headers, reservation=Reservation(tokens, booked.id, shared))

    async def settle(self, client: ClientKey, reservation: Reservation | None, tokens: int) -> None:
        """Charge the real cost: the difference to the reservation (refunded when it was less)."""
        if not client.tpm:
            return
        booked = reservation.tokens if reservation is not None else 0
        delta = clamp(tokens) - booked
        if delta:
            await self._windows("settle", client.key_id, reservation.window_id if reservation else "", delta,
                               WINDOW * 1000, shared=reservation.shared if reservation else None)

    async def aclose(self) -> None:
        if self._redis_tokens is not None:
            await self._redis_tokens.aclose()


def _token_headers(client: ClientKey, window: Window) -> dict[str, str]:
    return {"x-ratelimit-limit-tokens": str(client.tpm),
            "x-ratelimit-remaining-tokens": str(max(0, client.tpm - window.used)),
            "x-ratelimit-reset-tokens": _reset(window.reset_ms / 1e3)}
