"""The proxy's HTTP surface: OpenAI's endpoints, health, readiness, metrics, OpenAPI.

The streaming path relays the upstream's bytes as they arrive (no parsing beyond counting
events and spotting the usage chunk) and closes the upstream request when the client goes away.
The key and the rate limits are decided from the headers before the body is read (intake.py
reads it, bounded); any exception the handlers did not foresee is still a 500 in OpenAI's shape.
Run it with `python -m swarm_proxy.server` (server.py: uvicorn with bounded request heads).
"""
from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx
import redis.asyncio as redis_asyncio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from swarm_proxy.cache import ResponseCache, cache_key, cacheable
from swarm_proxy.config import OPENAI, ClientKey, Settings, from_environment
from swarm_proxy.errors import ProxyError, bad_request, documented, internal_error, relayed_error, unauthorized
from swarm_proxy.intake import component_schemas, parse_body, read_body, request_body_openapi
from swarm_proxy.ratelimit import RateLimiter
from swarm_proxy.telemetry import CANCELLED, LATENCY, RATE_LIMITED, REQUESTS, TOKENS, LangfuseTracer, event
from swarm_proxy.upstream import Upstreams, as_proxy_error

VERSION = "0.2.0"
RELAYED = documented(400, 401, 404, 408, 413, 429, 500, 502, 503, 504)


