"""The proxy's ASGI application: the relayed OpenAI endpoints first, everything else FastAPI.

POST /v1/chat/completions, /v1/completions and /v1/embeddings carry all the traffic. Through
FastAPI's stack (its middlewares, dependency solving, telemetry, exception wrappers) each
request cost about as much CPU as relaying it, so the gateway authenticates and relays them
itself (auth.py, relay.py) and hands every other request (health, readiness, metrics, models,
the OpenAPI document, unknown paths) to FastAPI (app.py), whose document still describes the
relayed operations. Errors are answered as FastAPI's handlers did: a ProxyError in OpenAI's
shape, another method than POST a 405, anything unforeseen a 500 in OpenAI's shape (then
raised on, so that uvicorn logs its traceback as it did behind Starlette's middleware).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from swarm_proxy.abandon import CLIENT_CLOSED, Watch
from swarm_proxy.app import RELAYED_PATHS, create_api
from swarm_proxy.auth import authenticate
from swarm_proxy.config import Settings, from_environment
from swarm_proxy.errors import ProxyError, internal_error
from swarm_proxy.relay import RelayedStream
from swarm_proxy.telemetry import REQUESTS, event

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RELAYED = {f"/v1/{path}": path for path in RELAYED_PATHS}


def _not_allowed(method: str, path: str) -> JSONResponse:
    body = {"error": {"message": f"{method} {path}: Method Not Allowed", "type": "invalid_request_error",
                      "param": None, "code": "method_not_allowed"}}
    return JSONResponse(status_code=405, content=body, headers={"Allow": "POST"})


class Gateway:
    def __init__(self, api: FastAPI, settings: Settings) -> None:
        self.api, self.settings = api, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = RELAYED.get(scope.get("path", "")) if scope["type"] == "http" else None
        if path is None:
            await self.api(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _not_allowed(scope["method"], scope["path"])(scope, receive, send)
            return
        request = Request(scope, receive)
        watch = Watch(request)
        try:
            client = authenticate(request.headers, self.settings.keys, scope["path"])
            response = await self.api.state.relay(request, path, client, watch)
        except ProxyError as error:
            response = error.response()
        except ClientDisconnect:  # gone while sending its body: nobody to answer
            REQUESTS.labels(scope["path"], str(CLIENT_CLOSED)).inc()
            event("request", endpoint=scope["path"], status=CLIENT_CLOSED, error="client_disconnected_during_body")
            return
        except asyncio.CancelledError:
            await watch.stop()
            if watch.caught():  # the client left: nobody to answer
                return
            raise
        except Exception as error:
            await watch.stop()
            REQUESTS.labels(scope["path"], "500").inc()
            event("unexpected error", endpoint=scope["path"], error=type(error).__name__)
            await internal_error().response()(scope, receive, send)
            raise
        if not isinstance(response, RelayedStream):  # a stream is watched to its end (it stops the watch)
            await watch.stop()
        await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> Gateway:
    """uvicorn's factory (server.py): the gateway in front of the FastAPI application."""
    settings = settings or from_environment()
    return Gateway(create_api(settings), settings)
