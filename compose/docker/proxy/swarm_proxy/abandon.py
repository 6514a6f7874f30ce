"""Requests whose client leaves before the answer starts: the upstream request is cancelled.

Starlette does not cancel a handler when its client disconnects; only a StreamingResponse, once
it has started, listens for that. So a client that left a non-streaming request, or a stream
before the upstream's headers arrived, kept the engine generating for nobody until the upstream
read timeout (300 s), with its tokens still reserved. `unless_abandoned` runs the upstream call
beside a watch on the ASGI channel: once the body has been read, the next message uvicorn
delivers is `http.disconnect`, and then the call is cancelled (httpx closes its connection, and
vLLM aborts a request whose connection closes) and `ClientGone` raised, for the caller to give the
reservation back and log a 499 (nginx's "client closed request").
"""
from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Awaitable, Callable, TypeVar

from fastapi import Request

T = TypeVar("T")
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client disconnected before its answer started; the upstream call was cancelled."""


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body was read already: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        continue


async def unless_abandoned(request: Request, call: Callable[[], Awaitable[T]]) -> T:
    """`call()`'s result, or ClientGone (the call cancelled) when the client leaves first."""
    work = asyncio.ensure_future(call())
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the handler itself is cancelled (shutdown): so is its call
        work.cancel()
        watch.cancel()
        raise
    watch.cancel()
    if not work.done():
        work.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await work
        raise ClientGone
    return work.result()
