"""The scaling rule: output throughput at concurrency c against that at 1, in the same run."""
from __future__ import annotations

from swarm_checks.load import thresholds

ENTRY = {"min_scaling": {4: 1.5}}


def test_a_batching_engine_passes_and_a_queueing_one_fails() -> None:
    batching = thresholds.scaling_verdicts({1: 24.6, 2: 40.9, 4: 82.4}, ENTRY)
    queueing = thresholds.scaling_verdicts({1: 32.0, 2: 32.5, 4: 31.8}, ENTRY)
    assert [(v["name"], v["measured"], v["passed"]) for v in batching] == [("throughput_scaling_4_over_1", 3.35, True)]
    assert [(v["measured"], v["passed"]) for v in queueing] == [(0.99, False)]


def test_nothing_to_judge_without_both_points() -> None:
    assert thresholds.scaling_verdicts({4: 80.0}, ENTRY) == []
    assert thresholds.scaling_verdicts({1: 0.0, 4: 80.0}, ENTRY) == []
    assert thresholds.scaling_verdicts({1: 20.0, 4: 80.0}, {}) == []


def test_the_cpu_entry_asks_for_batching() -> None:
    assert (thresholds.entry("cpu/smollm2-135m") or {}).get("min_scaling", {}).get(4, 0) >= 1.5
