"""GPU: the engine runs on the GPU and delivers what this hardware should. Without a GPU the tests
that need one skip with the reason (requires_gpu); those that ask what vLLM itself exposes run
against vLLM wherever it serves the primary slot, its CPU build included."""
from __future__ import annotations

import pytest

from swarm_checks.load import LoadSpec, Workload, roofline, server_metrics
from swarm_checks import Endpoint

WORKLOAD = Workload(input_words=128, output_tokens=128, ignore_eos=True, seed=3)


@pytest.mark.requires_gpu
def test_the_engine_sees_the_gpu(engine_hardware) -> None:
    """nvidia-smi on the engine's side names at least one GPU (the fixture fails or skips, saying why, otherwise)."""
    print(f"the engine's GPUs ({engine_hardware.gpus_from}): " + ", ".join(g.describe() for g in engine_hardware.gpus))
    assert all(gpu.name for gpu in engine_hardware.gpus)


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
    values = server_metrics.scrape(primary_llm.root_url + "/metrics")
    assert values is not None, f"{primary_llm.service} (engine {engine}) exposes no Prometheus /metrics"
    assert server_metrics.first(values, server_metrics.KV_CACHE), (
        f"{primary_llm.service} (engine {engine}) exposes none of {server_metrics.KV_CACHE}")


@pytest.mark.requires_gpu
def test_single_stream_decode_against_the_bandwidth_bound(primary_llm: Endpoint, swarm_load, engine_hardware) -> None:
    """Single-stream decode as a fraction of weight bytes / memory bandwidth, for the engine's own
    GPUs and dtype: above the bound means the model size or dtype is wrong, below the thresholds
    file's `min_roofline_fraction` means the engine is far slower than this hardware allows."""
    limit = roofline.bound_for(primary_llm.model or "", engine_hardware.dtype, engine_hardware.gpus,
                               engine_hardware.tensor_parallel_size)
    if not limit["available"]:
        pytest.skip(limit["reason"])
    entry = swarm_load.thresholds(primary_llm.model or "")
    result = swarm_load.run(primary_llm, WORKLOAD, LoadSpec(concurrency=1, max_requests=8, max_seconds=120), "roofline")
    tpot = result.summary["tpot_ms"].get("median")
    assert tpot, "no TPOT measured"
    fraction = roofline.fraction(1e3 / tpot, limit)
    result.document["roofline"] = {**limit, "measured_tokens_per_s": 1e3 / tpot, "fraction": fraction}
    swarm_load.judge(result, {})
    line = (f"single-stream decode: {1e3 / tpot:.0f} tokens/s = {fraction:.0%} of the {limit['max_tokens_per_s']:.0f} "
            f"tokens/s bandwidth bound ({limit['gpu']}, from {engine_hardware.gpus_from}; dtype {engine_hardware.dtype}, "
            f"{engine_hardware.dtype_from})")
    print(line)
    assert fraction <= 1.1, f"{line}: faster than the memory-bandwidth bound, so the model size or dtype is wrong"
    floor = entry.get("min_roofline_fraction")
    assert floor is not None, "the thresholds entry has no min_roofline_fraction: this test could not fail on a slow engine"
    assert fraction >= floor, f"{line}: below the floor of {floor:.0%} ({floor / fraction:.1f}x slower than it should be)"
