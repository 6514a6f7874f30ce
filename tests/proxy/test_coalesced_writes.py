"""What one turn of the event loop writes goes out in one send (swarm_proxy/coalesce.py, telemetry.py).

The proxy's own server (BoundedHttpTools under uvicorn, on a real socket) serves a small ASGI
application here, and every write that reaches the connection's real transport is recorded:
a non-streaming answer must leave in one write (uvicorn wrote its head and its body apart), a
stream's end together with its last event; and nothing may wait past its turn: a stream's head
leaves before a slow first event, each event as it is sent. The log lines of one turn are
flushed once (a flush per line was a system call per request)."""
from __future__ import annotations

import asyncio
import io
import socket
import sys
import threading
import time
from typing import Any, Iterator

import pytest

from tests.live_parts import PROXY_DIR

sys.path.insert(0, str(PROXY_DIR))
try:
    import uvicorn

    from swarm_proxy import telemetry
    from swarm_proxy.server import BoundedHttpTools
finally:
    sys.path.remove(str(PROXY_DIR))

WRITES: list[tuple[float, bytes]] = []  # (when, what) reached the real transport, all connections
ANSWERED = threading.Event()  # /then-busy has sent its answer and is still busy in the same step


class RecordingTransport:
    """Measurement probe, not a double: the real transport, with each write recorded on its way."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append((time.monotonic(), bytes(data)))
        self._transport.write(data)

    def writelines(self, chunks: list[bytes]) -> None:  # one writev: one write here
        WRITES.append((time.monotonic(), b"".join(chunks)))
        self._transport.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordedProtocol(BoundedHttpTools):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(RecordingTransport(transport))  # type: ignore[arg-type]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] in ("/plain", "/then-busy"):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
        if scope["path"] == "/then-busy":
            ANSWERED.set()
            time.sleep(0.5)  # CPU work after the answer, in the same step: the client's FIN lands meanwhile
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await asyncio.sleep(0.3)  # a slow first token
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    config = uvicorn.Config(application, host="127.0.0.1", port=0, http=RecordedProtocol, lifespan="off",
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


def _exchange(port: int, path: str, keep_alive: bool = False,
              half_close: bool = False) -> tuple[bytes, list[tuple[float, bytes]]]:
    """The raw response to GET `path` on a fresh connection, and the writes it took. Kept alive,
    the response is read by its length (the connection stays open); `half_close`: the client
    ends its side once the server has answered and is still busy (as `curl` or a proxy may)."""
    WRITES.clear()
    ANSWERED.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        connection = "keep-alive" if keep_alive or half_close else "close"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n".encode())
        if half_close:
            assert ANSWERED.wait(10), "the server did not answer within 10 s"
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while not (keep_alive and received.endswith(b"hello")) and (chunk := sock.recv(65536)):
            received += chunk
    time.sleep(0.05)  # the server's side of the last write is recorded
    return received, list(WRITES)


def test_a_non_streaming_answer_leaves_in_one_write(server_port: int) -> None:
    for keep_alive in (True, False):  # flushed at the end of the pass, or by the close
        received, writes = _exchange(server_port, "/plain", keep_alive=keep_alive)
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\nhello"), received
        assert [data for _, data in writes] == [received], f"{len(writes)} writes for one answer: {writes}"


def test_an_answer_is_still_sent_to_a_client_that_ended_its_side(server_port: int) -> None:
    """uvloop closes the transport when the peer half-closes; bytes still pending must go first."""
    received, _ = _exchange(server_port, "/then-busy", half_close=True)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"hello"), f"the answer was lost: {received!r}"


def test_a_stream_is_not_held_back_and_ends_with_its_last_event(server_port: int) -> None:
    received, writes = _exchange(server_port, "/stream")
    assert received.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), received
    pieces = [data for _, data in writes]
    assert len(pieces) == 3, f"expected the head, the first event, and the last event with the end: {pieces}"
    assert pieces[0].startswith(b"HTTP/1.1 200") and pieces[0].endswith(b"\r\n\r\n"), "the head waited for the first event"
    assert writes[1][0] - writes[0][0] > 0.15, "the head was held back until the first event"
    assert pieces[1] == b"9\r\ndata: 1\n\n\r\n"
    assert pieces[2] == b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n", "the stream's end went in a write of its own"
    assert b"".join(pieces) == received


class CountingStream(io.StringIO):
    """Test double for stdout: counts its flushes (each one a system call on a real stream)."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_log_lines_of_one_turn_are_flushed_once_and_none_waits_past_it() -> None:
    handler = telemetry.log.handlers[0]
    stream = CountingStream()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        async def one_turn() -> int:
            for n in range(5):
                telemetry.event("request", n=n)
            flushed_within_the_turn = stream.flushes
            await asyncio.sleep(0)  # the turn ends
            await asyncio.sleep(0)
            return flushed_within_the_turn

        assert asyncio.run(one_turn()) == 0
        assert stream.flushes == 1, f"{stream.flushes} flushes for the lines of one turn"
        assert stream.getvalue().count("\n") == 5
        telemetry.event("outside a loop")
        assert stream.flushes == 2, "a line written outside the event loop waited for a flush"
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
