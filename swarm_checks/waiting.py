"""Waiting for something to become true: a deadline, exponential backoff with jitter, transient
errors tolerated, and a way to give up early.

pytest-docker polls at a fixed pause and testcontainers at a fixed interval; both either hammer a
slow service or sleep long after a fast one is ready. Backoff that starts short and grows, with
full jitter so that parallel waiters do not poll in lockstep, is cheap for both cases.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from swarm_checks.errors import SwarmError

T = TypeVar("T")
_RNG = random.Random()


class GiveUp(SwarmError):
    """Raised by a probe or a fail-fast check: waiting longer cannot help."""


class WaitTimeout(SwarmError):
    """The deadline passed before the condition held; carries the last transient error."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: sleep uniform(floor, min(cap, first * factor**n))."""

    first: float = 0.25
    factor: float = 2.0
    cap: float = 5.0
    floor: float = 0.05

    def delay(self, attempt: int, rng: random.Random = _RNG) -> float:
        ceiling = min(self.cap, self.first * self.factor ** attempt)
        return rng.uniform(min(self.floor, ceiling), ceiling)


def wait_until(
    attempt: Callable[[], T],
    deadline: float,
    *,
    what: str,
    backoff: Backoff = Backoff(),
    stop: threading.Event | None = None,
    fail_fast: Callable[[], None] | None = None,
) -> T:
    """Call `attempt` until it returns without raising, or fail.

    - any exception from `attempt` is transient: it is remembered and retried after a backoff;
    - `GiveUp` (from `attempt` or `fail_fast`) ends the wait at once;
    - `stop` set by someone else (another waiter failed) ends the wait at once;
    - past `deadline` (a time.monotonic() value) it raises WaitTimeout naming the last error.
    """
    last_error: BaseException | None = None
    tries = 0
    while True:
        if stop is not None and stop.is_set():
            raise GiveUp(f"{what}: stopped because another service failed")
        if fail_fast is not None:
            fail_fast()
        try:
            return attempt()
        except GiveUp:
            raise
        except Exception as error:  # noqa: BLE001 - a probe may raise anything while a service starts
            last_error = error
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f": last error: {describe(last_error)}" if last_error else ""
            raise WaitTimeout(f"{what} was not ready before the deadline{detail}")
        pause = min(backoff.delay(tries), remaining)
        tries += 1
        if stop is not None:
            if stop.wait(pause):
                raise GiveUp(f"{what}: stopped because another service failed")
        else:
            time.sleep(pause)


def describe(error: BaseException) -> str:
    """An exception as one short line: type and first line of the message."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:300] if first else type(error).__name__
