"""Errors in the shape OpenAI's clients parse: {"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

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
    why = {400: "Invalid request", 401: "Missing or wrong key", 404: "Model not routed", 413: "Body too large",
           429: "Rate limit reached", 500: "Unforeseen failure", 502: "Upstream unreachable", 504: "Upstream timeout"}
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
