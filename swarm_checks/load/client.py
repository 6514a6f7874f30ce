"""The measuring client: one request, streamed, timed chunk by chunk.

aiohttp with a connection pool sized to the concurrency, and a minimal SSE reader (the OpenAI
SDK's per-chunk object building distorts latency at high concurrency). Definitions follow
`vllm bench serve` (vllm/benchmarks/lib/endpoint_request_func.py, serve.py):

- TTFT: request start to the first chunk with non-empty content (or reasoning content); a
  role-only first chunk does not count.
- ITL: the gaps between successive content chunks.
- E2EL: request start to the last content chunk (vLLM's `latency`: its most recent token
  timestamp), so that a pause between the last token and [DONE] (a usage chunk, a proxy's
  flush) does not count as decoding time. The end of the stream is kept apart (`stream_end`).
- output tokens: `usage.completion_tokens` (stream_options.include_usage); when the engine sends
  no usage, the number of content chunks, and the record says the count is estimated.
- An error event inside a 200 stream, nested (`{"error": {...}}`) or flat as vLLM emits it
  (`{"object": "error", "message": ...}`), is a failure (`stream_error`); a stream that ends
  without [DONE] or a finish reason is `incomplete`; a plain JSON answer to a streaming request
  is `not_streamed` (the endpoint ignored `stream: true`).

A stream is read to its end, past [DONE], as vLLM's client does: a response left unread makes
aiohttp close the connection instead of returning it to the pool, and a new TCP connection per
request cost more than the rest of the client together. A server that never ends the response
after [DONE] therefore shows as a timeout. Bytes are read as they come (`iter_any`) and split
into lines here: one await per network read rather than two per event.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from functools import lru_cache
from time import perf_counter
from typing import Any

import aiohttp


@dataclass
class RequestRecord:
    """One request's timeline (perf_counter seconds) and outcome. `start` 0 means never sent."""

    scheduled: float            # when the schedule wanted it sent
    start: float = 0.0          # when it was sent
    end: float = 0.0            # when it finished: the end of the stream, an error, or the cut
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    chunks: int = 0             # content chunks
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    success: bool = False
    error_kind: str | None = None
    error: str | None = None
    last_token: float = 0.0     # when the last content chunk arrived (0: none)
    cancelled: bool = False     # cut at the end of the run (in flight or still queued)

    @property
    def stream_end(self) -> float:
        """When the stream (or the failed request) ended, as opposed to its last token."""
        return self.end

    @property
    def e2el(self) -> float:
        return (self.last_token or self.end) - self.start

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.output_tokens <= 1:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def lag(self) -> float:
        """Sent minus scheduled; a request never sent lagged until the run stopped."""
        return max(0.0, (self.start or self.end) - self.scheduled)

    def as_json(self) -> dict[str, Any]:
        return {"start": round(self.start, 6), "scheduled": round(self.scheduled, 6), "e2el": round(self.e2el, 6),
                "stream_end": round(self.end, 6), "last_token": round(self.last_token, 6),
                "ttft": None if self.ttft is None else round(self.ttft, 6), "itl": [round(x, 6) for x in self.itl],
                "chunks": self.chunks, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "tokens_estimated": self.tokens_estimated, "success": self.success, "error_kind": self.error_kind,
                "error": self.error, "cancelled": self.cancelled}


def _content(choice: dict[str, Any]) -> str:
    delta = choice.get("delta") or {}
    return (delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
            or choice.get("text") or "")


def _error_of(event: Any) -> str | None:
    """The error an event carries, nested or flat (vLLM's ErrorResponse inside a 200 stream), or
    None; ValueError for an event that is no JSON object (a `bad_event`)."""
    if not isinstance(event, dict):
        raise ValueError(f"an event that is not a JSON object: {json.dumps(event)[:200]}")
    if "error" in event:
        return json.dumps(event["error"])[:300]
    if event.get("object") == "error" or ("message" in event and "choices" not in event
                                          and ("type" in event or "code" in event)):
        return json.dumps(event)[:300]
    return None


_RAW_DECODE = json.JSONDecoder().raw_decode


@lru_cache(maxsize=8)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


