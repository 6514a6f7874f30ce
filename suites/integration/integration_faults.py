"""Flow 4's machinery: a bounded load through the proxy while a fault is injected, and the
time to detect and to recover, measured rather than assumed.

The load is `swarm_checks.load.run_load` run in short bounded rounds on a thread (rate 1/s,
at most 3 in flight, 10 output tokens), so it can stop once recovery is seen; every request's
record is kept. What the records must show during an outage: each request ended (none hung
past its timeout), none was a 500, and every error is in OpenAI's shape
(`{"error": {"message", "type", ...}}`) with a 5xx the proxy means (502, 503, 504).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import httpx

from swarm_checks import Endpoint
from swarm_checks.load import LoadSpec, Workload, run_load

from integration_proxy import cacheable_body, post_chat
from integration_stack import metric

REQUEST_TIMEOUT = 60.0
ROUND = LoadSpec(mode="rate", rate=1.0, concurrency=3, max_requests=4, max_seconds=4.0, warmup_requests=0,
                 drain_seconds=REQUEST_TIMEOUT, request_timeout=REQUEST_TIMEOUT)
WORKLOAD = Workload(input_words=12, output_tokens=10, temperature=0.0)
ALLOWED_ERRORS = {"http_502", "http_503", "http_504"}
DETECT_LIMIT = 60.0
OUTAGE_HOLD = 4.0  # seconds the service stays down after the outage is seen, so requests meet it


class BackgroundLoad:
    """Bounded load rounds through an OpenAI-compatible base URL until `stop()` (or `limit` s)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, limit: float = 420.0) -> None:
        self.base_url, self.model, self.api_key, self.limit = base_url, model, api_key, limit
        self.records: list[Any] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="swarm-integration-load", daemon=True)

    def __enter__(self) -> "BackgroundLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        deadline = time.perf_counter() + self.limit
        while not self._stop.is_set() and time.perf_counter() < deadline:
            try:
                result = run_load(self.base_url, self.model, WORKLOAD, ROUND, api_key=self.api_key)
                self.records.extend(result.records)
            except Exception as error:  # noqa: BLE001 - the test reports it; the loop goes on
                self.errors.append(f"{type(error).__name__}: {error}")
                time.sleep(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=REQUEST_TIMEOUT + 30)

    def between(self, start: float, end: float) -> list[Any]:
        """Records of requests sent in [start, end] (perf_counter seconds)."""
        return [r for r in self.records if r.start and start <= r.start <= end]


def openai_error_shape(text: str | None) -> bool:
    """Whether an error body is OpenAI's: {"error": {"message": str, "type": str, ...}}. The load
    engine keeps the first 300 characters of a failed answer, so a cut body is judged by its start."""
    if not text:
        return False
    try:
        error = json.loads(text).get("error")
        return isinstance(error, dict) and isinstance(error.get("message"), str) and "type" in error
    except ValueError:
        return text.startswith('{"error":{"message":') or text.startswith('{"error": {"message":')


def _error_object(text: str | None) -> bool:
    """An error event's object as the load engine keeps it: {"message": ..., "type": ...}."""
    try:
        error = json.loads(text or "")
    except ValueError:
        return bool(text) and '"message"' in text and '"type"' in text
    return isinstance(error, dict) and isinstance(error.get("message"), str) and "type" in error


def outage_problems(records: list[Any]) -> list[str]:
    """What is wrong with the answers given during an outage (empty: nothing)."""
    problems = []
    for record in records:
        kind = record.error_kind
        if record.success or kind is None or (kind == "incomplete" and record.cancelled):
            continue
        if kind == "timeout":
            problems.append(f"a request hung: no answer within {REQUEST_TIMEOUT:g} s")
        elif kind == "http_500":
            problems.append(f"HTTP 500: {str(record.error)[:160]}")
        elif kind in ALLOWED_ERRORS:
            if not openai_error_shape(record.error):
                problems.append(f"{kind} not in OpenAI's error shape: {str(record.error)[:160]}")
        elif kind == "stream_error":  # a stream the outage cut: the proxy must say so in OpenAI's shape
            if not _error_object(record.error):
                problems.append(f"a cut stream without an OpenAI-shaped error event: {str(record.error)[:160]}")
        elif kind.startswith("http_") and kind[5:].isdigit() and int(kind[5:]) < 500:
            problems.append(f"{kind} during the outage: {str(record.error)[:160]}")
        else:
            problems.append(f"{kind}: {str(record.error)[:160]}")
    return problems


