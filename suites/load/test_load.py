"""Load: sustained, bounded load on the primary LLM, direct and through the proxy, judged against
swarm_checks/data/thresholds.yaml (keyed by hardware class and model). Each test's report entry carries
its summary tables, charts and JSON files."""
from __future__ import annotations

import contextlib
import statistics
import threading
import time
import warnings
from typing import Callable, Iterator

import pytest

from swarm_checks import Endpoint
from swarm_checks.load import LoadSpec, Slo, Workload, alternate, thresholds

SHORT = Workload(input_words=8, output_tokens=32, seed=1)


def _failed(verdicts: list[dict]) -> list[str]:
    return [f"{v['name']}: measured {v['measured']} (must be {v['rule']} {v['limit']})" for v in verdicts if not v["passed"]]


def test_sustained_load_meets_the_slos(primary_llm: Endpoint, swarm_load) -> None:
    """Concurrency 1, 2 and 4, each bounded in requests and seconds; every threshold that applies
    holds, the scaling from one stream to four (a batching engine's mark) included."""
    entry = swarm_load.thresholds(primary_llm.model or "")
    slo = entry.get("slo", {})
    failed: list[str] = []
    throughput: dict[int, float] = {}
    for concurrency in (1, 2, 4):
        result = swarm_load.run(primary_llm, Workload(input_words=48, output_tokens=48, seed=2),
                                LoadSpec(concurrency=concurrency, max_requests=4 * concurrency + 4, max_seconds=90),
                                f"direct-c{concurrency}",
                                slo=Slo(ttft_ms=slo.get("ttft_p99_ms"), tpot_ms=slo.get("tpot_median_ms")))
        assert result.summary["completed"] >= 1, f"no request completed: {result.summary['error_kinds']}"
        failed += [f"c{concurrency} {line}" for line in _failed(swarm_load.judge(result, entry))]
        throughput[concurrency] = result.summary["output_throughput"]
    scaling = thresholds.scaling_verdicts(throughput, entry)
    print("output tokens/s by concurrency: " + ", ".join(f"{c}: {t:.1f}" for c, t in throughput.items())
          + "".join(f"; {v['name']} = {v['measured']} (must be >= {v['limit']})" for v in scaling))
    failed += _failed(scaling)
    assert not failed, "; ".join(failed)


def test_poisson_arrivals_are_served_without_client_lag(primary_llm: Endpoint, swarm_load) -> None:
    """No cap on requests in flight: every request leaves when the schedule says, however slowly
    the engine answers, so a late send would mean the measurement, not the server, is slow.
    Judged is the lag beyond the client's own ceiling in the same run: a send scheduled while
    the client's event loop was stalled (its process starved by other work on the host: stalls
    of 150-300 ms were seen with one core kept busy) cannot leave before the loop runs again; a
    client that holds sends back lags by whole answers (seconds) outside any stall."""
    result = swarm_load.run(primary_llm, SHORT, LoadSpec(mode="poisson", rate=1.5, burstiness=1.0,
                                                         max_requests=16, max_seconds=60), "poisson-1.5rps")
    summary = result.summary
    lag, excess = summary["scheduling_lag_ms"]["median"], summary["excess_lag_ms"]["median"]
    print(f"{summary['schedule']['reason']}; send lag median {lag:.1f} ms, of which {excess:.1f} ms beyond the "
          f"client's own event-loop stalls (p90 stall {summary['client_loop_lag_ms'].get('p90', 0.0):.1f} ms)")
    assert summary["error_rate"] == 0, summary["error_kinds"]
    assert excess < EXCESS_LAG_MS, (f"sends left {excess:.1f} ms later than the client's event loop allowed (median; "
                                    f"at most {EXCESS_LAG_MS} ms): {summary['schedule']['reason']}")


EXCESS_LAG_MS = 50.0


