"""A stream admitted early (ratelimit.py): its upstream call and Redis's verdict on it, together.

The upstream call's task is made first and the booking's second, and the event loop runs new
tasks in that order: the request's bytes leave before the script is sent, and redis-py's work
falls in the time the upstream takes to answer. Whichever ends first decides what waits: a
refusal cancels the upstream call at once, its headers come or not (a queued engine may take
seconds to send them); an admission waits for the reply; a reply waits for the verdict. Nothing
is relayed before the verdict. When the call fails or the client leaves, `abandon` cancels the
call (or closes its reply) and still waits for the verdict, out of reach of cancellation, so
that what Redis booked is always known and settled.
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
            await self._cancel_call()
            return None
        return await self._opening

    async def abandon(self) -> Verdict:
        """The call failed, or the client left (or the reply will not be relayed): the call
        cancelled or its reply closed, and the verdict, waited for whatever happens meanwhile."""
        await self._cancel_call()
        with anyio.CancelScope(shield=True):
            await asyncio.wait((self._booking,))
        return self._decided()

    async def _cancel_call(self) -> None:
        self._opening.cancel()  # nothing when it is done
        await asyncio.wait((self._opening,))
        if not self._opening.cancelled() and self._opening.exception() is None:
            self._opening.result().close()  # closed before it was read: the upstream request ends
