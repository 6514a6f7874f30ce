"""Reading a request's body, bounded, after the key and the limits were decided from the headers.

The endpoints declare no pydantic body parameter: FastAPI would read and parse the whole body
before any dependency runs, so a client without a key could make the proxy hold any amount of
memory. Here the body is read chunk by chunk up to PROXY_MAX_BODY_BYTES (413 beyond it), parsed
once, the number of messages checked (PROXY_MAX_MESSAGES) before pydantic builds an object per
message, and only then validated. The models still document the bodies in /openapi.json.
"""
from __future__ import annotations

import json
from typing import Any

import anyio

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from swarm_proxy.errors import ProxyError, bad_request


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class CompletionRequest(_Open):
    model: str = Field(min_length=1)
    prompt: str | list[str]
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[str]


BODIES: dict[str, type[BaseModel]] = {
    "chat/completions": ChatCompletionRequest,
    "completions": CompletionRequest,
    "embeddings": EmbeddingRequest,
}
SCHEMA_REF = "#/components/schemas/{model}"


def too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"The request body is larger than this proxy accepts ({limit} bytes).",
                      "invalid_request_error", "request_too_large")


def too_slow(timeout: float) -> ProxyError:
    return ProxyError(408, f"The request body did not arrive within {timeout:g} s.", "invalid_request_error",
                      "request_timeout")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit`: from Content-Length
    before a byte is read, or while reading a chunked body (never more than `limit` plus a chunk);
    and with 408 when it has not all arrived `timeout` seconds after the headers (a trickled body
    would otherwise hold its socket and buffer for as long as the client likes)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(timeout) as deadline:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    if deadline.cancelled_caught:
        raise too_slow(timeout)
    return b"".join(chunks)


def _invalid(error: ValidationError) -> ProxyError:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())) or None
    return bad_request(f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}.", where)


def parse_body(path: str, raw: bytes, max_messages: int) -> dict[str, Any]:
    """The body as a dict, validated against its endpoint's model; every failure is a 400."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the parser
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    messages = body.get("messages")
    if max_messages and isinstance(messages, list) and len(messages) > max_messages:
        raise bad_request(f"Invalid 'messages': array too long ({len(messages)}); this proxy accepts at most "
                          f"{max_messages}.", "messages")
    try:
        BODIES[path].model_validate(body)
    except ValidationError as error:
        raise _invalid(error) from None
    return body


def request_body_openapi(path: str) -> dict[str, Any]:
    """The operation's requestBody for /openapi.json (FastAPI cannot infer it without a parameter)."""
    name = BODIES[path].__name__
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model=name)}}}}}


def component_schemas() -> dict[str, Any]:
    """The body models' JSON schemas, to add to the document's components."""
    _, top = models_json_schema([(model, "validation") for model in BODIES.values()], ref_template=SCHEMA_REF)
    return dict(top.get("$defs", {}))
