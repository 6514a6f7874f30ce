"""Test doubles for the contract checks, each named as what it is:

- `BrokenEngine`: an ASGI wrapper in front of a real upstream (the session's vLLM CPU engine, or
  the real proxy) that relays every request and breaks the answer in one named way.
- `scripted_app`: a tiny scripted upstream for APIs no container here serves (Qdrant, Langfuse,
  Ray's Jobs API, ...): each route answers what the test scripts.
- `ScriptedRedis`: a RESP server that answers like Redis but corrupts values on GET.

All of them run in a thread of the test process, on a port held from the moment it is chosen (`serve`).
"""
from __future__ import annotations

import json
import re
import socketserver
import threading
import time
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Mapping

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.live_parts import listening_socket

Mutation = Callable[[str, Any, int, bytes], tuple[int, bytes]]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread; yields its root URL."""
    listener = listening_socket()  # held from the moment it is chosen: no other server can take the port
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


# -- mutations: (path, request JSON or None, status, body) -> (status, body) -------------------

def _json_map(body: bytes, change: Callable[[dict], None]) -> bytes:
    document = json.loads(body)
    change(document)
    return json.dumps(document).encode()


def _events_map(body: bytes, change: Callable[[dict], None]) -> bytes:
    """Apply `change` to every JSON event of an SSE body, keeping the framing."""
    def one(match: re.Match[bytes]) -> bytes:
        payload = match.group(1)
        if payload == b"[DONE]":
            return match.group(0)
        return b"data: " + _json_map(payload, change) + b"\n\n"
    return re.sub(rb"data: (.*?)\n\n", one, body, flags=re.S)


def drop_done(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return status, body.replace(b"data: [DONE]\n\n", b"")


def miscount_usage(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    def change(document: dict) -> None:
        if document.get("usage"):
            document["usage"]["total_tokens"] += 1
    if status != 200:
        return status, body
    return status, (_events_map if body.startswith(b"data:") else _json_map)(body, change)


def server_error_on_unicode(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """An edge input (any non-ASCII character in the request) answered with a 500."""
    if "\\u" in json.dumps(request):  # json.dumps escapes every non-ASCII character
        return 500, b'{"error": {"message": "internal error", "type": "InternalServerError", "param": null, "code": 500}}'
    return status, body


def server_error_on_empty_messages(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    if isinstance(request, dict) and request.get("messages") == []:
        return 500, b'{"error": {"message": "list index out of range", "type": "InternalServerError", "param": null, "code": 500}}'
    return status, body


def detail_errors(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """Errors in FastAPI's default shape, {"detail": ...}, instead of OpenAI's."""
    if status < 400:
        return status, body
    return status, json.dumps({"detail": json.loads(body).get("error", {}).get("message", "bad")}).encode()


def leak_stop(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """Append the first stop sequence to every output, as if it were not stripped."""
    stops = (request or {}).get("stop") if isinstance(request, dict) else None
    stop = stops if isinstance(stops, str) else (stops or [None])[0]
    if status != 200 or not stop:
        return status, body

    def change(document: dict) -> None:
        for choice in document.get("choices") or []:
            if "message" in choice:
                choice["message"]["content"] = (choice["message"]["content"] or "") + stop
            elif "delta" in choice and choice.get("finish_reason"):
                choice["delta"]["content"] = (choice["delta"].get("content") or "") + stop
            elif "text" in choice and (not body.startswith(b"data:") or choice.get("finish_reason")):
                choice["text"] += stop
    return status, (_events_map if body.startswith(b"data:") else _json_map)(body, change)


def change_id_midstream(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    seen = []

    def change(document: dict) -> None:
        seen.append(1)
        if len(seen) == 2:
            document["id"] = "chatcmpl-another-one"
    return status, _events_map(body, change) if body.startswith(b"data:") else body


def second_finish_reason(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """Repeat, without content, the chunk that carries a finish_reason."""
    if not body.startswith(b"data:"):
        return status, body
    events = body.split(b"\n\n")
    for event in events:
        if event.startswith(b"data: {") and re.search(rb'"finish_reason": ?"', event):
            again = json.loads(event[6:])
            for choice in again["choices"]:
                choice["delta"] = {}
            events.insert(len(events) - 2, b"data: " + json.dumps(again).encode())
            break
    return status, b"\n\n".join(events)


def usage_chunk_first(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """Send the usage chunk first instead of last."""
    if not body.startswith(b"data:"):
        return status, body
    events = [e for e in body.split(b"\n\n") if e]
    usage = [e for e in events if b'"usage"' in e and b'"choices":[]' in e.replace(b" ", b"")]
    rest = [e for e in events if e not in usage]
    return status, b"\n\n".join(usage + rest) + b"\n\n"


def event_field(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return status, body.replace(b"data: ", b"event: message\ndata: ") if body.startswith(b"data:") else body


def one_choice(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    def change(document: dict) -> None:
        document["choices"] = document.get("choices", [])[:1]
    return status, _json_map(body, change) if status == 200 and not body.startswith(b"data:") else body


def bad_finish_reason(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return status, body.replace(b'"finish_reason":"length"', b'"finish_reason":"done"').replace(
        b'"finish_reason":"stop"', b'"finish_reason":"done"')


def over_budget(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    def change(document: dict) -> None:
        if document.get("usage"):
            document["usage"]["completion_tokens"] += 50
            document["usage"]["total_tokens"] += 50
    return status, _json_map(body, change) if status == 200 and not body.startswith(b"data:") else body


def created_as_string(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """A field of the wrong JSON type that the SDK would coerce: what it parses is not what came."""
    def change(document: dict) -> None:
        document["created"] = str(document.get("created"))
    return status, _json_map(body, change) if status == 200 and not body.startswith(b"data:") else body


def not_json(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    def change(document: dict) -> None:
        for choice in document.get("choices") or []:
            choice["message"]["content"] = "certainly not JSON"
    return status, _json_map(body, change) if status == 200 and not body.startswith(b"data:") else body


def unseeded(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    def change(document: dict) -> None:
        for choice in document.get("choices") or []:
            choice["message"]["content"] = (choice["message"]["content"] or "") + f" {time.monotonic_ns()}"
    return status, _json_map(body, change) if status == 200 and not body.startswith(b"data:") else body


def refuse_stop(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    """A proxy that refuses a valid parameter the engine accepts."""
    if isinstance(request, dict) and "stop" in request and status == 200:
        return 400, b'{"error": {"message": "stop is not supported", "type": "invalid_request_error", "param": "stop", "code": null}}'
    return status, body


def errors_as_422(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return (422 if 400 <= status < 500 else status), body


def drop_model(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return status, b'{"object": "list", "data": []}' if path == "/v1/models" else body


def health_500(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return (500, b'{"status": "broken"}') if path == "/health" else (status, body)


def wrong_version(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    return status, b'{"version": "0.31.9"}' if path == "/version" else body


def no_kv_metric(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    if path != "/metrics":
        return status, body
    return status, b"\n".join(line for line in body.split(b"\n") if b"cache_usage" not in line)


def lossy_detokenize(path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
    def change(document: dict) -> None:
        document["prompt"] = document["prompt"][:-1]
    return status, _json_map(body, change) if path == "/detokenize" and status == 200 else body


class DeadAfterRefusal:
    """After the first refused request, /v1/models answers 503: refusing broke the server."""

    def __init__(self) -> None:
        self.refused = False

    def __call__(self, path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
        if path == "/v1/models" and self.refused:
            return 503, b'{"error": {"message": "engine dead", "type": "ServiceUnavailable", "param": null, "code": 503}}'
        if status >= 400:
            self.refused = True
        return status, body


class FrozenMetrics:
    """/metrics always answers its first scrape: the counters never move."""

    def __init__(self) -> None:
        self.first: bytes | None = None

    def __call__(self, path: str, request: Any, status: int, body: bytes) -> tuple[int, bytes]:
        if path != "/metrics":
            return status, body
        self.first = self.first or body
        return status, self.first


# Requests that would kill the session's CPU engine (its image has no C++ compiler for
# torch.compile): refused by every wrapper before they reach it.
LOGPROBS_REFUSAL = (b'{"error": {"message": "test double: logprobs would kill the CPU engine of this test session", '
                    b'"type": "invalid_request_error", "param": "logprobs", "code": null}}')


def _would_crash(request: Any) -> bool:
    if not isinstance(request, dict):
        return False
    top = request.get("top_logprobs")
    chat_logprobs = request.get("logprobs") is True and not (isinstance(top, int) and top > 20)
    completion_logprobs = isinstance(request.get("logprobs"), int) and not isinstance(request.get("logprobs"), bool)
    return chat_logprobs or completion_logprobs or bool(request.get("prompt_logprobs"))


class BrokenEngine:
    """Relays every request to `upstream` and passes the answer through `mutation`."""

    def __init__(self, upstream: str, mutation: Mutation | None = None) -> None:
        self.upstream, self.mutation = upstream.rstrip("/"), mutation
        self.requests = 0

    async def __call__(self, scope: Mapping[str, Any], receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        self.requests += 1
        try:
            document: Any = json.loads(raw) if raw else None
        except ValueError:
            document = None
        if _would_crash(document):
            status, body, kind = 400, LOGPROBS_REFUSAL, "application/json"
        else:
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            async with httpx.AsyncClient(timeout=180) as client:
                answer = await client.request(request.method, self.upstream + scope["path"], content=raw,
                                              headers=headers, params=dict(request.query_params))
            status, body, kind = answer.status_code, answer.content, answer.headers.get("content-type", "")
            if self.mutation is not None:
                status, body = self.mutation(scope["path"], document, status, body)
        await Response(body, status_code=status, media_type=kind.split(";")[0] or None)(scope, receive, send)


def scripted_app(routes: Mapping[tuple[str, str], Callable[[Request], Any]]) -> Starlette:
    """A scripted upstream: (method, path) -> handler(request) returning (status, JSON)."""
    def endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            request.state.body = await request.body()
            status, payload = handler(request)
            if isinstance(payload, (bytes, str)):
                return Response(payload, status_code=status, media_type="text/plain")
            return JSONResponse(payload, status_code=status)
        return run
    return Starlette(routes=[Route(path, endpoint(handler), methods=[method]) for (method, path), handler in routes.items()])


class ScriptedRedis(socketserver.ThreadingTCPServer):
    """A RESP server (test double) that accepts any password, stores values and answers GET with
    the value's last byte dropped: a store that is not binary-safe."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        super().__init__(("127.0.0.1", 0), _RespHandler)
        self.url = f"redis://127.0.0.1:{self.server_address[1]}/0"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _RespHandler(socketserver.StreamRequestHandler):
    def _command(self) -> list[bytes] | None:
        line = self.rfile.readline()
        if not line.startswith(b"*"):
            return None
        parts = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            parts.append(self.rfile.read(size + 2)[:-2])
        return parts

    def handle(self) -> None:
        data = self.server.data  # type: ignore[attr-defined]
        while (command := self._command()) is not None:
            name = command[0].upper()
            if name == b"SET":
                data[command[1]] = command[2]
                self.wfile.write(b"+OK\r\n")
            elif name == b"GET":
                value = data.get(command[1])
                self.wfile.write(b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value[:-1]), value[:-1]))
            elif name == b"DEL":
                self.wfile.write(b":%d\r\n" % sum(data.pop(key, None) is not None for key in command[1:]))
            else:  # AUTH, CLIENT SETINFO, PING, SELECT ...
                self.wfile.write(b"+OK\r\n" if name != b"PING" else b"+PONG\r\n")
