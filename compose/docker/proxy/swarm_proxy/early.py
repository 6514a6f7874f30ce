"""A stream admitted early (ratelimit.py): its upstream call and Redis's verdict on it, together.

The upstream call's task is made first and the booking's second, and the event loop runs new
tasks in that order: on a kept-alive connection the request's bytes leave before the script is
sent (a new connection waits for its connect, and the script goes meanwhile), and redis-py's
work falls in the time the upstream takes to answer. Whichever ends first decides what waits: a
refusal cancels the upstream call at once, its headers come or not (a queued engine may take
seconds to send them); an admission waits for the reply; a reply waits for the verdict. Nothing
is relayed before the verdict. When the call fails or the client leaves, `abandon` cancels the
call (or closes its reply) and still waits for the verdict (shielded: the booking goes on even
if the request is cancelled), so that what Redis booked is known and settled. Only a
cancellation of the request besides the client's (the server shutting down) can cut that wait
short: the booking then lapses with its window.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import anyio

from swarm_proxy.ratelimit import Verdict
from swarm_proxy.telemetry import EARLY_ADMISSIONS
from swarm_proxy.upstream import Reply


class EarlyStart:
    """The upstream call of a stream and the booking of it (`RateLimiter.book_early`), run together."""

    def __init__(self, open_call: Callable[[], Awaitable[Reply]],
                 book: Callable[[], asyncio.Future[Verdict]]) -> None:
        self._opening: asyncio.Future[Reply] = asyncio.ensure_future(open_call())
        self._booking = book()  # after the call: the request leaves first
        self.verdict: Verdict | None = None  # Redis's, once known

    def _decided(self) -> Verdict:
        if self.verdict is None:
            self.verdict = self._booking.result()
            EARLY_ADMISSIONS.labels("admitted" if self.verdict.allowed else "refused").inc()
        return self.verdict

    async def reply(self) -> Reply | None:
        """The upstream's reply once Redis admitted the request, None when Redis refused it (the
        call cancelled or its reply closed); raises what the call raised, once the verdict is in."""
        await asyncio.wait((self._opening, self._booking), return_when=asyncio.FIRST_COMPLETED)
        if not self._booking.done():  # the call ended first: its reply (or error) waits for the verdict
            await asyncio.shield(self._booking)
        if not self._decided().allowed:
            self._drop_call()
            return None
        return await self._opening

    async def abandon(self) -> Verdict:
        """The call failed, or the client left (or the reply will not be relayed): the call
        cancelled or its reply closed, and the verdict, waited for."""
        self._drop_call()
        with anyio.CancelScope(shield=True):
            await asyncio.shield(self._booking)
        return self._decided()

    def _drop_call(self) -> None:
        """Cancel the call, or close its reply: no await, so nothing cuts in between."""
        if self._opening.done():
            _close_reply(self._opening)
        else:
            self._opening.cancel()
            self._opening.add_done_callback(_close_reply)  # a reply that came before the cancel did


def _close_reply(opening: asyncio.Future[Reply]) -> None:
    """Close a call's reply, if it gave one: closed before it was read, the upstream request ends
    (an error it ended with is taken, so that asyncio does not report it as never retrieved)."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()
