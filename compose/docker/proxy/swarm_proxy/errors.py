"""Errors in the shape OpenAI's clients parse: {"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

from typing import Mapping

from fastapi.responses import JSONResponse


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