class _Stream:
    """Folds the events of one stream into its record. Runs for every chunk of every answer, so
    it reads each `data:` line's JSON in place (json.loads spends half its time on what an SSE
    line does not need: detecting the encoding, stripping, slicing) and takes a read's lines in
    one call."""

    __slots__ = ("record", "last", "finished", "done", "error")

    def __init__(self, record: RequestRecord) -> None:
        self.record, self.last = record, record.start
        self.finished = self.done = False
        self.error: str | None = None

    def feed(self, text: str, now: float) -> None:
        """The complete lines of one read, all arrived at `now`. Only `data:` lines matter
        (comments, `event:` and blank lines do not); nothing after [DONE] or an error does."""
        if self.done or self.error is not None:
            return
        record = self.record
        for line in text.split("\n"):
            if not line.startswith("data:"):
                continue
            start = 6 if line.startswith(" ", 5) else 5  # `data: x` or `data:x`
            if line.startswith("[DONE]", start):
                self.finished = self.done = True
                return
            event, end = _RAW_DECODE(line, start)
            if end != len(line) and line[end:].strip():
                raise ValueError(f"extra data after an event's JSON: {line[end:end + 40]!r}")
            if type(event) is not dict or "error" in event or "choices" not in event:
                self.error = _error_of(event)
                if self.error is not None:
                    return
            for choice in event.get("choices") or ():
                if _content(choice):
                    if record.ttft is None:
                        record.ttft = now - record.start
                    else:
                        record.itl.append(now - self.last)
                    self.last = record.last_token = now
                    record.chunks += 1
                if choice.get("finish_reason"):
                    self.finished = True
            usage = event.get("usage")
            if usage:
                record.input_tokens = int(usage.get("prompt_tokens") or 0)
                record.output_tokens = int(usage.get("completion_tokens") or 0)


async def send(session: aiohttp.ClientSession, url: str, body: dict[str, Any], record: RequestRecord,
               timeout: float) -> RequestRecord:
    """Send one streaming request and fill `record`; never raises (errors are recorded) except
    CancelledError, after marking the record cancelled."""
    record.start = perf_counter()
    try:
        async with session.post(url, json=body, timeout=_timeout(timeout)) as response:
            if response.status != 200:
                text = (await response.text())[:300]
                record.error_kind, record.error = f"http_{response.status}", text
                return record
            if response.content_type == "application/json":
                text = (await response.text())[:200]
                record.error_kind = "not_streamed"
                record.error = f"the endpoint ignored `stream: true`: one application/json answer, no events: {text}"
                return record
            stream = _Stream(record)
            buffer = b""
            async for piece in response.content.iter_any():
                now = perf_counter()
                buffer += piece
                cut = buffer.rfind(b"\n")
                if cut < 0:
                    continue
                # Complete lines only: a newline byte never falls inside a UTF-8 character.
                stream.feed(buffer[:cut].decode(), now)
                buffer = buffer[cut + 1:]
                if stream.error is not None:
                    break  # no reuse of a connection that failed mid-answer
            if buffer:
                stream.feed(buffer.decode(), perf_counter())
        record.end = perf_counter()
        if stream.error is not None:
            record.error_kind, record.error = "stream_error", stream.error
            return record
        if not stream.finished:
            record.error_kind, record.error = "incomplete", "the stream ended without [DONE] or a finish reason"
            return record
        if record.output_tokens == 0:
            record.output_tokens, record.tokens_estimated = record.chunks, True
        record.success = record.ttft is not None
        if not record.success:
            record.error_kind, record.error = "empty", "no content chunk in the answer"
        return record
    except asyncio.CancelledError:
        record.cancelled = True
        record.error_kind, record.error = "incomplete", "cancelled at the end of the run"
        raise
    except asyncio.TimeoutError:
        record.error_kind, record.error = "timeout", f"no complete answer within {timeout:g} s"
    except aiohttp.ClientError as error:
        record.error_kind, record.error = "connection", f"{type(error).__name__}: {error}"[:300]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        record.error_kind, record.error = "bad_event", f"{type(error).__name__}: {error}"[:300]
    finally:
        if not record.end:
            record.end = perf_counter()
    return record


# Seconds a pooled connection may idle before it is dropped rather than reused: below the 5 s
# after which uvicorn (vLLM's server, the proxy) closes an idle connection. With aiohttp's 15 s
# default, a request sent after about 5 s of idle raced the server's close and failed as
# `connection` (ServerDisconnectedError) though the server was fine: seen in a live run, where
# the proxy's connection idled while the direct request of an alternating pair took 5 s.
KEEPALIVE_S = 4.0


def new_session(concurrency: int | None, api_key: str | None) -> aiohttp.ClientSession:
    """A session whose pool holds one connection per concurrent request (no queueing in the
    client); None: no limit (rate and Poisson modes without a cap)."""
    limit = max(1, concurrency) if concurrency else 0
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300, enable_cleanup_closed=True,
                                     keepalive_timeout=KEEPALIVE_S)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return aiohttp.ClientSession(connector=connector, headers=headers)
