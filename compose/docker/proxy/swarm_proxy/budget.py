"""The windows behind the rate limits: a request count per key, and token windows that can be
reserved in and settled.

Admission (`admit`) counts the request in its key's request window and reads the token window
in one step: one Redis round trip (a Lua script), where the `limits` library (used before) took
three one after the other (its hit, then the count and the TTL) besides the token window's, each
0.3-0.9 ms on the time to first token; in-process a dict lookup, where `limits` cost 0.2 ms. A
refused request is counted too (as with `limits`: a client that keeps trying stays refused until
the window ends). The counter is `swarm-proxy:rpm:<key id>`, not limits' key: while replicas of
the old and the new proxy run side by side (a rolling upgrade) each counts apart, for at most
one window.

A window opens with its first charge and lasts WINDOW seconds (fixed windows). A token window
carries an id, so that a settlement refunds only the window its reservation was made in: a
refund into a later window would hand out tokens nobody reserved. A reservation that does not
fit is not counted at all (checked and added in one step: a Lua script in Redis, no await in
between in-process), so parallel requests cannot all pass on the same remaining budget.

`admit_reserve` does both in one step, for a request whose body is read already (an early
admission, ratelimit.py): the request counted, and, unless that refused it, its tokens booked.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis_asyncio

from swarm_proxy.redislink import client_options


@dataclass(frozen=True)
class Window:
    """A window after an operation: tokens used in it, milliseconds until it ends, its id, and
    whether the reservation asked for fitted."""

    used: int
    reset_ms: int
    id: str
    fitted: bool = True


@dataclass(frozen=True)
class Admission:
    """A request counted: the count in its request window (itself included), milliseconds until
    that window ends, and the key's token window."""

    count: int
    reset_ms: int
    tokens: Window


class Windows(Protocol):
    async def admit(self, key: str, count: bool, window_ms: int) -> Admission: ...
    async def admit_reserve(self, key: str, rpm: int, tokens: int, tpm: int,
                            window_ms: int) -> tuple[Admission, Window | None]: ...
    async def reserve(self, key: str, tokens: int, limit: int, window_ms: int) -> Window: ...
    async def settle(self, key: str, window_id: str, delta: int, window_ms: int) -> None: ...


class MemoryWindows:
    """In-process windows: one replica's view (REDIS_URL unset, or Redis unreachable)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float, str]] = {}  # key -> (used, ends at, id)
        self._requests: dict[str, tuple[int, float]] = {}  # key -> (count, ends at)

    def _current(self, key: str) -> tuple[int, float, str] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= time.monotonic():
            del self._windows[key]
            return None
        return window

    def _window(self, window: tuple[int, float, str] | None, fitted: bool = True) -> Window:
        if window is None:
            return Window(0, 0, "", fitted)
        return Window(window[0], max(0, round((window[1] - time.monotonic()) * 1e3)), window[2], fitted)

    def _add(self, key: str, tokens: int, window_ms: int) -> tuple[int, float, str]:
        window = self._current(key)
        if window is None:
            window = (0, time.monotonic() + window_ms / 1e3, uuid.uuid4().hex)
        self._windows[key] = window = (window[0] + tokens, window[1], window[2])
        return window

    async def admit(self, key: str, count: bool, window_ms: int) -> Admission:
        now = time.monotonic()
        requests = self._requests.get(key)
        if count:
            if requests is None or requests[1] <= now:
                requests = (0, now + window_ms / 1e3)
            self._requests[key] = requests = (requests[0] + 1, requests[1])
        elif requests is not None and requests[1] <= now:
            requests = None
        counted, reset_ms = (requests[0], max(0, round((requests[1] - now) * 1e3))) if requests else (0, 0)
        return Admission(counted, reset_ms, self._window(self._current(key)))

    async def admit_reserve(self, key: str, rpm: int, tokens: int, tpm: int,
                            window_ms: int) -> tuple[Admission, Window | None]:
        """The admission, and the reservation unless the admission refused (None) or there is no
        token limit (None); a spent token window is a reservation that did not fit."""
        admission = await self.admit(key, bool(rpm), window_ms)
        if (rpm and admission.count > rpm) or not tpm:
            return admission, None
        if admission.tokens.used >= tpm:
            return admission, Window(admission.tokens.used, admission.tokens.reset_ms, admission.tokens.id, False)
        return admission, await self.reserve(key, tokens, tpm, window_ms)

    async def reserve(self, key: str, tokens: int, limit: int, window_ms: int) -> Window:
        window = self._current(key)
        if window is not None and window[0] + tokens > limit:
            return self._window(window, fitted=False)
        return self._window(self._add(key, tokens, window_ms))

    async def settle(self, key: str, window_id: str, delta: int, window_ms: int) -> None:
        if delta > 0:
            self._add(key, delta, window_ms)
            return
        window = self._current(key)
        if window is not None and window[2] == window_id:
            self._windows[key] = (max(0, window[0] + delta), window[1], window[2])


# KEYS[1] the window (a hash: used, id); ARGV: tokens, limit, window ms, id for a new window.
# Answers {fitted (0/1), used, ms left, window id}.
RESERVE = """
local used = tonumber(redis.call('hget', KEYS[1], 'used') or '0')
local ttl = redis.call('pttl', KEYS[1])
local tokens, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if ttl > 0 and used + tokens > limit then
  return {0, used, ttl, redis.call('hget', KEYS[1], 'id') or ''}