def _usage(content: bytes) -> dict[str, int]:
    """The whole-number counts of an answer's `usage`; anything else an upstream sends (a string,
    a list, no JSON at all) counts as no usage rather than failing an answer already made."""
    try:
        answer = json.loads(content)
    except ValueError:
        return {}
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return {}
    return {str(k): v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def _usage_from_events(chunk: bytes) -> dict[str, int]:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data:") and b'"usage"' in line:
            usage = _usage(line[5:].strip())
            if usage:
                return usage
    return {}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstreams = Upstreams(settings)
        app.state.limiter = RateLimiter(settings.redis_url)
        app.state.cache = ResponseCache(settings.redis_url, settings.cache_ttl, settings.cache_enabled)
        app.state.tracer = (LangfuseTracer(settings.langfuse_host, settings.langfuse_public_key,
                                           settings.langfuse_secret_key) if settings.tracing else None)
        event("proxy started", routes=[f"{r.pattern}={'openai' if r.upstream == OPENAI else r.upstream}" for r in settings.routes],
              keys=len(settings.keys), redis=bool(settings.redis_url), cache=app.state.cache.active,
              tracing=settings.tracing)
        yield
        await app.state.upstreams.aclose()
        await app.state.cache.aclose()
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

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return bad_request("The request body is not valid JSON.").response()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return bad_request(f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}.", where).response()

    def client_key(request: Request) -> ClientKey:
        # Decided from the header alone: no endpoint parameter makes FastAPI read the body first.
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        client = settings.keys.get(token.strip()) if scheme.lower() == "bearer" else None
        if client is None:
            REQUESTS.labels(request.url.path, "401").inc()
            raise unauthorized()
        return client

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers. Cheap; touches no dependency."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready(request: Request) -> JSONResponse:
        """Readiness: every local upstream lists its models and Redis (when configured) answers."""
        problems: list[str] = []
        upstreams: Upstreams = request.app.state.upstreams
        for upstream in upstreams.distinct():
            if upstream == OPENAI:
                continue
            try:
                await upstreams.models(upstream, fresh=True)
            except httpx.HTTPError as error:
                problems.append(f"upstream {upstream}: {type(error).__name__}")
        if settings.redis_url:
            client = redis_asyncio.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
            try:
                await client.ping()
            except Exception as error:  # noqa: BLE001 - any failure means Redis is not usable
                problems.append(f"redis: {type(error).__name__}")
            finally:
                await client.aclose()
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
            RATE_LIMITED.labels(verdict.limit).inc()
            REQUESTS.labels(endpoint, "429").inc()
            raise ProxyError(429, f"Rate limit reached for {verdict.limit} per minute on this key; retry after "
                                  f"{verdict.retry_after} s.", verdict.limit, "rate_limit_exceeded",
                             headers={**verdict.headers, "Retry-After": str(verdict.retry_after)})
        try:
            raw = await read_body(request, settings.max_body_bytes, settings.body_timeout)
            body = parse_body(path, raw, settings.max_messages)
        except ProxyError as error:
            REQUESTS.labels(endpoint, str(error.status)).inc()
            raise
        model = str(body.get("model"))
        upstreams: Upstreams = request.app.state.upstreams
        route = await upstreams.resolve(model)
        headers = dict(verdict.headers)
        log_fields = {"key": client.key_id, "endpoint": endpoint, "model": model}

        if not body.get("stream"):
            cache: ResponseCache = request.app.state.cache
            scope = client.key_id if settings.cache_scope == "key" else "shared"
            key = cache_key(path, body, scope) if cacheable(body) and cache.active else None
            if key is not None:
                hit = await cache.get(key)
                if hit is not None:
                    REQUESTS.labels(endpoint, "200").inc()
                    event("request", **log_fields, status=200, cache="hit", ms=round((time.perf_counter() - clock) * 1e3, 1))
                    return Response(hit, media_type="application/json", headers={**headers, "x-cache": "hit"})
                headers["x-cache"] = "miss"
            try:
                upstream = await upstreams.open(route, path, raw)
                try:
                    content = await upstream.aread()
                finally:
                    await upstream.aclose()
            except (ProxyError, httpx.HTTPError) as error:
                failure = as_proxy_error(error)
                REQUESTS.labels(endpoint, str(failure.status)).inc()
                event("request", **log_fields, status=failure.status, error=failure.code)
                raise failure from None
            if upstream.status_code != 200 and (failure := relayed_error(upstream.status_code, content, endpoint)):
                REQUESTS.labels(endpoint, str(failure.status)).inc()
                event("request", **log_fields, status=failure.status, upstream_status=upstream.status_code)
                raise failure
            usage = _usage(content) if upstream.status_code == 200 else {}
            await limiter.charge_tokens(client, usage.get("total_tokens", 0))
            TOKENS.inc(usage.get("total_tokens", 0))
            if key is not None and upstream.status_code == 200:
                await cache.put(key, content)
            elapsed = time.perf_counter() - clock
            LATENCY.labels(endpoint, "false").observe(elapsed)
            REQUESTS.labels(endpoint, str(upstream.status_code)).inc()
            event("request", **log_fields, status=upstream.status_code, cache=headers.get("x-cache"),
                  tokens=usage.get("total_tokens", 0), ms=round(elapsed * 1e3, 1))
            if request.app.state.tracer is not None:
                request.app.state.tracer.trace(endpoint, model, client.key_id, started, upstream.status_code, usage)
            return Response(content, status_code=upstream.status_code,
                            media_type=upstream.headers.get("content-type", "application/json"), headers=headers)

        try:
            upstream = await upstreams.open(route, path, raw)
        except ProxyError as error:
            REQUESTS.labels(endpoint, str(error.status)).inc()
            raise
        if upstream.status_code != 200:
            content = await upstream.aread()
            await upstream.aclose()
            if failure := relayed_error(upstream.status_code, content, endpoint):
                REQUESTS.labels(endpoint, str(failure.status)).inc()
                raise failure
            REQUESTS.labels(endpoint, str(upstream.status_code)).inc()
            return Response(content, status_code=upstream.status_code,
                            media_type=upstream.headers.get("content-type", "application/json"), headers=headers)

        async def events() -> AsyncIterator[bytes]:
            completed, count, usage = False, 0, {}
            try:
                async for chunk in upstream.aiter_raw():
                    count += chunk.count(b"data:")
                    if b'"usage"' in chunk:
                        usage = _usage_from_events(chunk) or usage
                    yield chunk
                completed = True
            except httpx.HTTPError as error:
                # Bytes were sent already: the status cannot change, so the error goes in the stream.
                message = {"error": {"message": f"The upstream stream broke ({type(error).__name__}).",
                                     "type": "upstream_error", "param": None, "code": "upstream_stream_error"}}
                yield f"data: {json.dumps(message)}\n\n".encode()
            finally:
                with anyio.CancelScope(shield=True):
                    await upstream.aclose()
                    tokens = usage.get("total_tokens") or max(0, count - 1)
                    await limiter.charge_tokens(client, tokens)
                    TOKENS.inc(tokens)
                elapsed = time.perf_counter() - clock
                LATENCY.labels(endpoint, "true").observe(elapsed)
                if not completed:
                    CANCELLED.inc()
                REQUESTS.labels(endpoint, "200" if completed else "499").inc()
                event("request", **log_fields, status=200, stream=True, completed=completed, events=count,
                      tokens=tokens, ms=round(elapsed * 1e3, 1))

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
