"""An OpenAI-compatible upstream with known timing (benchmark tooling): it answers at once, or
after exactly the delays asked for, so that a measured request rate is the client's or the
proxy's, not a model's, and a measured TTFT or ITL can be compared with the truth.

    python benchmarks/fast_upstream.py PORT [CHUNKS] [TTFT_MS] [ITL_MS] [burst]

/health; /v1/models lists `fast`; /v1/chat/completions and /v1/completions answer a canned
completion, or CHUNKS SSE chunks when streaming (the first after TTFT_MS, then one every
ITL_MS), with usage. `burst` (with no delays): each answer's events in one write instead of one
write per chunk, for measuring a client's capacity rather than the endpoint's.

It has to cost less per answer than the clients it measures, or on shared cores it caps them
all at its own rate. So it is a bare ASGI application on uvicorn (Starlette's StreamingResponse
starts a task group with a disconnect listener per answer), and the answers are serialised once
at start (they are the same for every request). Serialising 16 chunks per request under
Starlette, it needed ~500 us of CPU per answer, more than the load engine.
"""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Awaitable, Callable

import uvicorn

CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
TTFT_S = float(sys.argv[3]) / 1e3 if len(sys.argv) > 3 else 0.0
ITL_S = float(sys.argv[4]) / 1e3 if len(sys.argv) > 4 else 0.0
BURST = len(sys.argv) > 5 and sys.argv[5] == "burst" and not TTFT_S and not ITL_S
USAGE = {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}
ANSWER = json.dumps({"id": "c", "object": "chat.completion", "model": "fast", "usage": USAGE,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "hello " * CHUNKS}}]}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "fast", "object": "model", "owned_by": "bench"}]}).encode()
EVENTS = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in (
    {"id": "c", "object": "chat.completion.chunk", "model": "fast",
     "choices": [{"index": 0, "delta": {"content": f"t{n} "}, "text": f"t{n} ",
                  "finish_reason": "stop" if n == CHUNKS - 1 else None}]} for n in range(CHUNKS))]
TAIL = f"data: {json.dumps({'id': 'c', 'choices': [], 'usage': USAGE})}\n\ndata: [DONE]\n\n".encode()
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE})
    if BURST:
        await send({"type": "http.response.body", "body": b"".join(EVENTS) + TAIL})
        return
    if TTFT_S:
        await asyncio.sleep(TTFT_S)
    for n, event in enumerate(EVENTS):
        if n and ITL_S:
            await asyncio.sleep(ITL_S)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": TAIL})


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    path = scope["path"]
    if path == "/health":
        return await _respond(send, 200, JSON, b"{}")
    if path == "/v1/models":
        return await _respond(send, 200, JSON, MODELS)
    if path not in ("/v1/chat/completions", "/v1/completions") or scope["method"] != "POST":
        return await _respond(send, 404, JSON, b'{"error": "not found"}')
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if not json.loads(body or b"{}").get("stream"):
        return await _respond(send, 200, JSON, ANSWER)
    await _stream(send)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, lifespan="off")
