"""Running a load: arrival modes, warm-up, bounds in count and time, and the result document.

Modes (LoadSpec.mode):
- concurrency: `concurrency` requests in flight at all times (default 1);
- rate: one request every 1/rate seconds;
- poisson: gamma-distributed gaps with mean 1/rate (burstiness 1 is Poisson, < 1 burstier);
the last two keep their schedule with no cap on the requests in flight unless `concurrency`
is given (a cap that makes requests wait shows as scheduling lag). Every run stops at
`max_requests` or `max_seconds`, whichever comes first; requests still in flight get
`drain_seconds` to finish and are then cancelled, and requests still queued behind a cap are
dropped: both count as incomplete, and neither stretches the measured duration (it ends at the
last finished request, or at the deadline when the run was cut). The first `warmup_requests`
are sent and awaited before the measurement and left out of it, server-side counters included
(/metrics is scraped after the warm-up). Each request's scheduling lag (sent minus scheduled) is
recorded, and a rate or Poisson run whose client fell behind its schedule says so
(`summary["schedule_kept"]`, see metrics.schedule). While the measured part runs, the objects
the caller had before it are kept out of garbage collection (see _caller_heap_frozen).
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterator, Sequence

from swarm_checks.load import roofline, server_metrics
from swarm_checks.load.client import RequestRecord, new_session, send
from swarm_checks.load.metrics import PERCENTILES, Slo, distribution, schedule, summarize
from swarm_checks.load.workload import RequestSpec, Workload

SCHEMA = "swarm-checks/load-result/1"


@dataclass(frozen=True)
class LoadSpec:
    """How to load: the mode, its parameters and the run's bounds. `concurrency`: requests in
    flight for mode concurrency (None means 1); for rate and poisson an optional cap (None: no
    cap, the schedule alone decides)."""

    mode: str = "concurrency"          # concurrency | rate | poisson
    concurrency: int | None = None
    rate: float | None = None          # requests per second (rate, poisson)
    burstiness: float = 1.0            # gamma shape for poisson
    max_requests: int = 50
    max_seconds: float = 120.0
    warmup_requests: int = 2
    drain_seconds: float = 60.0
    request_timeout: float = 300.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode == "concurrency" and self.concurrency is None:
            object.__setattr__(self, "concurrency", 1)

    def check(self) -> None:
        if self.mode not in ("concurrency", "rate", "poisson"):
            raise ValueError(f"unknown mode {self.mode!r}: concurrency, rate or poisson")
        if self.mode != "concurrency" and not self.rate:
            raise ValueError(f"mode {self.mode} needs a rate (requests per second)")
        if self.max_requests < 1 or self.max_seconds <= 0 or (self.concurrency is not None and self.concurrency < 1):
            raise ValueError("max_requests, max_seconds and concurrency must be positive")


@dataclass
class RunResult:
    """One run: its records and the versioned document that describes it."""

    records: list[RequestRecord]
    document: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.document["summary"]


@dataclass(repr=False)
class _Measured:
    """What the async part hands back. A short repr: asyncio.run formats its main task's result
    when it restores the SIGINT handler (Python 3.11), which for thousands of records costs time."""

    records: list[RequestRecord]
    duration: float
    before: dict[str, float] | None = None
    after: dict[str, float] | None = None
    loop_stalls: list[tuple[float, float]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<_Measured {len(self.records)} records in {self.duration:.3f} s>"


def _gaps(spec: LoadSpec) -> Callable[[], float]:
    rng = random.Random(spec.seed)
    if spec.mode == "rate":
        return lambda: 1.0 / spec.rate  # type: ignore[operator]
    shape = max(spec.burstiness, 1e-3)
    scale = 1.0 / (spec.rate * shape)  # type: ignore[operator]
    return lambda: rng.gammavariate(shape, scale)


@contextlib.contextmanager
def _caller_heap_frozen() -> Iterator[None]:
    """Keep the collector off the objects that existed before the run (gc.freeze) while it runs.
    A full collection scans every live object: in a process that has imported torch (640 000 of
    them) it takes 350-460 ms, time during which no chunk is read, so it lands in the measured
    TTFTs, gaps and throughput. What the run itself allocates is collected as usual. Left alone
    when the caller froze objects itself or turned the collector off."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _scrape(metrics_url: str | None) -> dict[str, float] | None:
    return await asyncio.to_thread(server_metrics.scrape, metrics_url) if metrics_url else None