end
if ttl <= 0 then
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[1], 'used', tokens, 'id', ARGV[4])
  redis.call('pexpire', KEYS[1], ARGV[3])
  return {1, tokens, tonumber(ARGV[3]), ARGV[4]}
end
return {1, redis.call('hincrby', KEYS[1], 'used', tokens), ttl, redis.call('hget', KEYS[1], 'id')}
"""
# ARGV: delta (a refund when negative), the reservation's window id, window ms, id for a new window.
SETTLE = """
local delta = tonumber(ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if delta < 0 then
  if ttl > 0 and redis.call('hget', KEYS[1], 'id') == ARGV[2] then
    local used = tonumber(redis.call('hget', KEYS[1], 'used') or '0')
    redis.call('hset', KEYS[1], 'used', math.max(0, used + delta))
  end
  return 0
end
if ttl <= 0 then
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[1], 'used', delta, 'id', ARGV[4])
  redis.call('pexpire', KEYS[1], ARGV[3])
else
  redis.call('hincrby', KEYS[1], 'used', delta)
end
return 0
"""
# KEYS[1] the request window (a counter), KEYS[2] the token window; ARGV: window ms, 1 to count.
# Answers {count, ms left of the request window, tokens used, ms left of the token window, its id}.
ADMIT = """
local count, ttl = 0, 0
if ARGV[2] == '1' then
  count = redis.call('incr', KEYS[1])
  ttl = redis.call('pttl', KEYS[1])
  if ttl < 0 then
    redis.call('pexpire', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
  end
end
local used = tonumber(redis.call('hget', KEYS[2], 'used') or '0')
return {count, ttl, used, redis.call('pttl', KEYS[2]), redis.call('hget', KEYS[2], 'id') or ''}
"""
# ADMIT, then (unless it refused the request) RESERVE, in one step. KEYS as ADMIT's; ARGV: window
# ms, rpm (0: none), tokens, tpm (0: none), id for a new token window. Answers {outcome (0 admitted
# and booked, 1 refused by requests, 2 refused by tokens), count, ms left of the request window,
# tokens used, ms left of the token window, its id}.
ADMIT_RESERVE = """
local rpm, tokens, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local count, ttl = 0, 0
if rpm > 0 then
  count = redis.call('incr', KEYS[1])
  ttl = redis.call('pttl', KEYS[1])
  if ttl < 0 then
    redis.call('pexpire', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
  end
end
local used = tonumber(redis.call('hget', KEYS[2], 'used') or '0')
local left = redis.call('pttl', KEYS[2])
local id = redis.call('hget', KEYS[2], 'id') or ''
if rpm > 0 and count > rpm then
  return {1, count, ttl, used, left, id}
end
if tpm == 0 then
  return {0, count, ttl, used, left, id}
end
if left > 0 and (used >= tpm or used + tokens > tpm) then
  return {2, count, ttl, used, left, id}
end
if left <= 0 then
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[2], 'used', tokens, 'id', ARGV[5])
  redis.call('pexpire', KEYS[2], ARGV[1])
  return {0, count, ttl, tokens, tonumber(ARGV[1]), ARGV[5]}
end
return {0, count, ttl, redis.call('hincrby', KEYS[2], 'used', tokens), left, id}
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWindows:
    """Windows in Redis, shared by every replica; raises redis-py's errors (the caller falls back)."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis_asyncio.from_url(redis_url, **client_options())
        self._reserve = self._client.register_script(RESERVE)
        self._settle = self._client.register_script(SETTLE)
        self._admit = self._client.register_script(ADMIT)
        self._admit_reserve = self._client.register_script(ADMIT_RESERVE)

    @staticmethod
    def _key(key: str) -> str:
        return f"swarm-proxy:tpm:{key}"

    async def admit(self, key: str, count: bool, window_ms: int) -> Admission:
        counted, reset_ms, used, ttl, window_id = await self._admit(
            keys=[f"swarm-proxy:rpm:{key}", self._key(key)], args=[window_ms, 1 if count else 0])
        return Admission(int(counted), max(0, int(reset_ms)), Window(int(used), max(0, int(ttl)), _text(window_id)))

    async def admit_reserve(self, key: str, rpm: int, tokens: int, tpm: int,
                            window_ms: int) -> tuple[Admission, Window | None]:
        outcome, counted, reset_ms, used, ttl, window_id = await self._admit_reserve(
            keys=[f"swarm-proxy:rpm:{key}", self._key(key)], args=[window_ms, rpm, tokens, tpm, uuid.uuid4().hex])
        tokens_window = Window(int(used), max(0, int(ttl)), _text(window_id), int(outcome) != 2)
        admission = Admission(int(counted), max(0, int(reset_ms)), tokens_window)
        return admission, (tokens_window if tpm and int(outcome) != 1 else None)

    async def reserve(self, key: str, tokens: int, limit: int, window_ms: int) -> Window:
        fitted, used, ttl, window_id = await self._reserve(
            keys=[self._key(key)], args=[tokens, limit, window_ms, uuid.uuid4().hex])
        return Window(int(used), max(0, int(ttl)), _text(window_id), bool(int(fitted)))

    async def settle(self, key: str, window_id: str, delta: int, window_ms: int) -> None:
        await self._settle(keys=[self._key(key)], args=[delta, window_id, window_ms, uuid.uuid4().hex])

    async def aclose(self) -> None:
        await self._client.aclose()
