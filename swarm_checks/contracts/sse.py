"""Streams: the SSE framing OpenAI's clients parse, and what the chunks of one answer must agree on.

OpenAI streams are Server-Sent Events of `data:` lines only, one JSON chunk per event, and the
literal `data: [DONE]` last. The openai SDK stops at `[DONE]` and turns `event: error` or an
`{"error": ...}` payload into an exception, so a stream that ends without `[DONE]`, carries
another field, or an error inside a 200, breaks clients even when every chunk parses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from typing import List, Literal, Optional

from openai.types import Completion, CompletionChoice
from openai.types.chat import ChatCompletionChunk

from swarm_checks.contracts.openai_contract import (
    check_finish_reason, check_indexes, check_text, check_usage, parse_lossless, prompt_count, require, violation,
)

DONE = "[DONE]"


class CompletionChunkChoice(CompletionChoice):
    """A streamed /v1/completions choice: OpenAI sends finish_reason null until the last chunk
    of a choice, which the SDK's Completion type (written for whole answers) does not allow."""

    finish_reason: Optional[Literal["stop", "length", "content_filter"]] = None  # type: ignore[assignment]


class CompletionChunk(Completion):
    """A chunk of a streamed /v1/completions answer: a Completion whose choices may be unfinished."""

    choices: List[CompletionChunkChoice]  # type: ignore[assignment]


@dataclass
class StreamSummary:
    """What a valid stream said, per choice: the text, the finish reason; and the usage chunk."""

    chunks: int = 0
    texts: dict[int, str] = field(default_factory=dict)
    finish_reasons: dict[int, str] = field(default_factory=dict)
    usage: Mapping[str, Any] | None = None


