"""A scripted upstream for the proxy's tests: a thread-based OpenAI-like server (in this process)
standing in for the engine where a test needs an answer the engine would never give (a `usage`
that is a string, a 200 that is not JSON), a slow answer, or many cheap ones. Like OpenAI and
vLLM it streams a usage chunk only when asked (stream_options.include_usage). It can also hold a
request while watching its connection (`hold`: when the proxy closes it, `closed` records the
moment), drop a request it has received without answering (`drop`), or send a stream's bytes as
scripted (`raw_stream`: cut mid-event, with or without a Content-Length promising more)."""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from tests.live_parts import MODEL

HELLO = [{"role": "user", "content": "Say hello."}]


class Scripted:
    """What the scripted upstream answers: `usage` goes into every completion, `served` counts them,
    `requests` holds the bodies it received."""

    def __init__(self) -> None:
        self.usage: Any = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        self.served = 0
        self.error: tuple[int, str, bytes] | None = None  # (status, content type, body) to answer instead
        self.stream_usage = True  # False: an upstream that never sends a usage chunk
        self.delay = 0.0  # seconds before each completion
        self.requests: list[dict[str, Any]] = []
        self.listed = 0  # GET /models served (readiness checks, model lists)
        self.hold = 0.0  # seconds to hold each POST before answering, watching its connection
        self.headers_first = False  # while holding a stream: its 200 and headers already sent
        self.closed: list[float] = []  # time.monotonic() when the proxy closed a held request
        self.drop = False  # read the POST, then close the connection without an answer
        self.location: str | None = None  # a Location header sent with `error` (a redirect)
        self.raw_stream: tuple[bytes, int | None] | None = None  # (bytes, Content-Length) of a stream
        self.models_body: bytes | None = None  # what GET /models answers instead of a model list
        self.models_delay = 0.0  # seconds before GET /models answers (the proxy resolving a model waits)
        self.models_answered: list[float] = []  # time.monotonic() when each GET /models answered
        self.error_cut = False  # answer POSTs with a 500 whose body breaks off after a few bytes
        self.targets: list[str] = []  # each request line's target (absolute when sent to it as a forward proxy)
        self.received: list[float] = []  # time.monotonic() when each POST's body was read
        self._lock = threading.Lock()

    def completion(self) -> dict[str, Any]:
        with self._lock:
            self.served += 1
            served = self.served
        return {"id": f"cmpl-{served}", "object": "chat.completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {served}"},
                             "finish_reason": "stop"}], "usage": self.usage}


def openai_error(body: bytes) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    return error


@pytest.fixture
def scripted() -> Iterator[tuple[str, Scripted]]:
    """(base URL, script) of an OpenAI-like upstream serving MODEL, streaming or not."""
    script = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _held(self) -> bool:
            """Hold the request for `script.hold` s; True when the proxy closed the connection meanwhile."""
            deadline = time.monotonic() + script.hold
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if not readable:
                    continue
                try:
                    gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    script.closed.append(time.monotonic())
                    self.close_connection = True
                    return True
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            script.targets.append(self.path)
            script.listed += 1
            time.sleep(script.models_delay)
            if script.models_body is not None:
                self._send(200, script.models_body)
            else:
                self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
            script.models_answered.append(time.monotonic())

        def do_POST(self) -> None:  # noqa: N802
            script.targets.append(self.path)
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            script.requests.append(request)
            script.received.append(time.monotonic())
            if script.drop:
                self.close_connection = True
                return
            if script.error_cut:
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"error": {"mess')
                self.close_connection = True
                return
            if script.raw_stream is not None:
                content, length = script.raw_stream
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(content)
                self.close_connection = True
                return
            if script.hold:
                if request.get("stream") and script.headers_first:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.flush()
                if self._held() or (request.get("stream") and script.headers_first):
                    return
            if script.error is not None:
                self.send_response(script.error[0])
                if script.location:
                    self.send_header("Location", script.location)
                self.send_header("Content-Type", script.error[1])
                self.send_header("Content-Length", str(len(script.error[2])))
                self.end_headers()
                self.wfile.write(script.error[2])
                return
            time.sleep(script.delay)
            answer = script.completion()
            if request.get("stream"):
                events = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': word}}]})}\n\n"
                                 for word in ("hi", " there"))
                asked = isinstance(request.get("stream_options"), dict) and request["stream_options"].get("include_usage")
                if asked is True and script.stream_usage:
                    events += f"data: {json.dumps({'choices': [], 'usage': script.usage})}\n\n"
                self._send(200, (events + "data: [DONE]\n\n").encode(), "text/event-stream")
            else:
                self._send(200, json.dumps(answer).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()
