"""Reading a request's body, bounded, after the key and the limits were decided from the headers.

The endpoints declare no pydantic body parameter: FastAPI would read and parse the whole body
before any dependency runs, so a client without a key could make the proxy hold any amount of
memory. Here the body is read chunk by chunk up to PROXY_MAX_BODY_BYTES (413 beyond it), parsed
once, the number of messages checked (PROXY_MAX_MESSAGES) before pydantic builds an object per
message, and only then validated. The models still document the bodies in /openapi.json.

The fields the proxy decides on (model, stream, stream_options.include_usage, max_tokens,
max_completion_tokens, n, temperature) have strict types: `"stream": "false"` or
`"max_tokens": "5"` is a 400, never coerced. The proxy decides from the validated model only;
a lax parse would have let the raw dict (where "false" is truthy) and the model disagree.
`null` stays allowed where OpenAI's schema allows it (it means the default).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import ClientDisconnect, Request

from swarm_proxy.errors import ProxyError, bad_request


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    role: StrictStr
    content: StrictStr | list[dict[str, Any]] | None = None


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class _Generation(_Open):
    model: StrictStr = Field(min_length=1)
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    n: StrictInt | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)  # a number: not "0", not true

    @property
    def streams(self) -> bool:
        return bool(self.stream)

    @property
    def usage_asked(self) -> bool:
        """Whether the client asked for the usage chunk of a stream (OpenAI sends none otherwise)."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)


class CompletionRequest(_Generation):
    prompt: StrictStr | list[StrictStr]


class EmbeddingRequest(_Open):
    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[StrictStr]

    @property
    def streams(self) -> bool:
        return False


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
    would otherwise hold its socket and buffer for as long as the client likes). Read from the
    ASGI channel itself: Starlette's stream() and an anyio deadline cost more than the rest of
    reading together, for a body that nearly always arrives with its headers."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise too_slow(timeout) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _invalid(error: ValidationError) -> ProxyError:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())) or None
    return bad_request(f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}.", where)


@dataclass(frozen=True)
class Body:
    """A validated request: `model` to decide from, `data` (the parsed JSON it was validated from)
    to forward where the raw bytes cannot be (a stream gets stream_options added)."""

    model: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    data: dict[str, Any]


def parse_body(path: str, raw: bytes, max_messages: int) -> Body:
    """The body, validated against its endpoint's model; every failure is a 400."""
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
        model = BODIES[path].model_validate(body)
    except ValidationError as error:
        raise _invalid(error) from None
    return Body(model, body)  # type: ignore[arg-type]


def request_body_openapi(path: str) -> dict[str, Any]:
    """The operation's requestBody for /openapi.json (FastAPI cannot infer it without a parameter)."""
    name = BODIES[path].__name__
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model=name)}}}}}


def component_schemas() -> dict[str, Any]:
    """The body models' JSON schemas, to add to the document's components."""
    _, top = models_json_schema([(model, "validation") for model in BODIES.values()], ref_template=SCHEMA_REF)
    return dict(top.get("$defs", {}))
