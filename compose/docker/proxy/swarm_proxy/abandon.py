"""Requests whose client leaves: the upstream request is cancelled, whenever the client goes.

Starlette does not cancel a handler when its client disconnects, and uvicorn drops what is sent
after a disconnect without a word; so a client that left a non-streaming request, or a stream
before the upstream's headers arrived, kept the engine generating for nobody until the upstream
read timeout (300 s), with its tokens still reserved. A `Watch` is one task that waits on the
ASGI channel once the body has been read (the next message uvicorn delivers is then
`http.disconnect`) and cancels the request's own task when it comes: the upstream call is
interrupted where it waits (aiohttp closes the connection, and vLLM aborts a request whose
connection closes). `unless_abandoned` turns that cancellation into `ClientGone`, for the caller
to give the reservation back and log a 499 (nginx's "client closed request"); during a stream
the same watch ends the relay loop (relay.py).

Under the proxy's own server (server.py) a request's scope carries a `Departure`, which the
connection fires when it is lost before the answer is complete: the watch subscribes to it and
needs no task at all (a task per request, parked on the channel, cost about 5 % of a relayed
request's CPU). Under any other ASGI server the watch falls back to one task on the channel.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

from starlette.requests import Request

T = TypeVar("T")
CLIENT_CLOSED = 499
DEPARTURE = "swarm_proxy.departure"  # the scope's key for a request's Departure


class Departure:
    """A request's "the client left" signal, fired by the connection (server.py) when it is lost
    before the request's answer is complete; callbacks run at once, in the loop's thread. It stays
    fired: a client can leave while its request waits on Redis or the upstream's model list, before
    anything watches, and a watch that starts after that must still see it."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self.fired = False

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the client leaves; at once if it has left already."""
        if self.fired:
            callback()
            return
        self._callbacks.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class ClientGone(Exception):
    """The client disconnected before its answer was complete; the upstream call was cancelled."""


class Watch:
    """Cancels the request's task when its client disconnects, between start() and stop()."""

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        self._departure: Departure | None = request.scope.get(DEPARTURE)
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Future[None] | None = None
        self._watching = False
        self.gone = False  # the client left while watched
        self._settled = False  # its cancellation has been caught (and uncancelled)

    def start(self) -> None:
        """Watch from now; only once the request's body has been read (the watch reads the channel)."""
        if self._watching:
            return
        self._watching, self._task = True, asyncio.current_task()
        if self._departure is not None:
            self._departure.subscribe(self._left)
        else:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            continue
        self._left()

    def _left(self) -> None:
        self.gone = True
        if self._task is not None:
            self._task.cancel()

    def caught(self) -> bool:
        """Called where a CancelledError was caught: whether it is this watch's (the client left),
        in which case the task's cancellation is withdrawn and the caller goes on to clean up. A
        cancellation of its own besides (the server shutting down) still stands: False."""
        if self.gone and not self._settled and self._task is not None:
            self._settled = True
            return self._task.uncancel() == 0
        return False

    async def stop(self) -> None:
        """Stop watching. A disconnect noticed after the watched work ended left a cancellation
        pending on the task: it is taken here, so that it does not interrupt the clean-up."""
        if not self._watching:
            return
        self._watching = False
        if self._departure is not None:
            self._departure.unsubscribe(self._left)
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self.gone and not self._settled:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if not self.caught():
                    raise


async def unless_abandoned(watch: Watch, call: Callable[[], Awaitable[T]]) -> T:
    """`call()`'s result, or ClientGone (the call cancelled) when the client leaves first."""
    watch.start()
    try:
        return await call()
    except asyncio.CancelledError:
        if watch.caught():
            raise ClientGone from None
        raise