def parse_sse(raw: bytes) -> list[str]:
    """The `data` payloads of an SSE body, in order; raises on anything but `data:` events.

    Events end at a blank line; CRLF, CR and LF all end lines (the SSE specification); a line
    starting with `:` is a comment, which the specification allows and clients skip.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise violation("sse-utf8", f"the stream is not UTF-8: {error}") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    payloads: list[str] = []
    current: list[str] = []
    for line in lines:
        if line == "":
            if current:
                payloads.append("\n".join(current))
                current = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        require(name == "data", "sse-data-only", f"a {name!r} field in the stream (OpenAI streams only send "
                                                 f"`data:` events): {line[:200]!r}")
        current.append(value[1:] if value.startswith(" ") else value)
    if current:
        raise violation("sse-terminated", f"the last event is not ended by a blank line: {current[-1][:200]!r}")
    require(bool(payloads), "sse-empty", "the stream has no event")
    done = [i for i, payload in enumerate(payloads) if payload == DONE]
    require(bool(done), "sse-done", f"the stream does not end with `data: {DONE}` (last event: {payloads[-1][:200]!r})")
    require(done == [len(payloads) - 1], "sse-done-last",
            f"`data: {DONE}` must come once, last; it came at event(s) {done} of {len(payloads)}")
    return payloads[:-1]


def _chunks(raw: bytes) -> list[dict[str, Any]]:
    chunks = []
    for number, payload in enumerate(parse_sse(raw)):
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise violation("sse-json", f"event {number} is not JSON: {payload[:200]!r}") from None
        require(isinstance(chunk, dict), "sse-json", f"event {number} is not a JSON object: {payload[:200]!r}")
        require("error" not in chunk and chunk.get("object") != "error", "sse-error-event",
                f"event {number} is an error inside a 200 stream: {payload[:300]!r}")
        chunks.append(chunk)
    require(bool(chunks), "sse-chunks", "the stream has no chunk before [DONE]")
    return chunks


def _check_common(chunks: list[dict[str, Any]], request: Mapping[str, Any]) -> None:
    """One answer: the id and model of the first chunk throughout (the SDK's types check `object`)."""
    first = chunks[0]
    for number, chunk in enumerate(chunks):
        require(chunk.get("id") == first.get("id"), "chunk-id",
                f"chunk {number}: id {chunk.get('id')!r}, the stream began with {first.get('id')!r}")
        require(chunk.get("model") == first.get("model"), "chunk-model",
                f"chunk {number}: model {chunk.get('model')!r}, the stream began with {first.get('model')!r}")
    if request.get("model"):
        require(first.get("model") == request["model"], "model", f"streamed for model {first.get('model')!r}, "
                                                                 f"asked {request['model']!r}")


def _check_usage_chunk(chunks: list[dict[str, Any]], request: Mapping[str, Any], choices: int,
                       summary: StreamSummary, chat: bool) -> list[dict[str, Any]]:
    """With include_usage, the last chunk carries usage and no choice, the others usage null;
    without it, no chunk carries usage. Returns the chunks that carry choices."""
    asked = bool((request.get("stream_options") or {}).get("include_usage"))
    with_usage = [n for n, chunk in enumerate(chunks) if chunk.get("usage") is not None]
    if not asked:
        require(not with_usage, "usage-unasked", f"chunk(s) {with_usage} carry usage although include_usage "
                                                 "was not asked for")
        return chunks
    last = len(chunks) - 1
    require(with_usage == [last], "usage-chunk-last",
            f"include_usage: usage must come once, in the last chunk; it came in chunk(s) {with_usage} of {last + 1}")
    require(chunks[last].get("choices") == [], "usage-chunk-empty",
            f"the usage chunk must have empty choices, got {str(chunks[last].get('choices'))[:200]}")
    check_usage(chunks[last]["usage"], request, choices, "usage chunk", chat=chat)
    summary.usage = chunks[last]["usage"]
    return chunks[:last]


def _collect(chunks: list[dict[str, Any]], summary: StreamSummary, text_of: Any) -> None:
    """Texts and finish reasons per choice index: exactly one finish_reason each, nothing after it."""
    for number, chunk in enumerate(chunks):
        for choice in chunk.get("choices") or []:
            index = choice.get("index")
            require(isinstance(index, int), "chunk-index", f"chunk {number}: a choice without an integer index")
            require(index not in summary.finish_reasons or not text_of(choice), "content-after-finish",
                    f"chunk {number}: choice {index} has content after its finish_reason")
            summary.texts[index] = summary.texts.get(index, "") + text_of(choice)
            reason = choice.get("finish_reason")
            if reason is not None:
                if index in summary.finish_reasons:
                    raise violation("one-finish-reason", f"chunk {number}: choice {index} has a second finish_reason "
                                                         f"({reason!r} after {summary.finish_reasons[index]!r})")
                check_finish_reason(reason, f"chunk {number}, choice {index}")
                summary.finish_reasons[index] = reason


def _finish(summary: StreamSummary, request: Mapping[str, Any], expected: int) -> StreamSummary:
    check_indexes(summary.texts, expected, "streamed choices")
    missing = sorted(set(summary.texts) - set(summary.finish_reasons))
    require(not missing, "one-finish-reason", f"choice(s) {missing} ended without a finish_reason")
    for index, text in summary.texts.items():
        check_text(text, request, summary.finish_reasons.get(index), f"streamed choice {index}")
    return summary


def check_chat_stream(request: Mapping[str, Any], raw: bytes) -> StreamSummary:
    """A streamed /v1/chat/completions answer (raw SSE bytes) against its request."""
    chunks = _chunks(raw)
    for number, chunk in enumerate(chunks):
        parse_lossless(ChatCompletionChunk, chunk, f"chunk {number}")
    _check_common(chunks, request)
    summary = StreamSummary(chunks=len(chunks))
    n = int(request.get("n") or 1)
    with_choices = _check_usage_chunk(chunks, request, n, summary, chat=True)
    _collect(with_choices, summary, lambda choice: (choice.get("delta") or {}).get("content") or "")
    return _finish(summary, request, n)


def check_completion_stream(request: Mapping[str, Any], raw: bytes) -> StreamSummary:
    """A streamed /v1/completions answer: chunks are `text_completion` objects."""
    chunks = _chunks(raw)
    for number, chunk in enumerate(chunks):
        parse_lossless(CompletionChunk, chunk, f"chunk {number}")
    _check_common(chunks, request)
    summary = StreamSummary(chunks=len(chunks))
    expected = int(request.get("n") or 1) * prompt_count(request)
    with_choices = _check_usage_chunk(chunks, request, expected, summary, chat=False)
    _collect(with_choices, summary, lambda choice: choice.get("text") or "")
    return _finish(summary, request, expected)