async def _run(base_url: str, model: str, api_key: str | None, workload: Workload, spec: LoadSpec,
               progress: Callable[[int], None] | None, metrics_url: str | None = None) -> _Measured:
    url = f"{base_url.rstrip('/')}/{workload.path}"
    specs = workload.stream()
    bodies = (workload.body(model, request, True) for request in specs)
    async with new_session(spec.concurrency, api_key) as session:

        async def request(body: dict[str, Any], record: RequestRecord) -> None:
            await send(session, url, body, record, spec.request_timeout)

        for _ in range(spec.warmup_requests):
            await request(next(bodies), RequestRecord(time.perf_counter()))
        before = await _scrape(metrics_url)  # after the warm-up: its tokens are not the run's
        with _caller_heap_frozen():
            records, duration, loop_stalls = await _measure(request, bodies, spec, progress)
        after = await _scrape(metrics_url) if before is not None else None
    return _Measured(records, duration, before, after, loop_stalls)


async def _measure(request: Callable[[dict[str, Any], RequestRecord], Awaitable[None]], bodies: Iterator[dict[str, Any]],
                   spec: LoadSpec, progress: Callable[[int], None] | None) -> tuple[list[RequestRecord], float, list[tuple[float, float]]]:
    """The measured part: the requests the mode sends within the bounds, and how long it lasted."""
    records: list[RequestRecord] = []
    tasks: list[asyncio.Task[Any]] = []
    started = time.perf_counter()
    deadline = started + spec.max_seconds
    loop_stalls: list[tuple[float, float]] = []
    monitor = asyncio.create_task(_watch_loop(loop_stalls))
    if spec.mode == "concurrency":
        counter = iter(range(spec.max_requests))

        async def worker() -> None:
            for _ in counter:
                now = time.perf_counter()
                if now >= deadline:
                    return
                record = RequestRecord(now)
                records.append(record)
                await request(next(bodies), record)
                if progress:
                    progress(1)

        tasks = [asyncio.create_task(worker()) for _ in range(spec.concurrency or 1)]
    else:
        gate: Any = asyncio.Semaphore(spec.concurrency) if spec.concurrency else contextlib.nullcontext()

        async def one(body: dict[str, Any], record: RequestRecord) -> None:
            async with gate:
                await request(body, record)
            if progress:
                progress(1)

        gap = _gaps(spec)
        next_at = started
        for _ in range(spec.max_requests):
            if next_at >= deadline:
                break
            body = next(bodies)
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = RequestRecord(next_at)
            records.append(record)
            tasks.append(asyncio.create_task(one(body, record)))
            next_at += gap()
    remaining = max(0.0, deadline - time.perf_counter()) + spec.drain_seconds
    _, pending = await asyncio.wait(tasks, timeout=remaining) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    monitor.cancel()
    stopped = time.perf_counter()
    for record in records:
        if not record.end:  # queued behind the cap, never sent
            record.end, record.cancelled = stopped, True
            record.error_kind, record.error = "incomplete", "still queued (never sent) when the run stopped"
    finished = [r.end for r in records if not r.cancelled]
    last = max(finished) if finished else started
    if any(r.cancelled for r in records):
        last = max(last, deadline)  # cut: the run lasted until its deadline, not until the cancellation
    return records, last - started, loop_stalls


LOOP_TICK = 0.01


async def _watch_loop(stalls: list[tuple[float, float]]) -> None:
    """The client's own ceiling, measured while it works: each 10 ms sleep of its event loop, as
    (when it should have woken, when it did). A send scheduled inside such a stall cannot leave
    before the loop runs again; on a starved host (other work holding the cores) stalls of
    hundreds of ms appear, while a client that queues its sends lags outside them too."""
    while True:
        due = time.perf_counter() + LOOP_TICK
        await asyncio.sleep(LOOP_TICK)
        stalls.append((due, time.perf_counter()))


def excess_lags(records: Sequence[RequestRecord], stalls: Sequence[tuple[float, float]]) -> list[float]:
    """Per sent request, how much later it left than the earliest the event loop could have sent
    it: the scheduled time, or the end of the loop stall that scheduled time fell into."""
    import bisect

    dues = [due for due, _ in stalls]
    excess = []
    for record in records:
        if not record.start:
            continue
        earliest = record.scheduled
        index = bisect.bisect_right(dues, record.scheduled) - 1
        if index >= 0 and stalls[index][0] <= record.scheduled < stalls[index][1]:
            earliest = stalls[index][1]
        excess.append(max(0.0, record.start - earliest))
    return excess


def environment(gpu: str | None = None) -> dict[str, Any]:
    """Where the run happened. `gpu`: the engine's GPU as nvidia-smi names it there (the machine
    running the client is not the engine's: nothing is asked of a local nvidia-smi)."""
    return {"time": datetime.now(timezone.utc).isoformat(), "host": platform.node(), "python": platform.python_version(),
            "platform": platform.platform(), "gpu": gpu, "hardware_class": roofline.hardware_class(gpu)}


