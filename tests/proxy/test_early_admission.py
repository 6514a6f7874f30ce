"""Early admission (issue 14, the time to first token with limits in Redis): a stream of a key far
from its limits goes upstream while Redis counts and books it, and Redis stays the only judge.

Redis is made slow for real: a Lua script that runs for a set time holds every other command
(Redis runs one at a time). Another replica spending the window is Redis's state set directly
(what that replica's script would have written)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.live_parts import MODEL, REDIS_PASSWORD, Proxy
from tests.proxy.scripted import HELLO

BUSY = """
local start = redis.call('time')
local now
repeat
  now = redis.call('time')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) >= tonumber(ARGV[1])
return now
"""


def _stream(proxy: Proxy, **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": HELLO, "stream": True, "max_tokens": 10, **fields}
    with httpx.stream("POST", proxy.base_url + "/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {proxy.key}"}) as response:
        response.read()
    return response


def _store(container: Any, timeout: float | None = None) -> redis.Redis:
    """A client of the test's Redis; with `timeout`, one that gives up after it, never retrying."""
    if timeout is None:
        return redis.Redis(port=container.port, password=REDIS_PASSWORD, db=1)
    return redis.Redis(port=container.port, password=REDIS_PASSWORD, db=1, socket_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))


@contextlib.contextmanager
def _raw_stream(proxy: Proxy) -> Iterator[None]:
    """A stream request sent on a raw socket, the socket closed when the block ends."""
    body = json.dumps({"model": MODEL, "messages": HELLO, "stream": True, "max_tokens": 10}).encode()
    address = urlsplit(proxy.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {proxy.key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        yield


PATIENT = {"PROXY_REDIS_TIMEOUT_MS": "5000"}  # a proxy that waits out BusyRedis instead of doing without Redis


def _key_id(proxy: Proxy) -> str:
    return hashlib.sha256(proxy.key.encode()).hexdigest()[:12]


class BusyRedis:
    """Redis made busy for `seconds` by a script (it runs one command at a time), from a thread.
    `ended` is when the script ended by Redis's own clock (the host's, taken into this process's
    monotonic time): Redis answered nothing else before it, however late a starved machine started
    the script. `sent` is when the script was sent. Entered once a PING has waited 0.1 s (the script
    runs). The proxies of these tests wait for Redis up to 5 s (PATIENT, where the default gives
    up after 0.5 s), and Redis stays busy for 1.5 s: a proxy starved by a busy machine for most of
    a second (a CI run once took 0.35 s to forward a stream) still acts while Redis is busy."""

    def __init__(self, container: Any, seconds: float = 1.5) -> None:
        self._store, self._probe, self.seconds = _store(container), _store(container, timeout=0.1), seconds
        self._store.ping()  # connected and authenticated: the script leaves at once
        self._probe.ping()
        self._thread = threading.Thread(target=self._run)
        self._ended_at: list[int] | None = None

    def _run(self) -> None:
        self._ended_at = [int(part) for part in self._store.eval(BUSY, 0, round(self.seconds * 1e6))]

    @property
    def ended(self) -> float:
        """When the script ended, in time.monotonic() (Redis's TIME is the host's wall clock)."""
        self._thread.join()
        assert self._ended_at is not None, "the busy script did not answer"
        seconds, micros = self._ended_at
        return seconds + micros / 1e6 - (time.time() - time.monotonic())

    def __enter__(self) -> BusyRedis:
        self.sent = time.monotonic()
        self._thread.start()
        while True:  # until a PING waits: the script is running
            try:
                self._probe.ping()
            except redis.TimeoutError:
                return self
            if time.monotonic() - self.sent > 5:
                raise AssertionError("Redis did not get busy")

    def __exit__(self, *exc: object) -> None:
        self._thread.join()


@pytest.mark.parametrize("early", [True, False], ids=["early", "strict"])
def test_a_stream_far_from_its_limits_goes_upstream_while_redis_is_busy(start_proxy, redis_container, scripted,
                                                                       early: bool) -> None:
    """Before, a stream waited two Redis round trips (admission, then its reservation) before
    its request went upstream: with Redis busy the upstream saw it only after. Strict
    (PROXY_EARLY_ADMISSION=false) still waits; both count the request exactly."""
    upstream, script = scripted
    proxy = start_proxy(":600:200000", upstream=upstream, redis=redis_container,
                        PROXY_EARLY_ADMISSION="true" if early else "false", **PATIENT)
    assert _stream(proxy).status_code == 200  # the replica's first look at the key's windows
    with BusyRedis(redis_container) as busy:
        answer = _stream(proxy)
    assert answer.status_code == 200 and b"[DONE]" in answer.content, answer.content[:300]
    assert len(script.received) == 2
    while_busy = script.received[1] < busy.ended
    assert while_busy is early, f"the upstream got the stream {script.received[1] - busy.ended:+.3f} s from Redis's busy end"
    assert int(_store(redis_container).get(f"swarm-proxy:rpm:{_key_id(proxy)}")) == 2, "each request counted once"
    assert proxy.metric('proxy_redis_degraded{component="limits"}') == 0
    assert proxy.metric('proxy_early_admissions_total{outcome="admitted"}') == (1 if early else 0)


@pytest.mark.parametrize("headers_first", [True, False], ids=["upstream-started", "upstream-queued"])
@pytest.mark.parametrize("limit", ["requests", "tokens"])
def test_an_early_stream_that_redis_refuses_is_cancelled_upstream_and_gets_the_429(
        start_proxy, redis_container, scripted, limit: str, headers_first: bool) -> None:
    """The replica's view said there was room; meanwhile another replica spent the window. Redis's
    answer wins: the upstream request is closed at once, whether or not the upstream has started
    its answer (a queued engine sends nothing for a while), and the client gets the usual 429."""
    upstream, script = scripted
    proxy = start_proxy(":20:0" if limit == "requests" else ":0:1000", upstream=upstream, redis=redis_container, **PATIENT)
    assert _stream(proxy).status_code == 200
    store, key_id = _store(redis_container), _key_id(proxy)
    if limit == "requests":
        store.set(f"swarm-proxy:rpm:{key_id}", 20, keepttl=True)
    else:
        store.hset(f"swarm-proxy:tpm:{key_id}", "used", 995)
    script.hold, script.headers_first = 10.0, headers_first  # the upstream holds the request open
    with BusyRedis(redis_container) as busy:  # the verdict comes after the upstream has the request
        answer = _stream(proxy)
    assert answer.status_code == 429 and answer.json()["error"]["type"] == limit, answer.content[:300]
    assert time.monotonic() - busy.sent < 5, "the 429 waited for the upstream"
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert len(script.received) == 2 and script.received[1] < busy.ended, \
        "the stream did not reach the upstream before Redis's verdict"
    deadline = time.monotonic() + 5
    while not script.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert script.closed and script.closed[0] - busy.sent < 5, "the refused stream's upstream request was not closed"
    assert proxy.metric('proxy_early_admissions_total{outcome="refused"}') == 1


def test_a_client_that_leaves_before_the_verdict_gets_its_booking_settled(start_proxy, redis_container,
                                                                        scripted) -> None:
    """The client leaves while Redis, busy, has not answered the early booking: the upstream
    request is closed, and once Redis answers, the booked tokens are given back."""
    upstream, script = scripted
    proxy = start_proxy(":600:200000", upstream=upstream, redis=redis_container, **PATIENT)
    assert _stream(proxy).status_code == 200
    window = f"swarm-proxy:tpm:{_key_id(proxy)}"
    used_before = int(_store(redis_container).hget(window, "used"))
    script.hold, script.headers_first = 10.0, True
    with BusyRedis(redis_container) as busy:
        with _raw_stream(proxy):  # sent, then the connection closed at once
            deadline = time.monotonic() + 5
            while len(script.received) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(script.received) == 2, "the stream did not reach the upstream"
        left_at = time.monotonic()
    assert left_at < busy.ended, "the client left only once Redis could answer: nothing was pending"
    deadline = time.monotonic() + 5
    while (not script.closed or int(_store(redis_container).hget(window, "used")) != used_before) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert script.closed, "the upstream request of a client that left was not closed"
    assert int(_store(redis_container).hget(window, "used")) == used_before, "the early booking was not given back"
    assert proxy.metric('proxy_early_admissions_total{outcome="admitted"}') == 1, "the verdict was waited for"
    assert proxy.metric('proxy_requests_total{endpoint="/v1/chat/completions",status="499"}') == 1


def test_a_key_near_its_limit_is_admitted_before_its_body_is_read(start_proxy, redis_container, scripted) -> None:
    """Within a tenth of the limit a replica does not admit early: the spent key's 429 comes from
    the headers, while the body has not even been sent."""
    upstream, _ = scripted
    proxy = start_proxy(":5:0", upstream=upstream, redis=redis_container)
    statuses = [_stream(proxy).status_code for _ in range(5)]
    assert statuses == [200] * 5, statuses
    assert proxy.metric('proxy_early_admissions_total{outcome="admitted"}') == 3, "the 2nd to 4th (the 1st had no view yet, the 5th is within the margin)"
    status, elapsed = _status_before_the_body(proxy)
    assert status == 429, "the spent key was not refused from its headers"
    assert elapsed < 5


def _status_before_the_body(proxy: Proxy) -> tuple[int, float]:
    """The status of a POST whose headers promise a body that never comes, and the seconds to it."""
    address = urlsplit(proxy.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {proxy.key}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode())
        received = b""
        while b"\r\n" not in received:
            piece = sock.recv(4096)
            if not piece:
                break
            received += piece
    return int(received.split(b" ")[1]) if received else 0, time.monotonic() - started
