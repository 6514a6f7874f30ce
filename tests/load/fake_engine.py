"""A tiny OpenAI-compatible streaming endpoint for the load engine's own tests (aiohttp's web
server on 127.0.0.1, in a thread of the test process): known timing, known faults, and what it
saw (requests in flight, TCP connections, a Prometheus counter of generated tokens), so that each
of the engine's definitions can be checked against the truth without a model."""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeEngine:
    """What it answers. answer: `stream` (SSE), `json` (one application/json body, as an engine
    that ignores `stream: true` does). error_event: sent after the content chunks, before [DONE].
    split: each event written in two pieces with a pause between (events cut across reads), and
    the last content chunk written together with the usage chunk (several events in one read).
    keepalive_s: a request that arrives on a connection idle at least that long since its last
    answer is not answered, the connection closed: a test double of a server's keep-alive timer
    firing just as the request arrives (a race that cannot be timed for real)."""

    chunks: int = 4
    ttft: float = 0.0
    itl: float = 0.0
    pause_before_done: float = 0.0
    answer: str = "stream"
    error_event: dict[str, Any] | None = None
    split: bool = False
    usage: bool = True
    keepalive_s: float | None = None
    # What it saw.
    generated: int = 0
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)
    dropped: int = 0
    port: int = 0
    _idle_since: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def _metrics(self, request: web.Request) -> web.Response:
        text = ("# HELP vllm:generation_tokens_total Generated tokens.\n# TYPE vllm:generation_tokens_total counter\n"
                f'vllm:generation_tokens_total{{model_name="fake"}} {float(self.generated)}\n')
        return web.Response(text=text, content_type="text/plain")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername")[:2]  # type: ignore[union-attr]
        self.peers.add(peer)
        await request.json()
        idle_since = self._idle_since.get(peer)
        if self.keepalive_s is not None and idle_since is not None and \
                asyncio.get_running_loop().time() - idle_since >= self.keepalive_s:
            self.dropped += 1
            request.transport.close()  # type: ignore[union-attr]
            raise asyncio.CancelledError  # aiohttp's way out of a handler whose connection is gone
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1
            self._idle_since[peer] = asyncio.get_running_loop().time()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        usage = {"prompt_tokens": 8, "completion_tokens": self.chunks, "total_tokens": 8 + self.chunks}
        if self.answer == "json":
            self.generated += self.chunks
            return web.json_response({"id": "f", "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi " * self.chunks}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(_event({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}))
        await asyncio.sleep(self.ttft)
        for n in range(self.chunks):
            if n:
                await asyncio.sleep(self.itl)
            self.generated += 1
            event = _event({"choices": [{"index": 0, "delta": {"content": f"t{n} "},
                                         "finish_reason": "stop" if n == self.chunks - 1 else None}]})
            if self.split and n == self.chunks - 1:
                await response.write(event + (_event({"choices": [], "usage": usage}) if self.usage else b""))
            elif self.split:
                await response.write(event[:9])
                await asyncio.sleep(0.002)
                await response.write(event[9:])
            else:
                await response.write(event)
        if self.error_event is not None:
            await response.write(_event(self.error_event))
        if self.usage and not self.split:
            await response.write(_event({"choices": [], "usage": usage}))
        await asyncio.sleep(self.pause_before_done)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def __enter__(self) -> FakeEngine:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
