"""Load: sustained, bounded load on the primary LLM, direct and through the proxy, judged against
fixtures/thresholds.yaml (keyed by hardware class and model). Each test's report entry carries
its summary tables, charts and JSON files."""
from __future__ import annotations

from typing import Callable

import pytest

from swarm_checks.load import LoadSpec, Workload
from swarm_checks.load.metrics import Slo
from swarm_checks.targets.base import Endpoint

SHORT = Workload(input_words=8, output_tokens=32, seed=1)


def _failed(verdicts: list[dict]) -> list[str]:
    return [f"{v['name']}: measured {v['measured']} (must be {v['rule']} {v['limit']})" for v in verdicts if not v["passed"]]


def test_sustained_load_meets_the_slos(primary_llm: Endpoint, swarm_load) -> None:
    """Concurrency 1, 2 and 4, each bounded in requests and seconds; every threshold that applies holds."""
    entry = swarm_load.thresholds(primary_llm.model or "")
    slo = entry.get("slo", {})
    failed: list[str] = []
    for concurrency in (1, 2, 4):
        result = swarm_load.run(primary_llm, Workload(input_words=48, output_tokens=48, seed=2),
                                LoadSpec(concurrency=concurrency, max_requests=4 * concurrency + 4, max_seconds=90),
                                f"direct-c{concurrency}",
                                slo=Slo(ttft_ms=slo.get("ttft_p99_ms"), tpot_ms=slo.get("tpot_median_ms")))
        assert result.summary["completed"] >= 1, f"no request completed: {result.summary['error_kinds']}"
        failed += [f"c{concurrency} {line}" for line in _failed(swarm_load.judge(result, entry))]
    assert not failed, "; ".join(failed)


def test_poisson_arrivals_are_served_without_client_lag(primary_llm: Endpoint, swarm_load) -> None:
    result = swarm_load.run(primary_llm, SHORT, LoadSpec(mode="poisson", rate=2.0, burstiness=1.0, concurrency=8,
                                                         max_requests=16, max_seconds=60), "poisson-2rps")
    summary = result.summary
    assert summary["error_rate"] == 0, summary["error_kinds"]
    # The client keeps its schedule: a late send would mean the measurement, not the server, is slow.
    assert summary["scheduling_lag_ms"]["p99"] < 50, summary["scheduling_lag_ms"]


def test_proxy_adds_little_latency_and_does_not_buffer(primary_llm: Endpoint,
                                                       endpoint_of_kind: Callable[[str], Endpoint], swarm_load) -> None:
    proxy = endpoint_of_kind("proxy")
    proxy = Endpoint(**{**proxy.__dict__, "model": primary_llm.model})
    limits = swarm_load.thresholds(primary_llm.model or "").get("proxy") or {"max_ttft_added_ms": 5, "max_itl_shrink_ms": 0.5}
    spec = LoadSpec(concurrency=1, max_requests=8, max_seconds=60, warmup_requests=1)
    ttft = {"direct": [], "proxy": []}
    itl = {"direct": [], "proxy": []}
    for block in range(3):  # ABABAB: drift hits both paths alike
        for name, endpoint in (("direct", primary_llm), ("proxy", proxy)):
            run = swarm_load.run(endpoint, SHORT, spec, f"{name}-{block}", with_server_metrics=False)
            assert run.summary["error_rate"] == 0, f"{name}: {run.summary['error_kinds']}"
            ttft[name] += [r.ttft for r in run.records if r.ttft is not None]
            itl[name] += [gap for r in run.records for gap in r.itl]
    median = lambda values: sorted(values)[len(values) // 2] * 1e3  # noqa: E731
    added = median(ttft["proxy"]) - median(ttft["direct"])
    shrink = median(itl["direct"]) - median(itl["proxy"])
    assert added <= limits["max_ttft_added_ms"], f"the proxy adds {added:.2f} ms to the median TTFT"
    assert shrink <= limits["max_itl_shrink_ms"], (
        f"inter-chunk gaps are {shrink:.2f} ms shorter through the proxy: it buffers the stream")


def test_server_counted_what_usage_reported(primary_llm: Endpoint, swarm_load) -> None:
    result = swarm_load.run(primary_llm, SHORT, LoadSpec(concurrency=2, max_requests=6, max_seconds=60), "server-metrics")
    server = result.document["server_metrics"]
    if not server.get("available"):
        pytest.skip(f"{primary_llm.service} ({primary_llm.extra.get('engine', '?')}): {server.get('reason')}; "
                    "vLLM and llama.cpp's own server expose one")
    assert "generated_tokens_counter" in server, f"no generated-token counter among {sorted(server['deltas'])}"
    assert server["generated_matches_usage"], (
        f"{server['generated_tokens_counter']} grew by {server['generated_tokens_delta']}, usage says {server['usage_output_tokens']}")
