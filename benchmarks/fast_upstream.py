"""An OpenAI-compatible upstream that answers at once (benchmark tooling, not a test double of
a test): with it, a measured request rate is the proxy's, not the model's.

    python benchmarks/fast_upstream.py PORT [CHUNKS]

/v1/models lists `fast`; /v1/chat/completions answers a canned completion, or CHUNKS SSE chunks
when streaming, with usage.
"""
from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
USAGE = {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "fast", "object": "model", "owned_by": "bench"}]})


async def chat(request: Request) -> JSONResponse | StreamingResponse:
    body = await request.json()
    if not body.get("stream"):
        return JSONResponse({"id": "c", "object": "chat.completion", "model": "fast", "usage": USAGE,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "hello " * CHUNKS}}]})

    async def events():
        for n in range(CHUNKS):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "fast",
                     "choices": [{"index": 0, "delta": {"content": f"t{n} "}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield f"data: {json.dumps({'id': 'c', 'choices': [], 'usage': USAGE})}\n\ndata: [DONE]\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