@dataclass
class FaultRecord:
    """One fault and what the stack did: the row of README's faults table."""

    flow: str
    service: str
    action: str
    detected_by: str
    detect_s: float | None = None
    recover_s: float | None = None
    detect_limit_s: float = 0.0
    recover_limit_s: float = 0.0
    requests: int = 0
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def count(self, records: list[Any]) -> None:
        self.requests = len(records)
        self.answered = sum(1 for r in records if r.success)
        errors: dict[str, int] = {}
        for record in records:
            if not record.success and record.error_kind:
                errors[record.error_kind] = errors.get(record.error_kind, 0) + 1
        self.errors = errors


def timed(check: Callable[[], bool], limit: float, what: str, interval: float = 0.5) -> float:
    """Seconds until `check()` holds (exceptions count as "not yet"); AssertionError after `limit`."""
    started = time.perf_counter()
    last = ""
    while True:
        try:
            if check():
                return time.perf_counter() - started
        except Exception as error:  # noqa: BLE001 - retried until the limit
            last = f" (last: {type(error).__name__}: {str(error)[:160]})"
        if time.perf_counter() - started > limit:
            raise AssertionError(f"{what}: not within {limit:g} s{last}")
        time.sleep(interval)


@dataclass
class Outage:
    """How one fault is caused, seen, ended and judged recovered."""

    service: str
    action: str
    detected_by: str
    cause: Callable[[], None]
    detected: Callable[[], bool]
    end: Callable[[], None]
    recovered: Callable[[], bool]
    recover_limit: float
    self_healing: bool = False
    proxy_serves: bool = True  # the proxy still answers 200 during this outage


def ready_problems(proxy: Endpoint) -> list[str]:
    answer = httpx.get(proxy.root_url + "/ready", timeout=10)
    return [] if answer.status_code == 200 else list(answer.json().get("problems", ["(no problems listed)"]))


def back_on_redis(proxy: Endpoint, model: str) -> bool:
    """The proxy uses Redis again: /ready passes, a cacheable request goes through the cache
    (x-cache present) and neither limits nor cache report being degraded."""
    if ready_problems(proxy):
        return False
    cacheable = post_chat(proxy.openai_base_url, proxy.api_key, cacheable_body(model, uuid.uuid4().hex), timeout=30)
    degraded = metric(httpx.get(proxy.root_url + "/metrics", timeout=10).text, "proxy_redis_degraded")
    return cacheable.status_code == 200 and cacheable.headers.get("x-cache") is not None and degraded == 0


def answers(proxy: Endpoint, model: str) -> bool:
    return post_chat(proxy.openai_base_url, proxy.api_key, {"model": model, "max_tokens": 4,
                     "messages": [{"role": "user", "content": "Say ok."}]}, timeout=30).status_code == 200


def observe(outage: Outage, proxy: Endpoint, model: str, record: Callable[[FaultRecord], None],
            detect_limit: float = DETECT_LIMIT) -> FaultRecord:
    """Run the load, cause the outage, time its detection and the recovery, judge the answers."""
    row = FaultRecord("4 recovery", outage.service, outage.action, outage.detected_by, detect_limit_s=detect_limit,
                      recover_limit_s=outage.recover_limit)
    fault_at = recovered_at = 0.0
    load = BackgroundLoad(proxy.openai_base_url, model, proxy.api_key)
    try:
        with load:
            time.sleep(3.0)
            fault_at = time.perf_counter()
            outage.cause()
            row.detect_s = round(timed(outage.detected, detect_limit, f"{outage.service} {outage.action}: the outage to "
                                       f"show ({outage.detected_by})"), 1)
            if not outage.self_healing:
                time.sleep(OUTAGE_HOLD)
                outage.end()
            since = fault_at if outage.self_healing else time.perf_counter()
            timed(outage.recovered, outage.recover_limit, f"{outage.service}: the stack to recover")
            recovered_at = time.perf_counter()
            row.recover_s = round(recovered_at - since, 1)
            timed(lambda: sum(r.success for r in load.between(recovered_at, time.perf_counter())) >= 2, 60,
                  "two answered requests of the load after the recovery")
    finally:
        during = load.between(fault_at, recovered_at or time.perf_counter()) if fault_at else []
        row.count(during)
        row.note = f"load: {row.answered}/{row.requests} answered during the outage"
        record(row)
    problems = outage_problems(during) + load.errors
    assert not problems, f"{outage.service} {outage.action}: the proxy's answers during the outage: " + "; ".join(problems[:5])
    if outage.proxy_serves:
        assert row.answered == row.requests, (f"{outage.service} {outage.action}: the proxy should keep answering, yet "
                                              f"{row.requests - row.answered} of {row.requests} requests failed: {row.errors}")
    return row