def test_proxy_adds_little_latency_and_does_not_buffer(primary_llm: Endpoint,
                                                       endpoint_of_kind: Callable[[str], Endpoint], swarm_load) -> None:
    """The same requests alternately direct and through the proxy, compared by paired differences:
    many short answers for TTFT (the noise of one TTFT is several ms on a busy CPU host), fewer
    long ones for the gaps between chunks."""
    proxy = endpoint_of_kind("proxy")
    limits = swarm_load.thresholds(primary_llm.model or "").get("proxy") or {"max_ttft_added_ms": 5, "max_itl_shrink_ms": 0.5}
    paths = {"direct": (primary_llm.openai_base_url, primary_llm.api_key), "proxy": (proxy.openai_base_url, proxy.api_key)}
    model = primary_llm.model or ""
    first = alternate(paths, model, Workload(input_words=8, output_tokens=2, seed=5), pairs=96)
    with wake_up_delays() as delays:
        gaps = alternate(paths, model, Workload(input_words=8, output_tokens=48, seed=6), pairs=12)
    starved_ms = statistics.quantiles(delays, n=20)[-1] * 1e3 if len(delays) > 20 else 0.0  # p95
    for label, runs in (("ttft", first), ("gaps", gaps)):
        for name, path_records in runs.items():
            failures = [r.error_kind for r in path_records if not r.success]
            assert not failures, f"{name}: {failures}"
            swarm_load.record(f"{name}-{label}", path_records, {"mode": "alternating", "concurrency": 1,
                                                               "pairs": len(path_records)})
    added = statistics.median(p.ttft - d.ttft for d, p in zip(first["direct"], first["proxy"])) * 1e3
    # On long answers too: a proxy that holds back chunks delays the first one by their generation
    # time (about 35 ms a token on the CPU engine), which no scheduling noise comes near.
    added_long = statistics.median(p.ttft - d.ttft for d, p in zip(gaps["direct"], gaps["proxy"])) * 1e3
    itl_direct = statistics.median(gap for r in gaps["direct"] for gap in r.itl) * 1e3
    itl_proxy = statistics.median(gap for r in gaps["proxy"] for gap in r.itl) * 1e3
    print(f"proxy: TTFT +{added:.2f} ms (median of {len(first['direct'])} paired differences); "
          f"ITL median {itl_direct:.2f} ms direct, {itl_proxy:.2f} ms through the proxy")
    assert added <= limits["max_ttft_added_ms"], f"the proxy adds {added:.2f} ms to TTFT (median of paired differences)"
    assert added_long <= limits["max_ttft_added_ms"], (
        f"the proxy adds {added_long:.2f} ms to the first chunk of 48-token answers: it holds the stream back")
    # Buffering collapses the median gap towards zero; scheduling noise moves it by a few per cent.
    # Except on a starved host: when other work holds the cores, the proxy's process runs late
    # and forwards what piled up at once, exactly as a buffering proxy would. The test's own
    # 10 ms sleeps measure that in the same run; past STARVED_MS the gaps cannot tell the two apart.
    allowed = max(limits["max_itl_shrink_ms"], limits.get("max_itl_shrink_fraction", 0.0) * itl_direct)
    print(f"this host woke the test's 10 ms sleeps {starved_ms:.2f} ms late (p95) during the long answers")
    if starved_ms > STARVED_MS:
        warnings.warn(f"inter-chunk gaps not judged: the host delayed 10 ms sleeps by {starved_ms:.1f} ms (p95, "
                      f"more than {STARVED_MS} ms) while they were measured; other work holds the cores", stacklevel=1)
        return
    assert itl_direct - itl_proxy <= allowed, (
        f"inter-chunk gaps are {itl_direct - itl_proxy:.2f} ms shorter through the proxy (at most {allowed:.2f} ms "
        f"allowed): it buffers the stream")


STARVED_MS = 20.0  # p95 of 10 ms sleeps: about 1 ms on a quiet host, 100+ when starved


@contextlib.contextmanager
def wake_up_delays(tick: float = 0.01) -> Iterator[list[float]]:
    """How late a thread of this process wakes from `tick`-second sleeps while the block runs: on
    an idle host about 0.1 ms (p95 about 1 ms); when other processes hold the cores, stalls of
    100 ms and more."""
    delays: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            asked = time.perf_counter()
            time.sleep(tick)
            delays.append(max(0.0, time.perf_counter() - asked - tick))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield delays
    finally:
        stop.set()
        watcher.join(timeout=5)


def test_server_counted_what_usage_reported(primary_llm: Endpoint, swarm_load) -> None:
    result = swarm_load.run(primary_llm, SHORT, LoadSpec(concurrency=2, max_requests=6, max_seconds=60), "server-metrics")
    server = result.document["server_metrics"]
    if not server.get("available"):
        pytest.skip(f"{primary_llm.service} ({primary_llm.extra.get('engine', '?')}): {server.get('reason')}; "
                    "vLLM exposes one at /metrics")
    assert "generated_tokens_counter" in server, f"no generated-token counter among {sorted(server['deltas'])}"
    assert server["generated_matches_usage"], (
        f"{server['generated_tokens_counter']} grew by {server['generated_tokens_delta']}, usage says {server['usage_output_tokens']}")
