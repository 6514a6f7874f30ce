"""Waiting until every unit of a stack is ready: the part of standing a stack up that does not
depend on how it was stood up, so the compose target and a Kubernetes one share it.

A target supplies a `poll` that reports, for each unit (a Compose service, a Kubernetes
workload), whether it runs, whether it is healthy and where its probe can reach it; `poll`
raises `StackError` to fail fast (a container that exited, a pod in CrashLoopBackOff). The
waiter probes each unit in parallel as soon as it runs (a unit without a probe waits for its
own healthcheck), with backoff and one deadline, and records the time each took.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from swarm_checks.endpoint import Endpoint
from swarm_checks.errors import StackError
from swarm_checks.probes import Probe
from swarm_checks.redaction import Redactor
from swarm_checks.waiting import Backoff, GiveUp, WaitTimeout, wait_until


@dataclass(frozen=True)
class UnitState:
    """One unit as one poll saw it."""

    kind: str
    running: bool  # every replica runs and none fails its healthcheck: a probe may try it
    healthy: bool  # every replica runs and passes its own healthcheck (where it has one)
    endpoint: Endpoint | None  # where the probe reaches it; None: nothing published to probe
    describe: str  # its state in words, for the timeout message ("running/starting")


@dataclass(frozen=True)
class Ready:
    """A unit that became ready: seconds since the start and what its probe saw."""

    seconds: float
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"seconds": self.seconds, "detail": self.detail}


Poll = Callable[[], Mapping[str, UnitState]]


class ReadinessWaiter:
    """Probe every unit until all are ready or the deadline passes; `ready` and `endpoints` keep
    what was found, also when the wait fails (the report shows who was ready and who was not)."""

    def __init__(self, probes: Mapping[str, Probe], redact: Redactor, timeout: float,
                 timeout_hint: str = "--stack-timeout") -> None:
        self.probes = probes
        self.redact = redact
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timeout_hint = timeout_hint
        self.ready: dict[str, Ready] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self._stop = threading.Event()

    def wait(self, units: Sequence[str], poll: Poll, still_fine: Callable[[], None] = lambda: None) -> None:
        """Return once every unit is ready. `still_fine` raises when the step that creates the
        units (`docker compose up`, `helm install`) has failed meanwhile."""
        pending = set(units)
        probing: dict[str, Future[None]] = {}
        backoff = Backoff(first=0.5, cap=3.0)
        states: Mapping[str, UnitState] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(units)), thread_name_prefix="swarm-probe") as pool:
            try:
                for attempt in range(1_000_000):
                    still_fine()
                    states = poll()
                    for name in sorted(pending - set(probing)):
                        state = states.get(name)
                        if state is not None and self._may_probe(state):
                            probing[name] = pool.submit(self._probe, name, state)
                    for name, future in probing.items():
                        if name in pending and future.done():
                            future.result()  # raises the probe's StackError
                            pending.discard(name)
                    if not pending:
                        return
                    if time.monotonic() > self.deadline:
                        raise StackError(self._timeout_message(pending, states), sorted(pending))
                    time.sleep(backoff.delay(min(attempt, 4)))
            except BaseException:
                self._stop.set()
                raise

    def _may_probe(self, state: UnitState) -> bool:
        """A unit with a probe is probed as soon as it runs (its healthcheck may still be in its
        first interval); one without is ready when its healthcheck passes."""
        return state.running if self._probe_for(state) else state.healthy

    def _probe_for(self, state: UnitState) -> Probe | None:
        return self.probes.get(state.kind) if state.endpoint is not None else None

    def _probe(self, name: str, state: UnitState) -> None:
        probe = self._probe_for(state)
        if probe is None or state.endpoint is None:
            detail = "healthy (its own healthcheck)"
        else:
            endpoint = state.endpoint
            try:
                detail = wait_until(lambda: probe(endpoint), self.deadline, what=f"service {name}", stop=self._stop)
            except (GiveUp, WaitTimeout) as error:
                raise StackError(f"service {name}: {self.redact(str(error))}", [name]) from None
        if state.endpoint is not None:
            self.endpoints[name] = state.endpoint
        self.ready[name] = Ready(round(time.monotonic() - self.started, 2), self.redact(detail))

    def _timeout_message(self, pending: set[str], states: Mapping[str, UnitState]) -> str:
        described = [f"{name} ({states[name].describe if name in states else 'not created'})" for name in sorted(pending)]
        return (f"not ready within {self.timeout_hint}={self.timeout:g} s: {'; '.join(described)}; "
                "their logs are attached")
