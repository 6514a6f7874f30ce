"""The proxy's FastAPI application: health, readiness, metrics, models, the OpenAPI document.

The relayed OpenAI endpoints (POST /v1/chat/completions, /v1/completions, /v1/embeddings) are
served ahead of FastAPI by the gateway (gateway.py, relay.py); their operations are described
here, in /openapi.json, by routes that are documented and never routed. The lifespan builds what
relaying needs (upstreams, limits, cache, tracing) once. The proxy's own refusals (401, 404,
429) are logged like answers, one line each; anything unforeseen is a 500 in OpenAI's shape.
Run it with `python -m swarm_proxy.server` (server.py: uvicorn with bounded request heads).
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from swarm_proxy.auth import authenticate, bearer
from swarm_proxy.cache import ResponseCache
from swarm_proxy.config import OPENAI, ClientKey, Settings
from swarm_proxy.errors import ProxyError, bad_request, documented, internal_error
from swarm_proxy.intake import component_schemas, request_body_openapi
from swarm_proxy.ratelimit import RateLimiter
from swarm_proxy.readiness import Readiness
from swarm_proxy.relay import Relay
from swarm_proxy.telemetry import REQUESTS, LangfuseTracer, event
from swarm_proxy.upstream import TRANSPORT_ERRORS, Upstreams

VERSION = "0.2.0"
RELAYED = documented(400, 401, 404, 408, 413, 429, 500, 502, 503, 504)
RELAYED_PATHS = ("chat/completions", "completions", "embeddings")


def _relayed_operations() -> APIRouter:
    """The relayed endpoints as /openapi.json describes them. Documented, never routed: the
    gateway serves these paths before FastAPI sees them. No body parameter (see intake.py): the
    bodies are documented through openapi_extra."""
    described = APIRouter()

    @described.post("/v1/chat/completions", tags=["openai"], openapi_extra=request_body_openapi("chat/completions"),
                     responses=RELAYED)
    async def chat_completions() -> None:
        """Chat completions, streaming or not, routed by model."""

    @described.post("/v1/completions", tags=["openai"], openapi_extra=request_body_openapi("completions"),
                     responses=RELAYED)
    async def completions() -> None:
        """Text completions, streaming or not, routed by model."""

    @described.post("/v1/embeddings", tags=["openai"], openapi_extra=request_body_openapi("embeddings"),
                     responses=RELAYED)
    async def embeddings() -> None:
        """Embeddings, routed by model."""

    return described


def create_api(settings: Settings) -> FastAPI:

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstreams = Upstreams(settings)
        app.state.limiter = RateLimiter(settings.redis_url, settings.early_admission)
        app.state.cache = ResponseCache(settings.redis_url, settings.cache_ttl, settings.cache_enabled,
                                        settings.cache_max_bytes, settings.cache_max_entry_bytes)
        app.state.readiness = Readiness(settings, app.state.upstreams)
        app.state.tracer = (LangfuseTracer(settings.langfuse_host, settings.langfuse_public_key,
                                           settings.langfuse_secret_key) if settings.tracing else None)
        app.state.relay = Relay(settings, app.state.upstreams, app.state.limiter, app.state.cache, app.state.tracer)
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

    async def client_key(request: Request) -> ClientKey:
        # Async: FastAPI runs a plain `def` dependency in a worker thread, a hand-off per request.
        return authenticate(request.headers, settings.keys, request.url.path)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers. Cheap; touches no dependency."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready(request: Request) -> JSONResponse:
        """Readiness: every local upstream lists its models and Redis (when configured) answers.
        Upstream addresses only for a caller with a key; upstreams checked at most every 5 s."""
        problems = await request.app.state.readiness.problems(detailed=bearer(request.headers, settings.keys) is not None)
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
            except (*TRANSPORT_ERRORS, ValueError):
                continue
        REQUESTS.labels("/v1/models", "200").inc()
        return JSONResponse({"object": "list", "data": list(data.values())})

    described = _relayed_operations()

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the relayed operations and the body models' schemas they refer to."""
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes + described.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
