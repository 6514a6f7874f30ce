"""The proxy's HTTP server: uvicorn with bounds on what a client may hold before it is known.

uvicorn's httptools protocol has no limit on a request's head and no deadline for it: a client
without a key could open sockets and trickle (or never finish) headers, each held forever, or
send megabytes of one unfinished header. `BoundedHttpTools` keeps uvicorn's fast parser and adds:

- a deadline for each request's head (PROXY_HEADER_TIMEOUT, seconds from the connection's first
  byte, or from its opening when it sends none): past it the connection gets a 408 and is closed;
- a cap on the head's size (PROXY_MAX_HEADER_BYTES): past it a 431, and the connection closed, so
  memory per socket stays at the cap plus one read;
- a cap on open connections and requests in progress (PROXY_MAX_CONNECTIONS, uvicorn's
  `limit_concurrency` rule): past it a request is answered 503 at once, in OpenAI's shape with a
  `Retry-After` (uvicorn's own 503 is text/plain).

It gives every request's scope a `Departure` (abandon.py), fired when the connection is lost
before that request's answer is complete: a client that leaves cancels its upstream call with
no task per request waiting for uvicorn's `http.disconnect`.

And it writes through `CoalescedTransport` (coalesce.py): what the loop's ready callbacks write to
a connection in one pass (a response's head and body, a stream's last event and its end) goes in
one send.

The body has its own deadline in intake.read_body (PROXY_BODY_TIMEOUT). Run it with
`python -m swarm_proxy.server [--host H] [--port P]`, or `--fd N` to serve on a listening socket
the parent bound and handed down (socket activation): a parent that picks a free port and lets
the proxy bind it later races every other process for that port, and may find another server
answering there.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from swarm_proxy.abandon import DEPARTURE, Departure
from swarm_proxy.coalesce import CoalescedTransport
from swarm_proxy.config import env_int

HEADER_TIMEOUT = env_int(os.environ, "PROXY_HEADER_TIMEOUT", 10)
MAX_HEADER_BYTES = env_int(os.environ, "PROXY_MAX_HEADER_BYTES", 32 * 1024)
MAX_CONNECTIONS = env_int(os.environ, "PROXY_MAX_CONNECTIONS", 1024)


def _refusal(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP response, in OpenAI's error shape, that closes the connection."""
    body = ('{"error": {"message": "%s", "type": "invalid_request_error", "param": null, "code": "%s"}}'
            % (message, reason.lower().replace(" ", "_"))).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


TOO_SLOW = _refusal(408, "Request Timeout", f"The request's headers did not arrive within {HEADER_TIMEOUT} s.")
TOO_LARGE = _refusal(431, "Request Header Fields Too Large", f"The request's headers exceed {MAX_HEADER_BYTES} bytes.")


BUSY_BODY = (b'{"error": {"message": "The proxy is at its connection limit; retry shortly.", '
             b'"type": "server_error", "param": null, "code": "too_many_connections"}}')


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """What a request past PROXY_MAX_CONNECTIONS gets, without reaching the application."""
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                            (b"content-length", str(len(BUSY_BODY)).encode())]})
    await send({"type": "http.response.body", "body": BUSY_BODY})


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on every request's head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True
        self._message_complete = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._running: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        # Every request of the connection whose answer is not complete: the one running (with
        # pipelining, `self.cycle` is the newest request, queued behind it), and those queued.
        cycles = [self._running, self.cycle, *(cycle for cycle, _ in self.pipeline)]
        super().connection_lost(exc)
        for cycle in cycles:
            if cycle is not None and not cycle.response_complete:
                departure = cycle.scope.get(DEPARTURE)
                if isinstance(departure, Departure):
                    departure.fire()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle  # the request being answered (pipelined ones wait in self.pipeline)
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        self.transport.flush()  # what was answered goes before what these bytes may cause
        if self._awaiting_head:
            if self._head_timer is None:  # the first byte of a kept-alive connection's next request
                self._arm_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse(TOO_LARGE)

    def eof_received(self) -> bool | None:
        self.transport.flush()  # the peer finished sending: uvloop closes the transport next, pending bytes first
        return super().eof_received()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._disarm_head_timer()
        application = self.app
        if len(self.connections) > MAX_CONNECTIONS or len(self.tasks) >= MAX_CONNECTIONS:
            self.app = _busy  # type: ignore[assignment]
        try:
            super().on_headers_complete()
        finally:
            self.app = application

    def on_message_begin(self) -> None:
        self._message_complete = False
        super().on_message_begin()
        self.scope[DEPARTURE] = Departure()  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        self._message_complete = True
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:  # answered early; the rest has now arrived
            self._disarm_head_timer()
            self._next_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if not self._message_complete:
            # Answered before the body arrived (a 401, 413 or 408): the client may finish sending
            # it (read and dropped), but within the header timeout, not at its leisure.
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._refuse, b"")
        elif not self.pipeline:  # a pipelined request has had its head already
            self._next_head()

    def _next_head(self) -> None:
        """The next request on this kept-alive connection has a head of its own to bound."""
        self._awaiting_head, self._head_bytes = True, 0

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            # An idle kept-alive connection (no byte of a next request) is closed without a word.
            self._refuse(TOO_SLOW if self._head_bytes else b"")

    def _refuse(self, response: bytes) -> None:
        self._disarm_head_timer()
        if response:
            self.transport.write(response)
        self.transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m swarm_proxy.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fd", type=int, default=None,
                        help="serve on this inherited, listening socket instead of binding --host/--port")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    options = parser.parse_args(argv)
    config = uvicorn.Config("swarm_proxy.gateway:create_app", factory=True, host=options.host, port=options.port,
                            http=BoundedHttpTools, access_log=False, timeout_keep_alive=5, log_level=options.log_level,
                            proxy_headers=False)  # X-Forwarded-*: nothing here uses the client's address or scheme
    listeners = None
    if options.fd is not None:
        try:
            listeners = [socket.socket(fileno=options.fd)]  # family and type read from the descriptor itself
        except OSError as error:
            parser.error(f"--fd {options.fd} is not an open socket ({error.strerror}); "
                         "pass the descriptor of a listening socket")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=listeners)
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's own status for a server that never started (a port taken, an app that fails)


if __name__ == "__main__":
    main()
