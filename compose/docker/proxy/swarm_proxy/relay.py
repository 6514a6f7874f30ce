"""Relaying one OpenAI request (chat completions, completions, embeddings) to its upstream.

The streaming path relays the upstream's events as they arrive (framed whole, counted, the
usage chunk read and dropped where the client did not ask for it: see accounting.py) and closes
the upstream request when the client goes away. Streams go upstream with
stream_options.include_usage true, so that they are charged their real usage.
Tokens are reserved once the body is validated and settled after the answer (ratelimit.py).
The key was decided from the headers before the body is read (the gateway, auth.py; intake.py
reads the body, bounded), and so is the request limit, except for a key far from its limits
under early admission (ratelimit.py): its stream is counted and booked in Redis while it goes
upstream, and that verdict is waited for before the first byte is relayed. A client that leaves before its answer
starts cancels the upstream request (abandon.py). Every answer is logged, one line each.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response

from swarm_proxy.abandon import CLIENT_CLOSED, ClientGone, Watch, unless_abandoned
from swarm_proxy.accounting import (EventStream, cacheable_answer, charged, clamp, prompt_estimate,
                                    reservation_estimate, usage_of)
from swarm_proxy.cache import ResponseCache, cache_key, cacheable
from swarm_proxy.config import ClientKey, Settings
from swarm_proxy.early import EarlyStart
from swarm_proxy.errors import ProxyError, relayed_error
from swarm_proxy.intake import Body, parse_body, read_body
from swarm_proxy.ratelimit import RateLimiter, Reservation, Verdict
from swarm_proxy.telemetry import CANCELLED, LATENCY, RATE_LIMITED, REQUESTS, TOKENS, LangfuseTracer, bounded, event
from swarm_proxy.upstream import TRANSPORT_ERRORS, Reply, Upstreams, as_proxy_error


def refused(verdict: Verdict, endpoint: str, key_id: str, model: str | None = None) -> ProxyError:
    """The 429 of a spent limit, `type` saying which (requests or tokens), with Retry-After; logged."""
    RATE_LIMITED.labels(verdict.limit).inc()
    REQUESTS.labels(endpoint, "429").inc()
    event("request", key=key_id, endpoint=endpoint, **({"model": bounded(model)} if model is not None else {}),
          status=429, limit=verdict.limit, retry_after=verdict.retry_after)
    return ProxyError(429, f"Rate limit reached for {verdict.limit} per minute on this key; retry after "
                           f"{verdict.retry_after} s.", verdict.limit, "rate_limit_exceeded",
                      headers={**verdict.headers, "Retry-After": str(verdict.retry_after)})


async def settle_shielded(limiter: RateLimiter, client: ClientKey, reservation: Reservation | None, tokens: int) -> None:
    """limiter.settle, out of reach of the request's cancellation (its client leaving, a shutdown),
    so that a reservation is always corrected. A key without a token limit has nothing to settle:
    the cancel scope (anyio's, a few microseconds a request) is not entered for it."""
    if not client.tpm:
        return
    with anyio.CancelScope(shield=True):
        await limiter.settle(client, reservation, tokens)


def _with_usage(parsed: Body) -> bytes:
    """A stream's body for the upstream: the validated JSON with stream_options.include_usage set,
    so that the usage chunk arrives and the charge is the real one. Where the client did not ask
    for usage, vLLM's continuous_usage_stats (usage in every chunk) is dropped too: it was a no-op
    without include_usage, and the proxy drops only the final usage chunk."""
    data = dict(parsed.data)
    options = dict(data.get("stream_options") or {})
    if not parsed.model.usage_asked:
        options.pop("continuous_usage_stats", None)
    options["include_usage"] = True
    data["stream_options"] = options
    return json.dumps(data).encode()


def _stream_error(why: str) -> bytes:
    """The error event of a stream that broke: an event of its own, after the last whole one."""
    message = {"error": {"message": f"The upstream stream broke ({why}).", "type": "upstream_error", "param": None,
                         "code": "upstream_stream_error"}}
    return f"data: {json.dumps(message)}\n\n".encode()


@dataclass
class Relay:
    """What relaying needs, made once at start (the app's lifespan)."""

    settings: Settings
    upstreams: Upstreams
    limiter: RateLimiter
    cache: ResponseCache
    tracer: LangfuseTracer | None

    async def __call__(self, request: Request, path: str, client: ClientKey,
                       watch: Watch) -> Response | RelayedStream:
        """The answer to an authenticated request for /v1/`path`, as an ASGI response; raises
        ProxyError. `watch` notices the client leaving once the body is read (the caller stops it)."""
        settings, limiter, upstreams = self.settings, self.limiter, self.upstreams
        started, clock = time.time(), time.perf_counter()
        early = limiter.admits_early(client)  # counted (and booked) once the body is read
        verdict = Verdict(True, {}) if early else await limiter.admit(client)
        endpoint = f"/v1/{path}"
        if not verdict.allowed:
            raise refused(verdict, endpoint, client.key_id)
        try:
            raw = await read_body(request, settings.max_body_bytes, settings.body_timeout)
            parsed = parse_body(path, raw, settings.max_messages)
        except ProxyError as error:
            REQUESTS.labels(endpoint, str(error.status)).inc()
            raise
        body = parsed.model  # every decision below is taken from the validated model
        model = body.model
        log_fields = {"key": client.key_id, "endpoint": endpoint, "model": bounded(model)}
        try:
            route = await upstreams.resolve(model)
        except ProxyError as error:  # 404 (not routed, not served) or the upstream's 502/504
            REQUESTS.labels(endpoint, str(error.status)).inc()
            event("request", **log_fields, status=error.status, error=error.code)
            raise
        headers = dict(verdict.headers)

        def abandoned(reserved: bool) -> Response:
            """The client left before its answer started: the upstream call was cancelled."""
            CANCELLED.inc()
            REQUESTS.labels(endpoint, str(CLIENT_CLOSED)).inc()
            event("request", **log_fields, status=CLIENT_CLOSED, abandoned=True, reservation_returned=reserved,
                  ms=round((time.perf_counter() - clock) * 1e3, 1))
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it: uvicorn drops it

        estimates: list[int] = []

        def prompt() -> int:
            """The prompt's estimate, made once and only where needed (a TPM, an answer without usage)."""
            if not estimates:
                estimates.append(prompt_estimate(body))
            return estimates[0]

        async def reserve() -> Reservation | None:
            if not client.tpm:  # nothing to book
                return None
            booked = await limiter.reserve(client, reservation_estimate(body, settings.reserve_max_tokens, prompt()))
            headers.update(booked.headers)
            if not booked.allowed:
                raise refused(Verdict(False, headers, booked.retry_after, booked.limit), endpoint, client.key_id, model)
            return booked.reservation

        def take(booked: Verdict) -> Reservation | None:
            headers.update(booked.headers)
            if not booked.allowed:
                raise refused(Verdict(False, headers, booked.retry_after, booked.limit), endpoint, client.key_id, model)
            return booked.reservation

        if not body.streams:
            if early:  # admitted now: an answer that is not streamed is not measured to the millisecond
                take(await limiter.admit(client))
            cache = self.cache
            scope = client.key_id if settings.cache_scope == "key" else "shared"
            key = cache_key(path, body, scope) if cacheable(body) and cache.active else None
            if key is not None:
                hit = await cache.get(key)
                if hit is not None:  # costs no tokens: nothing is reserved
                    REQUESTS.labels(endpoint, "200").inc()
                    event("request", **log_fields, status=200, cache="hit", ms=round((time.perf_counter() - clock) * 1e3, 1))
                    return Response(hit, media_type="application/json", headers={**headers, "x-cache": "hit"})
                headers["x-cache"] = "miss"
            reservation, tokens = await reserve(), 0

            async def answer() -> tuple[Reply, bytes]:
                reply = await upstreams.open(route, path, raw)  # validated: forwarded as it came
                try:
                    return reply, await reply.read()
                finally:
                    reply.close()  # read whole: back to the pool; cancelled: the connection closed

            try:
                try:
                    try:
                        upstream, content = await unless_abandoned(watch, answer)
                    finally:
                        await watch.stop()
                except ClientGone:
                    return abandoned(reserved=reservation is not None)  # `finally` gives the reservation back
                except (ProxyError, *TRANSPORT_ERRORS) as error:
                    failure = as_proxy_error(error)
                    REQUESTS.labels(endpoint, str(failure.status)).inc()
                    event("request", **log_fields, status=failure.status, error=failure.code)
                    raise failure from None
                if upstream.status != 200 and (failure := relayed_error(upstream.status, content, endpoint)):
                    REQUESTS.labels(endpoint, str(failure.status)).inc()
                    event("request", **log_fields, status=failure.status, upstream_status=upstream.status)
                    raise failure
                usage = usage_of(content) if upstream.status == 200 else {}
                if upstream.status == 200:
                    real = charged(usage)
                    tokens = real if real is not None else prompt()
            finally:
                await settle_shielded(limiter, client, reservation, tokens)  # a failed request gets its reservation back
            TOKENS.inc(tokens)
            if key is not None and upstream.status == 200 and cacheable_answer(content):
                await cache.put(key, content)
            elapsed = time.perf_counter() - clock
            LATENCY.labels(endpoint, "false").observe(elapsed)
            REQUESTS.labels(endpoint, str(upstream.status)).inc()
            event("request", **log_fields, status=upstream.status, cache=headers.get("x-cache"),
                  tokens=tokens, ms=round(elapsed * 1e3, 1))
            if self.tracer is not None:
                self.tracer.trace(endpoint, bounded(model), client.key_id, started, upstream.status, usage)
            return Response(content, status_code=upstream.status,
                            media_type=upstream.headers.get("content-type", "application/json"), headers=headers)

        early_start: EarlyStart | None = None  # the upstream call and Redis's verdict, together
        reservation, refusal = None, None
        if not early:
            reservation = await reserve()
        else:
            estimate = reservation_estimate(body, settings.reserve_max_tokens, prompt())
            if not limiter.books_early(client, estimate):  # near a limit: counted and booked first, one round trip
                reservation = take(await limiter.admit_and_reserve(client, estimate))
            else:
                early_start = EarlyStart(lambda: upstreams.open(route, path, _with_usage(parsed)),
                                         lambda: limiter.book_early(client, estimate))
        handed_over, left = False, False
        try:
            try:  # the watch goes on through the stream: a client leaving ends the relay loop
                if early_start is None:
                    upstream = await unless_abandoned(watch, lambda: upstreams.open(route, path, _with_usage(parsed)))
                else:
                    opened = await unless_abandoned(watch, early_start.reply)
                    booked = early_start.verdict
                    assert booked is not None  # reply() returns once the verdict is in
                    if opened is None:  # Redis refused (other replicas spent the window): the call was cancelled
                        refusal = booked
                    else:
                        upstream, reservation = opened, take(booked)
            except ClientGone:
                left = True
            if not left and refusal is None and upstream.status != 200:
                try:
                    content = await upstream.read()
                except TRANSPORT_ERRORS as error:  # the error's body broke off: a 502, not a 500
                    raise as_proxy_error(error) from None
                finally:
                    upstream.close()
                if failure := relayed_error(upstream.status, content, endpoint):
                    raise failure
                REQUESTS.labels(endpoint, str(upstream.status)).inc()
                return Response(content, status_code=upstream.status,
                                media_type=upstream.headers.get("content-type", "application/json"), headers=headers)
            handed_over = not left and refusal is None
        except ProxyError as error:
            REQUESTS.labels(endpoint, str(error.status)).inc()
            raise
        finally:
            if not handed_over:
                await watch.stop()
                if early_start is not None:  # the call cancelled (or its reply closed), the verdict waited for
                    reservation = (await early_start.abandon()).reservation
                await settle_shielded(limiter, client, reservation, 0)
        if left:
            return abandoned(reserved=reservation is not None)  # settled at 0 above
        if refusal is not None:
            take(refusal)  # raises its 429

        started_events: list[bool] = []

        async def events() -> AsyncIterator[bytes]:
            started_events.append(True)
            completed, tokens = False, 0
            frames = EventStream(keep_usage_chunk=body.usage_asked)
            try:
                async for chunk in upstream.chunks():
                    if relayed := frames.feed(chunk):
                        yield relayed
                if rest := frames.rest():
                    yield rest
                if frames.cut:  # closed in the middle of an event: its half was dropped
                    yield _stream_error("the upstream closed the stream in the middle of an event")
                else:
                    completed = True
            except TRANSPORT_ERRORS as error:
                # Bytes were sent already: the status cannot change, so the error goes in the stream,
                # after the last whole event (a partial one is never relayed), those that arrived
                # together with the break included.
                if relayed := frames.feed(upstream.unread()):
                    yield relayed
                yield _stream_error(type(error).__name__)
            finally:
                # The watch ends before the clean-up: a client that leaves once it has [DONE] must not
                # cancel the settlement (anyio's shield does not stop a task's own cancel()).
                await watch.stop()
                upstream.close()
                real = charged(frames.usage)  # without usage: the prompt estimate + one token per event
                tokens = real if real is not None else clamp(prompt() + frames.events)
                await settle_shielded(limiter, client, reservation, tokens)
                TOKENS.inc(tokens)
                elapsed = time.perf_counter() - clock
                LATENCY.labels(endpoint, "true").observe(elapsed)
                if not completed:
                    CANCELLED.inc()
                REQUESTS.labels(endpoint, "200" if completed else "499").inc()
                event("request", **log_fields, status=200, stream=True, completed=completed, events=frames.events,
                      tokens=tokens, usage=real is not None, ms=round(elapsed * 1e3, 1))

        head = {"content-type": upstream.headers.get("content-type", "text/event-stream"), **headers,
                "cache-control": "no-cache", "x-accel-buffering": "no"}
        async def unstarted() -> None:
            """The client left before the first piece was asked for: the events' own `finally`
            never runs, so the upstream's reply is closed and the reservation settled here."""
            if not started_events:
                upstream.close()
                await settle_shielded(limiter, client, reservation, 0)
                abandoned(reserved=reservation is not None)  # its log line and metrics

        return RelayedStream(events(), [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in head.items()], watch,
                             unstarted)


class RelayedStream:
    """A stream's ASGI response: each relayed piece sent as it is framed, until the upstream ends
    or the client leaves (the watch cancels the loop; the events' own `finally` then settles the
    tokens and logs). Starlette's StreamingResponse ran a task group and a second disconnect
    listener per stream for the same."""

    def __init__(self, pieces: AsyncIterator[bytes], headers: list[tuple[bytes, bytes]], watch: Watch,
                 release: Callable[[], Awaitable[None]]) -> None:
        self._pieces, self._headers, self._watch, self._release = pieces, headers, watch, release

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            async for piece in self._pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._watch.caught():
                raise
        finally:
            await self._pieces.aclose()  # type: ignore[attr-defined]
            await self._watch.stop()  # before the release's settlement: a client leaving must not cancel it
            await self._release()  # when the pieces never started (their own `finally` cleans up otherwise)
