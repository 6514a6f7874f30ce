"""A lean HTTP/1.1 client for the plain-HTTP upstreams (vLLM, the Ray proxy, any OpenAI-compatible
server on the swarm's network): the request written in one send on a kept-alive connection, the
response parsed by httptools (the parser uvicorn itself runs on).

Why not aiohttp here: measured on the 2-core CI machine against an instant upstream, a request
through aiohttp's ClientSession cost 220-260 us of CPU, and its bytes left 0.25-0.3 ms after the
call; through this client about 70 us, and the bytes leave within the call. That was a quarter of
what the proxy added to a stream's time to first token. aiohttp stays for what this does not do:
TLS (OpenAI), an egress proxy from the environment, and the model lists (upstream.py chooses).

What it does, and nothing else: one pool per upstream of idle connections, the most recently
used first, one idle longer than `keepalive_s` since its last answer ended closed (below the 5 s after which uvicorn closes its
side, so that a request is not sent on a connection being closed); Content-Length, chunked, and
bodies that end with the connection; a deadline on every wait for the upstream (`read_timeout`,
as aiohttp's sock_read); reading paused while more than HIGH_WATER bytes wait for a slow client,
so that TCP holds the upstream back, not the proxy's memory. A reply not read to its end closes
its connection when closed: that is how the upstream (vLLM aborts the request) sees a client go.

Failures: `ConnectFailed` when no byte of the request can have left (refused, unresolvable, the
connect timed out: safe to retry); `ConnectionBroken` once one may have (closed, reset, an answer
that is not HTTP: the upstream may be generating, a retry would run it twice); TimeoutError for a
wait past its deadline.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import AsyncIterator

import httptools

HIGH_WATER = 256 * 1024


class ConnectFailed(ConnectionError):
    """The connection could not be made: nothing was sent."""


class ConnectionBroken(ConnectionError):
    """The connection failed after the request was written: the upstream may have received it."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection; feeds the reply in progress, if any."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reply: Reply | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def data_received(self, data: bytes) -> None:
        reply = self.reply
        if reply is None:  # bytes on an idle connection (a server's goodbye): not to be reused
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            reply.fail(ConnectionBroken(f"the upstream's answer is not HTTP/1.1 ({error})"))
            self.close()

    def eof_received(self) -> bool | None:
        self.closed = True  # the upstream is closing it: not to be reused (connection_lost comes later)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.reply is not None:
            self.reply.lost(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # httptools' callbacks, for the reply in progress
    def on_message_begin(self) -> None:
        if self.reply is not None:
            self.reply.begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.reply is not None:
            self.reply.header(name, value)

    def on_headers_complete(self) -> None:
        if self.reply is not None:
            self.reply.head_done(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self.reply is not None:
            self.reply.body(body)

    def on_message_complete(self) -> None:
        if self.reply is not None:
            self.reply.done(self.parser.should_keep_alive())


class Reply:
    """An upstream's answer once its head arrived: `status`, `headers` (names in lower case),
    the body by `read()` or `chunks()`, and `close()`, which returns the connection to the pool
    when the body was read to its end and closes it otherwise."""

    def __init__(self, connection: _Connection, pool: Pool) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._connection, self._pool = connection, pool
        self._loop = pool.loop
        self._head: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._paused = False
        self._until_close = True  # neither Content-Length nor chunked: the body ends with the connection
        self._complete = False
        self._keep_alive = False
        self._error: BaseException | None = None
        self._closed = False

    # fed by the connection
    def begin(self) -> None:
        if self._complete:  # bytes past the answer's end: a next answer nobody asked for
            self._keep_alive = False

    def header(self, name: bytes, value: bytes) -> None:
        if self._complete:  # bytes past the answer's end: a next answer nobody asked for
            self._keep_alive = False
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "content-length" or (key == "transfer-encoding" and text.rstrip().lower().endswith("chunked")):
            self._until_close = False
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def head_done(self, status: int) -> None:
        if self._complete:
            return
        self.status = status
        if status < 200:  # an interim answer (100 Continue, never asked for): the real one follows
            self.headers.clear()
            return
        if status in (204, 304):
            self._until_close = False
        if not self._head.done():
            self._head.set_result(None)

    def body(self, data: bytes) -> None:
        if self._complete:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > HIGH_WATER and not self._paused and self._connection.transport is not None:
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def done(self, keep_alive: bool) -> None:
        if self.status < 200 or self._complete:
            return
        self._complete, self._keep_alive = True, keep_alive
        self._connection.idle_since = time.monotonic()  # the upstream's keep-alive clock starts now
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved: nobody may be waiting on it any more
        self._wake()

    def lost(self, exc: Exception | None) -> None:
        if self._complete:
            return
        if exc is None and self._head.done() and self._until_close and self._error is None:
            self._complete = True  # the body was everything until the connection closed
            self._wake()
            return
        why = f"{type(exc).__name__}: {exc}" if exc else "the upstream closed the connection"
        self.fail(ConnectionBroken(why))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # read by the proxy
    async def wait_head(self, timeout: float) -> None:
        await self._deadline(self._head, timeout)

    async def _next(self) -> None:
        """Wait for more of the body, or its end, or the connection's failure."""
        self._waiter = self._loop.create_future()
        try:
            await self._deadline(self._waiter, self._pool.read_timeout)
        finally:
            self._waiter = None

    async def _deadline(self, future: asyncio.Future[None], timeout: float) -> None:
        timer = self._loop.call_later(timeout, _expire, future)
        try:
            await future
        finally:
            timer.cancel()

    def _take(self) -> bytes:
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending, self._pending_bytes = [], 0
        if self._paused and self._connection.transport is not None and not self._connection.closed:
            self._paused = False
            self._connection.transport.resume_reading()
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; what arrived before a failure is handed out before it is raised."""
        while True:
            if self._pending:
                yield self._take()
            elif self._error is not None:
                raise self._error
            elif self._complete:
                return
            else:
                await self._next()

    async def read(self) -> bytes:
        parts: list[bytes] = []
        async for part in self.chunks():
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def unread(self) -> bytes:
        """What arrived and was not handed out yet (chunks() hands it out before a failure)."""
        return self._take() if self._pending else b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        connection.reply = None
        if self._complete and self._error is None and self._keep_alive and not connection.closed:
            if self._paused:  # the end had arrived with more than HIGH_WATER unread
                self._paused = False
                assert connection.transport is not None
                connection.transport.resume_reading()
            self._pool.put(connection)
        else:
            connection.close()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Pool:
    """Kept-alive connections to one upstream (host and port), and requests on them."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float, keepalive_s: float) -> None:
        self.host, self.port = host, port
        self.connect_timeout, self.read_timeout, self.keepalive_s = connect_timeout, read_timeout, keepalive_s
        self.loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []

    async def request(self, message: bytes) -> Reply:
        """Send one complete request (head and body) and return once the answer's head arrived."""
        connection = self._reuse() or await self._connect()
        reply = Reply(connection, self)
        connection.reply = reply
        assert connection.transport is not None
        connection.transport.write(message)
        try:
            await reply.wait_head(self.read_timeout)
        except BaseException:  # a failure, a timeout, or the caller cancelled (its client left)
            reply.close()  # the body is not complete: the connection is closed
            raise
        return reply

    def put(self, connection: _Connection) -> None:
        now = time.monotonic()
        idle = self._idle
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive_s):
            idle.pop(0).close()  # the least recently used: past its keep-alive, or closed by the upstream
        idle.append(connection)

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if (not connection.closed and connection.transport is not None and not connection.transport.is_closing()
                    and now - connection.idle_since < self.keepalive_s):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await self.loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError:
            raise ConnectFailed(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as error:  # refused, unreachable, a name that does not resolve
            raise ConnectFailed(f"connecting to {self.host}:{self.port}: {error.strerror or error}") from None
        return connection

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
