"""The server's side of a run: the change of its Prometheus counters between two scrapes.

vLLM's names (vllm:generation_tokens_total, vllm:prompt_tokens_total, vllm:kv_cache_usage_perc
or gpu_cache_usage_perc); llama.cpp's server where they differ (llamacpp:tokens_predicted_total,
llamacpp:prompt_tokens_total). An endpoint without /metrics (llama-cpp-python's server) gives
no server side; the result says so.
"""
from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

GENERATED = ("vllm:generation_tokens_total", "llamacpp:tokens_predicted_total")
PROMPT = ("vllm:prompt_tokens_total", "llamacpp:prompt_tokens_total")
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def scrape(metrics_url: str, headers: dict[str, str] | None = None) -> dict[str, float] | None:
    """name -> value (summed over label sets); None when the endpoint has no Prometheus /metrics."""
    try:
        response = httpx.get(metrics_url, headers=headers, timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or "# TYPE" not in response.text:
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


def first(values: dict[str, float], names: tuple[str, ...]) -> tuple[str, float] | None:
    for name in names:
        if name in values:
            return name, values[name]
    return None


def delta(before: dict[str, float] | None, after: dict[str, float] | None, usage_output_tokens: int) -> dict[str, Any]:
    """Counter changes over the run, and the check that the engine generated what usage reported."""
    if before is None or after is None:
        return {"available": False, "reason": "the endpoint exposes no Prometheus /metrics"}
    changes = {name: after[name] - before.get(name, 0.0) for name in after
               if name.endswith(("_total", "_count", "_sum")) and after[name] != before.get(name, 0.0)}
    result: dict[str, Any] = {"available": True, "deltas": changes}
    generated = first(after, GENERATED)
    if generated:
        name, _ = generated
        result["generated_tokens_counter"] = name
        result["generated_tokens_delta"] = changes.get(name, 0.0)
        result["usage_output_tokens"] = usage_output_tokens
        result["generated_matches_usage"] = abs(changes.get(name, 0.0) - usage_output_tokens) <= max(1, 0.01 * usage_output_tokens)
    kv = first(after, KV_CACHE)
    if kv:
        result["kv_cache_metric"], result["kv_cache_usage"] = kv
    return result
