"""Thresholds keyed by hardware class and model (`cpu/smollm2-135m`, `h100/phi-3.5-mini`), read
from swarm_checks/data/thresholds.yaml (shipped with the package), and the verdicts of a run against them. `calibrate` writes a
baseline entry from a measured deployment (see `python -m swarm_checks.load calibrate --help`).

An entry:
    cpu/smollm2-135m:
      slo: {ttft_p99_ms: 3000, tpot_median_ms: 60, error_rate: 0.01}
      min_output_throughput: {1: 30, 4: 35}      # tokens/s at those concurrencies
      min_scaling: {4: 1.5}                       # throughput at 4 >= 1.5 x throughput at 1
      proxy: {max_ttft_added_ms: 5, max_itl_shrink_ms: 0.5}

`min_scaling` holds whatever the machine's speed: an engine that batches serves four streams
with more total throughput than one; an engine that queues them (one slot) does not. It is the
rule that survives a busy shared CI machine, where absolute figures swing by a factor of two.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from swarm_checks.datafiles import THRESHOLDS as DEFAULT_FILE


def load(path: Path = DEFAULT_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text()) or {}
    if document.get("version") != 1 or not isinstance(document.get("entries"), dict):
        raise ValueError(f"{path}: expected `version: 1` and an `entries:` mapping")
    return document


def entry(key: str, path: Path = DEFAULT_FILE) -> dict[str, Any] | None:
    return load(path)["entries"].get(key)


def verdicts(summary: dict[str, Any], concurrency: int, thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """One verdict per threshold that applies: name, limit, measured value, passed."""
    found: list[dict[str, Any]] = []
    slo = thresholds.get("slo", {})

    def add(name: str, measured: float | None, limit: float, higher_is_better: bool) -> None:
        passed = measured is not None and (measured >= limit if higher_is_better else measured <= limit)
        found.append({"name": name, "limit": limit, "measured": measured, "passed": passed,
                      "rule": ">=" if higher_is_better else "<="})

    if "ttft_p99_ms" in slo:
        add("ttft_p99_ms", summary["ttft_ms"].get("p99"), slo["ttft_p99_ms"], False)
    if "tpot_median_ms" in slo:
        add("tpot_median_ms", summary["tpot_ms"].get("median"), slo["tpot_median_ms"], False)
    if "error_rate" in slo:
        add("error_rate", summary["error_rate"], slo["error_rate"], False)
    minimum = (thresholds.get("min_output_throughput") or {}).get(concurrency)
    if minimum is not None:
        add(f"output_throughput_at_{concurrency}", summary["output_throughput"], minimum, True)
    return found


def scaling_verdicts(throughput_by_concurrency: dict[int, float], thresholds: dict[str, Any]) -> list[dict[str, Any]]:
    """`min_scaling`: output throughput at concurrency c over that at 1, measured in the same run."""
    found: list[dict[str, Any]] = []
    single = throughput_by_concurrency.get(1)
    for concurrency, minimum in sorted((thresholds.get("min_scaling") or {}).items()):
        measured = throughput_by_concurrency.get(int(concurrency))
        if measured is None or not single:
            continue
        ratio = measured / single
        found.append({"name": f"throughput_scaling_{concurrency}_over_1", "limit": minimum, "measured": round(ratio, 2),
                      "passed": ratio >= minimum, "rule": ">="})
    return found


def calibrate(key: str, measured: dict[int, dict[str, Any]], path: Path = DEFAULT_FILE, margin: float = 0.5) -> dict[str, Any]:
    """A baseline entry from measured summaries per concurrency: SLOs at (1 + margin) times what
    was measured, minimum throughput at (1 - margin) times it; written into `path`."""
    worst_ttft = max(s["ttft_ms"].get("p99", 0.0) for s in measured.values())
    worst_tpot = max(s["tpot_ms"].get("median", 0.0) for s in measured.values())
    new = {
        "slo": {"ttft_p99_ms": round(worst_ttft * (1 + margin), 1), "tpot_median_ms": round(worst_tpot * (1 + margin), 2),
                "error_rate": 0.01},
        "min_output_throughput": {c: round(s["output_throughput"] * (1 - margin), 1) for c, s in sorted(measured.items())},
    }
    document = load(path) if path.exists() else {"version": 1, "entries": {}}
    old = document["entries"].get(key) or {}
    if "proxy" in old:
        new["proxy"] = old["proxy"]
    document["entries"][key] = new
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return new
