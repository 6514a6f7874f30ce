"""OpenAI-compatible gateway: authenticates clients and routes by model name to upstreams.

Configuration (environment):
  PROXY_API_KEYS  comma-separated bearer keys clients must present
  PROXY_ROUTES    comma-separated `pattern=base_url` pairs, fnmatch patterns, first match wins
  OPENAI_API_KEY  sent upstream for routes to api.openai.com
  REDIS_URL       checked by /ready when set
Streaming answers are passed through chunk by chunk, without buffering.
"""
from __future__ import annotations

import fnmatch
import os
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as redis_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

API_KEYS = {key.strip() for key in os.environ.get("PROXY_API_KEYS", "").split(",") if key.strip()}
ROUTES = [
    tuple(part.split("=", 1))
    for part in os.environ.get("PROXY_ROUTES", "*=http://llm:8000/v1").split(",")
    if "=" in part
]
OPENAI_KEY = os.environ.get("OPENAI_API_KEY", "")
REDIS_URL = os.environ.get("REDIS_URL", "")


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """An error body in the shape OpenAI's clients parse."""
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": None, "code": code}})


def upstream_for(model: str) -> str | None:
    for pattern, base_url in ROUTES:
        if fnmatch.fnmatch(model, pattern):
            return base_url.rstrip("/")
    return None


def upstream_headers(base_url: str) -> dict[str, str]:
    if "api.openai.com" in base_url and OPENAI_KEY:
        return {"Authorization": f"Bearer {OPENAI_KEY}"}
    return {}


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0))
    yield
    await app.state.http.aclose()


app = FastAPI(title="vLLM Local Swarm proxy", version="0.1.0", lifespan=lifespan)


def authorised(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    return header.startswith("Bearer ") and header[7:] in API_KEYS


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ready")
async def ready(request: Request) -> JSONResponse:
    problems: list[str] = []
    for _, base_url in ROUTES:
        if "api.openai.com" in base_url:
            continue
        try:
            (await request.app.state.http.get(f"{base_url.rstrip('/')}/models", timeout=3.0)).raise_for_status()
        except httpx.HTTPError as error:
            problems.append(f"upstream {base_url}: {type(error).__name__}")
    if REDIS_URL:
        client = redis_asyncio.from_url(REDIS_URL, socket_timeout=2)
        try:
            await client.ping()
        except Exception as error:  # redis raises several families; all mean "not ready"
            problems.append(f"redis: {type(error).__name__}")
        finally:
            await client.aclose()
    return JSONResponse(status_code=503 if problems else 200, content={"ready": not problems, "problems": problems})


@app.get("/v1/models")
async def models(request: Request) -> JSONResponse:
    if not authorised(request):
        return openai_error(401, "Missing or invalid API key.", "invalid_request_error", "invalid_api_key")
    data: dict[str, dict] = {}
    for _, base_url in ROUTES:
        try:
            response = await request.app.state.http.get(f"{base_url.rstrip('/')}/models", headers=upstream_headers(base_url), timeout=5.0)
            for model in response.json().get("data", []):
                data.setdefault(model["id"], model)
        except (httpx.HTTPError, ValueError):
            continue
    return JSONResponse({"object": "list", "data": list(data.values())})


async def forward(request: Request, path: str) -> Response:
    if not authorised(request):
        return openai_error(401, "Missing or invalid API key.", "invalid_request_error", "invalid_api_key")
    try:
        body = await request.json()
    except ValueError:
        return openai_error(400, "The request body is not valid JSON.", "invalid_request_error")
    model = str(body.get("model", ""))
    base_url = upstream_for(model)
    if base_url is None:
        return openai_error(404, f"The model '{model}' does not exist.", "invalid_request_error", "model_not_found")
    http: httpx.AsyncClient = request.app.state.http
    upstream = http.build_request("POST", f"{base_url}/{path}", json=body, headers=upstream_headers(base_url))
    try:
        response = await http.send(upstream, stream=True)
    except httpx.TimeoutException:
        return openai_error(504, "The upstream model server timed out.", "upstream_error")
    except httpx.HTTPError:
        return openai_error(502, "The upstream model server is unreachable.", "upstream_error")
    media_type = response.headers.get("content-type", "application/json")
    return StreamingResponse(
        response.aiter_raw(), status_code=response.status_code, media_type=media_type,
        background=BackgroundTask(response.aclose),
    )


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await forward(request, "chat/completions")


@app.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await forward(request, "completions")


@app.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await forward(request, "embeddings")
