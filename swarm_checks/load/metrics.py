"""Summaries of a run, named as `vllm bench serve` names them.

request_throughput = completed / duration; output_throughput = sum(output tokens) / duration;
total_token_throughput adds input tokens; goodput = requests meeting every SLO / duration.
Distributions (ms): mean, median, std and the chosen percentiles (numpy's linear interpolation).
ITL is pooled over all requests; TPOT is per request: (E2EL - TTFT) / (output tokens - 1); for
goodput a one-token answer has TPOT 0 and meets any TPOT goal, as in vLLM's calculate_metrics.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from swarm_checks.load.client import RequestRecord

PERCENTILES = (50, 90, 95, 99)
# A rate or Poisson run keeps its schedule when the p99 of its sends' lag stays within
# max(SCHEDULE_TOLERANCE_S, SCHEDULE_TOLERANCE_GAPS x the mean gap between arrivals).
SCHEDULE_TOLERANCE_S = 0.050
SCHEDULE_TOLERANCE_GAPS = 0.10


@dataclass(frozen=True)
class Slo:
    """Per-request service level objectives for goodput, in milliseconds (None: not checked)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def met(self, record: RequestRecord) -> bool:
        if not record.success:
            return False
        tpot = record.tpot if record.output_tokens > 1 else 0.0  # one token: no decoding step to judge
        checks = ((self.ttft_ms, record.ttft), (self.tpot_ms, tpot), (self.e2el_ms, record.e2el))
        return all(limit is None or (value is not None and value * 1e3 <= limit) for limit, value in checks)


def distribution(values_s: Iterable[float], percentiles: Sequence[int] = PERCENTILES) -> dict[str, float]:
    values = np.asarray([v * 1e3 for v in values_s], dtype=float)
    if values.size == 0:
        return {"count": 0}
    summary = {"count": int(values.size), "mean": float(values.mean()), "median": float(np.median(values)),
               "std": float(values.std()), "min": float(values.min()), "max": float(values.max())}
    summary |= {f"p{p}": float(np.percentile(values, p)) for p in percentiles}
    return summary


def summarize(records: Sequence[RequestRecord], duration: float, slo: Slo | None = None,
              percentiles: Sequence[int] = PERCENTILES) -> dict[str, Any]:
    done = [r for r in records if r.success]
    failed = [r for r in records if not r.success and r.error_kind != "incomplete"]
    incomplete = [r for r in records if r.error_kind == "incomplete"]
    output = sum(r.output_tokens for r in done)
    inputs = sum(r.input_tokens for r in done)
    duration = max(duration, 1e-9)
    good = [r for r in done if (slo or Slo()).met(r)]
    chunks = sum(r.chunks for r in done)
    return {
        "completed": len(done), "failed": len(failed), "incomplete": len(incomplete),
        "error_rate": (len(records) - len(done)) / len(records) if records else 0.0,
        "error_kinds": dict(Counter(r.error_kind for r in records if r.error_kind)),
        "duration_s": duration,
        "request_throughput": len(done) / duration,
        "output_throughput": output / duration,
        "total_token_throughput": (output + inputs) / duration,
        "goodput": len(good) / duration if slo else None,
        "total_input_tokens": inputs, "total_output_tokens": output,
        "tokens_estimated": any(r.tokens_estimated for r in done),
        "tokens_per_chunk": output / chunks if chunks else None,
        "ttft_ms": distribution((r.ttft for r in done if r.ttft is not None), percentiles),
        "tpot_ms": distribution((r.tpot for r in done if r.tpot is not None), percentiles),
        "itl_ms": distribution((gap for r in done for gap in r.itl), percentiles),
        "e2el_ms": distribution((r.e2el for r in done), percentiles),
        "scheduling_lag_ms": distribution((r.lag for r in records), percentiles),
    }


def schedule(records: Sequence[RequestRecord], mode: str, rate: float | None, cap: int | None = None) -> dict[str, Any]:
    """Did the client send when its schedule said? A late client measures itself, not the server
    (asked 6 req/s, it sent 1.48 with one request in flight): `kept` False with the reason. Mode
    concurrency has no schedule (`kept` None)."""
    if mode == "concurrency" or not rate:
        return {"kept": None, "reason": "fixed concurrency: no arrival schedule"}
    tolerance = max(SCHEDULE_TOLERANCE_S, SCHEDULE_TOLERANCE_GAPS / rate)
    lags = np.asarray([r.lag for r in records], dtype=float)
    p99 = float(np.percentile(lags, 99)) if lags.size else 0.0
    starts = sorted(r.start for r in records if r.start)
    sent_rate = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0] else None
    unsent = sum(1 for r in records if not r.start)
    found: dict[str, Any] = {"kept": p99 <= tolerance, "lag_p99_ms": p99 * 1e3, "tolerance_ms": tolerance * 1e3,
                             "asked_rate": rate, "sent_rate": sent_rate, "never_sent": unsent, "cap": cap}
    if found["kept"]:
        found["reason"] = f"scheduling lag p99 {p99 * 1e3:.1f} ms within {tolerance * 1e3:.1f} ms"
    else:
        found["reason"] = (f"the client fell behind its schedule: scheduling lag p99 {p99 * 1e3:.1f} ms > "
                           f"{tolerance * 1e3:.1f} ms (asked {rate:g} req/s, sent "
                           + (f"{sent_rate:.2f} req/s" if sent_rate else "too few to tell")
                           + (f"; {unsent} never sent" if unsent else "")
                           + (f"; at most {cap} in flight (--concurrency)" if cap else "") + ")")
    return found
