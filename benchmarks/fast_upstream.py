"""An OpenAI-compatible upstream with known timing (benchmark tooling): it answers at once, or
after exactly the delays asked for, so that a measured request rate is the client's or the
proxy's, not a model's, and a measured TTFT or ITL can be compared with the truth.

    python benchmarks/fast_upstream.py PORT [CHUNKS] [TTFT_MS] [ITL_MS]

/v1/models lists `fast`; /v1/chat/completions and /v1/completions answer a canned completion,
or CHUNKS SSE chunks when streaming (the first after TTFT_MS, then one every ITL_MS), with usage.
"""
from __future__ import annotations

import asyncio
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
TTFT_S = float(sys.argv[3]) / 1e3 if len(sys.argv) > 3 else 0.0
ITL_S = float(sys.argv[4]) / 1e3 if len(sys.argv) > 4 else 0.0
USAGE = {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}


async def health(request: Request) -> JSONResponse:
    return JSONResponse({})


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "fast", "object": "model", "owned_by": "bench"}]})


async def chat(request: Request) -> JSONResponse | StreamingResponse:
    body = await request.json()
    if not body.get("stream"):
        return JSONResponse({"id": "c", "object": "chat.completion", "model": "fast", "usage": USAGE,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "hello " * CHUNKS}}]})

    async def events():
        if TTFT_S:
            await asyncio.sleep(TTFT_S)
        for n in range(CHUNKS):
            if n and ITL_S:
                await asyncio.sleep(ITL_S)
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "fast",
                     "choices": [{"index": 0, "delta": {"content": f"t{n} "}, "text": f"t{n} ",
                                  "finish_reason": "stop" if n == CHUNKS - 1 else None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield f"data: {json.dumps({'id': 'c', 'choices': [], 'usage': USAGE})}\n\ndata: [DONE]\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/health", health), Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"]),
                        Route("/v1/completions", chat, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
