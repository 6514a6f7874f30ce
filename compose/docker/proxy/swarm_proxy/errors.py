"""Errors in the shape OpenAI's clients parse: {"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

import json
from typing import Mapping

from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ProxyError(Exception):
    """An error the proxy answers with, in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(status_code=self.status, content=body, headers=self.headers)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The error body, documented in /openapi.json so that a contract test can check the shape."""

    error: ErrorDetail


def documented(*statuses: int) -> dict[int | str, dict[str, object]]:
    """`responses=` for a route: each status the proxy may answer with, in OpenAI's shape."""
    why = {400: "Invalid request", 401: "Missing or wrong key", 404: "Model not routed", 408: "Body too slow",
           413: "Body too large",
           429: "Rate limit reached", 500: "Unforeseen failure", 502: "Upstream unreachable or failed",
           503: "Upstream overloaded", 504: "Upstream timeout"}
    return {status: {"model": ErrorResponse, "description": why[status]} for status in statuses}


def unauthorized() -> ProxyError:
    return ProxyError(401, "Incorrect or missing API key. Send it as `Authorization: Bearer <key>`.",
                      "invalid_request_error", "invalid_api_key")


def bad_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", None, param)


def model_not_found(model: str) -> ProxyError:
    return ProxyError(404, f"The model `{model}` does not exist or is not routed by this proxy.",
                      "invalid_request_error", "model_not_found", "model")


def upstream_unreachable(detail: str) -> ProxyError:
    return ProxyError(502, f"The upstream model server is unreachable ({detail}).", "upstream_error", "upstream_unreachable")


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "The upstream model server did not answer in time.", "upstream_error", "upstream_timeout")


def internal_error() -> ProxyError:
    """What any unforeseen failure answers: OpenAI's shape, no detail (that goes to the log)."""
    return ProxyError(500, "The proxy failed to handle the request.", "server_error", "internal_error")


# What an upstream's own 5xx becomes: the failure is the upstream's, and the proxy is a gateway.
# 502, 503 and 504 already say that (503 with its Retry-After) and pass as they are.
GATEWAY_STATUSES = (502, 503, 504)


def relayed_error(status: int, content: bytes, endpoint: str) -> ProxyError | None:
    """An upstream's error answer as the client gets it, or None where it passes unchanged.

    A 4xx in OpenAI's shape is relayed byte for byte (the engine's own words are the most exact).
    Anything else (FastAPI's `{"detail": ...}` for a route the engine lacks, text/plain, an HTML
    page) keeps its status and message inside OpenAI's shape, so that a client parsing
    `error.message` never fails; an upstream 500 is answered as a 502, never as the proxy's 500.
    """
    shaped, message = _upstream_message(content)
    if status < 400 or (shaped and status < 500):
        return None
    relayed = status if 400 <= status < 500 or status in GATEWAY_STATUSES else 502
    if status == 404 and not shaped:
        message = f"The upstream model server does not serve {endpoint} ({message or 'Not Found'})."
    kind = "invalid_request_error" if relayed < 500 else "upstream_error"
    return ProxyError(relayed, message or f"The upstream model server answered {status}.", kind, f"upstream_{status}")


def _upstream_message(content: bytes) -> tuple[bool, str]:
    """(whether `content` is in OpenAI's error shape, its message in at most 300 characters)."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return False, content[:300].decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return True, error["message"][:300]
        for field in ("detail", "message", "error"):
            if isinstance(body.get(field), str):
                return False, body[field][:300]
    return False, json.dumps(body)[:300]
