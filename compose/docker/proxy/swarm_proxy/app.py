"""The proxy's HTTP surface: OpenAI's endpoints, health, readiness, metrics, OpenAPI.

The streaming path relays the upstream's events as they arrive (framed whole, counted, the
usage chunk read and dropped where the client did not ask for it: see accounting.py) and closes
the upstream request when the client goes away. Streams go upstream with
stream_options.include_usage true, so that they are charged their real usage.
Tokens are reserved once the body is validated and settled after the answer (ratelimit.py).
The key and the rate limits are decided from the headers before the body is read (intake.py
reads it, bounded); any exception the handlers did not foresee is still a 500 in OpenAI's shape.
A client that leaves before its answer starts cancels the upstream request (abandon.py). The
proxy's own refusals (401, 404, 429) are logged like answers, one line each.
Run it with `python -m swarm_proxy.server` (server.py: uvicorn with bounded request heads).
"""
from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from swarm_proxy.abandon import CLIENT_CLOSED, ClientGone, unless_abandoned
from swarm_proxy.accounting import (EventStream, cacheable_answer, charged, clamp, prompt_estimate,
                                    reservation_estimate, usage_of)
from swarm_proxy.cache import ResponseCache, cache_key, cacheable
from swarm_proxy.config import OPENAI, ClientKey, Settings, from_environment
from swarm_proxy.errors import ProxyError, bad_request, documented, internal_error, relayed_error, unauthorized
from swarm_proxy.intake import Body, component_schemas, parse_body, read_body, request_body_openapi
from swarm_proxy.ratelimit import RateLimiter, Reservation, Verdict
from swarm_proxy.readiness import Readiness
from swarm_proxy.telemetry import CANCELLED, LATENCY, RATE_LIMITED, REQUESTS, TOKENS, LangfuseTracer, bounded, event
from swarm_proxy.upstream import Upstreams, as_proxy_error

VERSION = "0.2.0"
RELAYED = documented(400, 401, 404, 408, 413, 429, 500, 502, 503, 504)


