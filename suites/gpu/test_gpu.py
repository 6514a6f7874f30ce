"""GPU: the engine runs on the GPU and delivers what this hardware should. Without a GPU the tests
that need one skip with the reason (requires_gpu); those that ask what vLLM itself exposes run
against vLLM wherever it serves the primary slot, its CPU build included."""
from __future__ import annotations

import pytest

from swarm_checks.load import LoadSpec, Workload, roofline
from swarm_checks.load import server_metrics
from swarm_checks.probes import root_url
from swarm_checks.targets.base import Endpoint, Target

WORKLOAD = Workload(input_words=128, output_tokens=128, ignore_eos=True, seed=3)


@pytest.mark.requires_gpu
def test_the_engine_sees_the_gpu(primary_llm: Endpoint, swarm_target: Target) -> None:
    result = swarm_target.exec(primary_llm.service, ["nvidia-smi", "-L"])
    assert result.exit_code == 0 and "GPU" in result.output, f"nvidia-smi inside {primary_llm.service}: {result.output}"


@pytest.mark.requires_gpu
@pytest.mark.parametrize("concurrency", [1, 8, 32])
def test_throughput_and_latency_meet_the_thresholds(primary_llm: Endpoint, swarm_load, concurrency: int) -> None:
    entry = swarm_load.thresholds(primary_llm.model or "")
    result = swarm_load.run(primary_llm, WORKLOAD, LoadSpec(concurrency=concurrency, max_requests=4 * concurrency + 8,
                                                            max_seconds=180, warmup_requests=2), f"c{concurrency}")
    failed = [f"{v['name']}: {v['measured']} (must be {v['rule']} {v['limit']})" for v in swarm_load.judge(result, entry)
              if not v["passed"]]
    assert not failed, "; ".join(failed)


def test_the_kv_cache_usage_metric_is_exposed(primary_llm: Endpoint) -> None:
    """vLLM's KV-cache gauge, which capacity planning reads (the GPU and the CPU build both export it)."""
    engine = primary_llm.extra.get("engine", "unknown")
    values = server_metrics.scrape(root_url(primary_llm) + "/metrics")
    assert values is not None, f"{primary_llm.service} (engine {engine}) exposes no Prometheus /metrics"
    assert server_metrics.first(values, server_metrics.KV_CACHE), (
        f"{primary_llm.service} (engine {engine}) exposes none of {server_metrics.KV_CACHE}")


@pytest.mark.requires_gpu
def test_single_stream_decode_against_the_bandwidth_bound(primary_llm: Endpoint, swarm_load) -> None:
    result = swarm_load.run(primary_llm, WORKLOAD, LoadSpec(concurrency=1, max_requests=8, max_seconds=120), "roofline")
    tpot = result.summary["tpot_ms"].get("median")
    assert tpot, "no TPOT measured"
    limit = roofline.bound(primary_llm.model or "", "bfloat16", roofline.gpu_name())
    if not limit["available"]:
        pytest.skip(limit["reason"])
    fraction = roofline.fraction(1e3 / tpot, limit)
    result.document["roofline"] = {**limit, "measured_tokens_per_s": 1e3 / tpot, "fraction": fraction}
    swarm_load.judge(result, {})
    print(f"single-stream decode: {1e3 / tpot:.0f} tokens/s = {fraction:.0%} of the {limit['max_tokens_per_s']:.0f} "
          f"tokens/s bandwidth bound ({limit['gpu']})")
    assert 0 < fraction <= 1.1, "faster than the memory-bandwidth bound: the model size or dtype is wrong"
