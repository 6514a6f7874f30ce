"""The measuring client: one request, streamed, timed chunk by chunk.

aiohttp with a connection pool sized to the concurrency, and a hand-rolled SSE reader (the OpenAI
SDK's per-chunk object building distorts latency at high concurrency). Definitions follow
`vllm bench serve`:

- TTFT: request start to the first chunk with non-empty content (or reasoning content); a
  role-only first chunk does not count.
- ITL: the gaps between successive content chunks.
- E2EL: request start to the end of the stream.
- output tokens: `usage.completion_tokens` (stream_options.include_usage); when the engine sends
  no usage, the number of content chunks, and the record says the count is estimated.
- An `error` event inside a 200 stream, or a stream that ends without [DONE] or a finish
  reason, is a failure (kind `stream_error` / `incomplete`).
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class RequestRecord:
    scheduled: float            # when the schedule wanted it sent (perf_counter)
    start: float = 0.0          # when it was sent
    end: float = 0.0
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    chunks: int = 0             # content chunks
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    success: bool = False
    error_kind: str | None = None
    error: str | None = None

    @property
    def e2el(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.output_tokens <= 1:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def lag(self) -> float:
        return max(0.0, self.start - self.scheduled)

    def as_json(self) -> dict[str, Any]:
        return {"start": round(self.start, 6), "scheduled": round(self.scheduled, 6), "e2el": round(self.e2el, 6),
                "ttft": None if self.ttft is None else round(self.ttft, 6), "itl": [round(x, 6) for x in self.itl],
                "chunks": self.chunks, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "tokens_estimated": self.tokens_estimated, "success": self.success, "error_kind": self.error_kind,
                "error": self.error}


def _content(choice: dict[str, Any]) -> str:
    delta = choice.get("delta") or {}
    return (delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
            or choice.get("text") or "")


async def send(session: aiohttp.ClientSession, url: str, body: dict[str, Any], record: RequestRecord,
               timeout: float) -> RequestRecord:
    """Send one streaming request and fill `record`; never raises (errors are recorded)."""
    record.start = time.perf_counter()
    last = record.start
    finished = False
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                text = (await response.text())[:300]
                record.error_kind, record.error = f"http_{response.status}", text
                return record
            async for raw in response.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    finished = True
                    break
                event = json.loads(data)
                if "error" in event:
                    record.error_kind, record.error = "stream_error", json.dumps(event["error"])[:300]
                    return record
                now = time.perf_counter()
                for choice in event.get("choices") or []:
                    if _content(choice):
                        if record.ttft is None:
                            record.ttft = now - record.start
                        else:
                            record.itl.append(now - last)
                        last = now
                        record.chunks += 1
                    if choice.get("finish_reason"):
                        finished = True
                usage = event.get("usage")
                if usage:
                    record.input_tokens = int(usage.get("prompt_tokens") or 0)
                    record.output_tokens = int(usage.get("completion_tokens") or 0)
        record.end = time.perf_counter()
        if not finished:
            record.error_kind, record.error = "incomplete", "the stream ended without [DONE] or a finish reason"
            return record
        if record.output_tokens == 0:
            record.output_tokens, record.tokens_estimated = record.chunks, True
        record.success = record.ttft is not None
        if not record.success:
            record.error_kind, record.error = "empty", "no content chunk in the answer"
        return record
    except asyncio.CancelledError:
        record.error_kind, record.error = "incomplete", "cancelled at the end of the run"
        raise
    except asyncio.TimeoutError:
        record.error_kind, record.error = "timeout", f"no complete answer within {timeout:g} s"
    except aiohttp.ClientError as error:
        record.error_kind, record.error = "connection", f"{type(error).__name__}: {error}"[:300]
    except (ValueError, KeyError) as error:
        record.error_kind, record.error = "bad_event", f"{type(error).__name__}: {error}"[:300]
    finally:
        if not record.end:
            record.end = time.perf_counter()
    return record


def new_session(concurrency: int, api_key: str | None) -> aiohttp.ClientSession:
    """A session whose pool holds one connection per concurrent request (no queueing in the client)."""
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), limit_per_host=max(1, concurrency),
                                     ttl_dns_cache=300, enable_cleanup_closed=True)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return aiohttp.ClientSession(connector=connector, headers=headers)
