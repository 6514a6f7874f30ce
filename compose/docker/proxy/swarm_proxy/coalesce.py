"""Writes to a client connection coalesced per turn of the event loop: one send for what one turn wrote.

uvicorn writes a response's status line and headers when the application sends
`http.response.start`, and its body when it sends `http.response.body`: two `send` system calls
for every non-streaming answer, and for a stream one more for its end (the chunked terminator),
though the application sends them back to back. On this project's small shared machines a
system call costs as much as tens of microseconds of Python, so they were a sixth of what the
proxy spent on a request. `CoalescedTransport` stands between uvicorn's protocol and the
connection's transport: what is written while the loop runs its ready callbacks is kept in order
and sent with one write (scatter-gather, no copy) by a callback scheduled with `call_soon`. That
callback runs in the loop's next pass, right after its poll for I/O, which does not wait while a
callback is ready: nothing is held back for long, a stream's headers still leave before its first
token is waited for, and each event leaves as soon as it is relayed. The connection's own I/O
events in that pass see the pending bytes sent first (server.py flushes on data and on the
peer's end of stream, which uvloop answers by closing the transport).

Everything else (flow control, extra info) is the real transport's; a close or write_eof sends
what is pending first, so a response followed by `connection: close` is still whole.
"""
from __future__ import annotations

import asyncio
from typing import Any


class CoalescedTransport:
    """A connection's transport as uvicorn's protocol sees it: writes gathered until the loop's turn ends."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:  # a str raises here, in the sender's send(), as uvloop's write did;
            data = bytes(data)  # a bytearray is copied, as it may be reused once send() returns
        if not data:
            return
        self._pending.append(data)
        if len(self._pending) == 1:  # the first write since the last flush: flush in the next pass
            self._loop.call_soon(self.flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what was written since the last flush, in one write (nothing once the connection is closing)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)  # one writev, the buffers not joined

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:  # anything else uvicorn may ask of a transport
        return getattr(self._transport, name)