def run_load(base_url: str, model: str, workload: Workload, spec: LoadSpec, *, api_key: str | None = None,
             metrics_url: str | None = None, slo: Slo | None = None, percentiles: Sequence[int] = PERCENTILES,
             keep_requests: bool = False, progress: Callable[[int], None] | None = None,
             gpu: str | None = None) -> RunResult:
    """Run one load against an OpenAI-compatible base URL (ending in /v1) and describe it."""
    spec.check()
    measured = asyncio.run(_run(base_url, model, api_key, workload, spec, progress, metrics_url))
    records = measured.records
    summary = summarize(records, measured.duration, slo, percentiles)
    summary["schedule"] = schedule(records, spec.mode, spec.rate, spec.concurrency)
    summary["schedule_kept"] = summary["schedule"]["kept"]
    summary["client_loop_lag_ms"] = distribution([woke - due for due, woke in measured.loop_stalls], percentiles)
    summary["excess_lag_ms"] = distribution(excess_lags(records, measured.loop_stalls), percentiles)
    if not metrics_url:
        server: dict[str, Any] = {"available": False, "reason": "no metrics URL given"}
    else:
        server = server_metrics.delta(measured.before, measured.after, summary["total_output_tokens"])
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "environment": environment(gpu),
        "endpoint": {"base_url": base_url, "model": model, "metrics_url": metrics_url},
        "workload": workload.describe(),
        "load": asdict(spec),
        "slo": asdict(slo) if slo else None,
        "summary": summary,
        "server_metrics": server,
        "thresholds": None,
        "verdicts": [],
    }
    if keep_requests:
        document["requests"] = [record.as_json() for record in records]
    return RunResult(records, document)


@dataclass
class SweepResult:
    points: list[RunResult] = field(default_factory=list)
    stopped_because: str = ""


def sweep(base_url: str, model: str, workload: Workload, base: LoadSpec, concurrencies: Sequence[int], *,
          api_key: str | None = None, metrics_url: str | None = None, slo: Slo | None = None,
          saturation_gain: float = 0.05, max_error_rate: float = 0.05, gpu: str | None = None) -> SweepResult:
    """From one stream upwards: stop at the end of the list, when output throughput grows by less
    than `saturation_gain` from one point to the next (saturated), or when errors exceed the rate."""
    result = SweepResult()
    previous = None
    for concurrency in concurrencies:
        spec = LoadSpec(**{**asdict(base), "mode": "concurrency", "concurrency": concurrency})
        point = run_load(base_url, model, workload, spec, api_key=api_key, metrics_url=metrics_url, slo=slo, gpu=gpu)
        result.points.append(point)
        throughput = point.summary["output_throughput"]
        if point.summary["error_rate"] > max_error_rate:
            result.stopped_because = f"error rate {point.summary['error_rate']:.1%} at concurrency {concurrency}"
            break
        if previous is not None and throughput < previous * (1 + saturation_gain):
            result.stopped_because = f"saturated: concurrency {concurrency} adds less than {saturation_gain:.0%}"
            break
        previous = throughput
    else:
        result.stopped_because = "end of the concurrency list"
    return result


def alternate(paths: dict[str, tuple[str, str | None]], model: str, workload: Workload, pairs: int,
              warmup: int = 2, request_timeout: float = 300.0) -> dict[str, list[RequestRecord]]:
    """Send the same request to each path in turn, one at a time, the order flipped every round
    (A B, B A, ...), so that drift hits every path alike. Each copy starts with its own 4-digit
    nonce: an exact repeat would let the engine's prefix cache favour whichever path comes
    second, while the nonce keeps the work equal. For comparing paths (direct and through the
    proxy) by paired differences."""

    async def go() -> dict[str, list[RequestRecord]]:
        sessions = {name: new_session(1, key) for name, (_, key) in paths.items()}
        records: dict[str, list[RequestRecord]] = {name: [] for name in paths}
        specs = workload.stream()
        try:
            names = list(paths)
            nonces = random.Random(workload.seed)
            for round_index in range(warmup + pairs):
                base_spec = next(specs)
                for name in (names if round_index % 2 == 0 else names[::-1]):
                    base_url = paths[name][0]
                    spec = RequestSpec(prompt=f"#{nonces.randrange(1000, 10000)} {base_spec.prompt}",
                                       max_tokens=base_spec.max_tokens)
                    record = RequestRecord(time.perf_counter())
                    await send(sessions[name], f"{base_url.rstrip('/')}/{workload.path}",
                               workload.body(model, spec, True), record, request_timeout)
                    if round_index >= warmup:
                        records[name].append(record)
        finally:
            for session in sessions.values():
                await session.close()
        return records

    return asyncio.run(go())