def _refused(verdict: Verdict, endpoint: str, key_id: str, model: str | None = None) -> ProxyError:
    """The 429 of a spent limit, `type` saying which (requests or tokens), with Retry-After; logged."""
    RATE_LIMITED.labels(verdict.limit).inc()
    REQUESTS.labels(endpoint, "429").inc()
    event("request", key=key_id, endpoint=endpoint, **({"model": bounded(model)} if model is not None else {}),
          status=429, limit=verdict.limit, retry_after=verdict.retry_after)
    return ProxyError(429, f"Rate limit reached for {verdict.limit} per minute on this key; retry after "
                           f"{verdict.retry_after} s.", verdict.limit, "rate_limit_exceeded",
                      headers={**verdict.headers, "Retry-After": str(verdict.retry_after)})


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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstreams = Upstreams(settings)
        app.state.limiter = RateLimiter(settings.redis_url)
        app.state.cache = ResponseCache(settings.redis_url, settings.cache_ttl, settings.cache_enabled,
                                        settings.cache_max_bytes, settings.cache_max_entry_bytes)
        app.state.readiness = Readiness(settings, app.state.upstreams)
        app.state.tracer = (LangfuseTracer(settings.langfuse_host, settings.langfuse_public_key,
                                           settings.langfuse_secret_key) if settings.tracing else None)
        event("proxy started", routes=[f"{r.pattern}={'openai' if r.upstream == OPENAI else r.upstream}" for r in settings.routes],
              keys=len(settings.keys), redis=bool(settings.redis_url), cache=app.state.cache.active,
              tracing=settings.tracing)
        yield
        await app.state.upstreams.aclose()
        await app.state.limiter.aclose()
        await app.state.cache.aclose()
        await app.state.readiness.aclose()
        if app.state.tracer is not None:
            await app.state.tracer.aclose()

    app = FastAPI(title="vLLM Local Swarm proxy", version=VERSION, lifespan=lifespan,
                  description="OpenAI-compatible gateway to the swarm's local models and OpenAI.")

    @app.exception_handler(ProxyError)
    async def proxy_error(request: Request, error: ProxyError) -> JSONResponse:
        return error.response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette still logs the traceback; the client gets OpenAI's shape, not text/plain.
        REQUESTS.labels(request.url.path, "500").inc()
        event("unexpected error", endpoint=request.url.path, error=type(error).__name__)
        return internal_error().response()

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (no such path, wrong method) in OpenAI's shape, not {"detail"}.
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        body = {"error": {"message": f"{request.method} {request.url.path[:200]}: {error.detail}", "type": kind,
                          "param": None, "code": code}}
        return JSONResponse(status_code=error.status_code, content=body, headers=dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return bad_request("The request body is not valid JSON.").response()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return bad_request(f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}.", where).response()

    def bearer(request: Request) -> ClientKey | None:
        """The key of `Authorization: Bearer <key>` (the scheme in any case), if it is one of ours."""
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        return settings.keys.get(token.strip()) if scheme.lower() == "bearer" else None

    def client_key(request: Request) -> ClientKey:
        # Decided from the header alone: no endpoint parameter makes FastAPI read the body first.
        client = bearer(request)
        if client is None:
            REQUESTS.labels(request.url.path, "401").inc()
            event("request", endpoint=request.url.path, status=401, error="invalid_api_key")  # never the key sent
            raise unauthorized()
        return client

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers. Cheap; touches no dependency."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready(request: Request) -> JSONResponse:
        """Readiness: every local upstream lists its models and Redis (when configured) answers.
        Upstream addresses only for a caller with a key; upstreams checked at most every 5 s."""
        problems = await request.app.state.readiness.problems(detailed=bearer(request) is not None)
        return JSONResponse(status_code=503 if problems else 200, content={"ready": not problems, "problems": problems})

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["openai"], responses=documented(401, 500))
    async def models(request: Request, client: ClientKey = Depends(client_key)) -> JSONResponse:
        """The union of the models every upstream serves."""
        upstreams: Upstreams = request.app.state.upstreams
        data: dict[str, dict[str, Any]] = {}
        for upstream in upstreams.distinct():
            if upstream == OPENAI and not settings.openai_api_key:
                continue
            try:
                for item in await upstreams.models(upstream):
                    data.setdefault(str(item.get("id")), item)
            except (httpx.HTTPError, ValueError):
                continue
        REQUESTS.labels("/v1/models", "200").inc()
        return JSONResponse({"object": "list", "data": list(data.values())})

    async def relay(request: Request, path: str, client: ClientKey) -> Response:
        started, clock = time.time(), time.perf_counter()
        limiter: RateLimiter = request.app.state.limiter
        verdict = await limiter.admit(client)
        endpoint = f"/v1/{path}"
        if not verdict.allowed:
            raise _refused(verdict, endpoint, client.key_id)
        try:
            raw = await read_body(request, settings.max_body_bytes, settings.body_timeout)
            parsed = parse_body(path, raw, settings.max_messages)
        except ProxyError as error:
            REQUESTS.labels(endpoint, str(error.status)).inc()
            raise
        body = parsed.model  # every decision below is taken from the validated model
        model = body.model
        upstreams: Upstreams = request.app.state.upstreams
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

        prompt = prompt_estimate(body)

        async def reserve() -> Reservation | None:
            booked = await limiter.reserve(client, reservation_estimate(body, settings.reserve_max_tokens))
            headers.update(booked.headers)
            if not booked.allowed:
                raise _refused(Verdict(False, headers, booked.retry_after, booked.limit), endpoint, client.key_id, model)
            return booked.reservation

        if not body.streams:
            cache: ResponseCache = request.app.state.cache
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

            async def answer() -> tuple[httpx.Response, bytes]:
                reply = await upstreams.open(route, path, raw)  # validated: forwarded as it came
                try:
                    return reply, await reply.aread()
                finally:
                    await reply.aclose()

            try:
                try:
                    upstream, content = await unless_abandoned(request, answer)
                except ClientGone:
                    return abandoned(reserved=reservation is not None)  # `finally` gives the reservation back
                except (ProxyError, httpx.HTTPError) as error:
                    failure = as_proxy_error(error)
                    REQUESTS.labels(endpoint, str(failure.status)).inc()
                    event("request", **log_fields, status=failure.status, error=failure.code)
                    raise failure from None
                if upstream.status_code != 200 and (failure := relayed_error(upstream.status_code, content, endpoint)):
                    REQUESTS.labels(endpoint, str(failure.status)).inc()
                    event("request", **log_fields, status=failure.status, upstream_status=upstream.status_code)
                    raise failure
                usage = usage_of(content) if upstream.status_code == 200 else {}
                if upstream.status_code == 200:
                    real = charged(usage)
                    tokens = real if real is not None else prompt
            finally:
                with anyio.CancelScope(shield=True):  # a failed request gives its reservation back
                    await limiter.settle(client, reservation, tokens)
            TOKENS.inc(tokens)
            if key is not None and upstream.status_code == 200 and cacheable_answer(content):
                await cache.put(key, content)
            elapsed = time.perf_counter() - clock
            LATENCY.labels(endpoint, "false").observe(elapsed)
            REQUESTS.labels(endpoint, str(upstream.status_code)).inc()
            event("request", **log_fields, status=upstream.status_code, cache=headers.get("x-cache"),
                  tokens=tokens, ms=round(elapsed * 1e3, 1))
            if request.app.state.tracer is not None:
                request.app.state.tracer.trace(endpoint, bounded(model), client.key_id, started, upstream.status_code, usage)
            return Response(content, status_code=upstream.status_code,
                            media_type=upstream.headers.get("content-type", "application/json"), headers=headers)

        reservation = await reserve()
        handed_over = False
        try:
            try:  # once the stream has started, StreamingResponse notices a client leaving
                upstream = await unless_abandoned(request, lambda: upstreams.open(route, path, _with_usage(parsed)))
            except ClientGone:
                return abandoned(reserved=reservation is not None)  # `finally` settles it at 0
            if upstream.status_code != 200:
                try:
                    content = await upstream.aread()
                except httpx.HTTPError as error:  # the error's body broke off: a 502, not a 500
                    raise as_proxy_error(error) from None
                finally:
                    await upstream.aclose()
                if failure := relayed_error(upstream.status_code, content, endpoint):
                    raise failure
                REQUESTS.labels(endpoint, str(upstream.status_code)).inc()
                return Response(content, status_code=upstream.status_code,
                                media_type=upstream.headers.get("content-type", "application/json"), headers=headers)
            handed_over = True
        except ProxyError as error:
            REQUESTS.labels(endpoint, str(error.status)).inc()
            raise
        finally:
            if not handed_over:
                with anyio.CancelScope(shield=True):
                    await limiter.settle(client, reservation, 0)

        async def events() -> AsyncIterator[bytes]:
            completed, tokens = False, 0
            frames = EventStream(keep_usage_chunk=body.usage_asked)
            try:
                async for chunk in upstream.aiter_bytes():
                    if relayed := frames.feed(chunk):
                        yield relayed
                if rest := frames.rest():
                    yield rest
                if frames.cut:  # closed in the middle of an event: its half was dropped
                    yield _stream_error("the upstream closed the stream in the middle of an event")
                else:
                    completed = True
            except httpx.HTTPError as error:
                # Bytes were sent already: the status cannot change, so the error goes in the stream,
                # after the last whole event (a partial one is never relayed).
                yield _stream_error(type(error).__name__)
            finally:
                with anyio.CancelScope(shield=True):
                    await upstream.aclose()
                    real = charged(frames.usage)  # without usage: the prompt estimate + one token per event
                    tokens = real if real is not None else clamp(prompt + frames.events)
                    await limiter.settle(client, reservation, tokens)
                    TOKENS.inc(tokens)
                elapsed = time.perf_counter() - clock
                LATENCY.labels(endpoint, "true").observe(elapsed)
                if not completed:
                    CANCELLED.inc()
                REQUESTS.labels(endpoint, "200" if completed else "499").inc()
                event("request", **log_fields, status=200, stream=True, completed=completed, events=frames.events,
                      tokens=tokens, usage=real is not None, ms=round(elapsed * 1e3, 1))

        return StreamingResponse(events(), media_type=upstream.headers.get("content-type", "text/event-stream"),
                                 headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # No body parameter (see intake.py): the bodies are documented through openapi_extra.
    @app.post("/v1/chat/completions", tags=["openai"], openapi_extra=request_body_openapi("chat/completions"), responses=RELAYED)
    async def chat_completions(request: Request, client: ClientKey = Depends(client_key)) -> Response:
        """Chat completions, streaming or not, routed by model."""
        return await relay(request, "chat/completions", client)

    @app.post("/v1/completions", tags=["openai"], openapi_extra=request_body_openapi("completions"), responses=RELAYED)
    async def completions(request: Request, client: ClientKey = Depends(client_key)) -> Response:
        """Text completions, streaming or not, routed by model."""
        return await relay(request, "completions", client)

    @app.post("/v1/embeddings", tags=["openai"], openapi_extra=request_body_openapi("embeddings"), responses=RELAYED)
    async def embeddings(request: Request, client: ClientKey = Depends(client_key)) -> Response:
        """Embeddings, routed by model."""
        return await relay(request, "embeddings", client)

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the body models' schemas, which the operations refer to."""
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
