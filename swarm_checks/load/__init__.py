"""The load and throughput engine: drive an OpenAI-compatible endpoint, measure it the way
`vllm bench serve` does, and write a versioned result document.

    from swarm_checks.load import LoadSpec, Workload, run_load
    result = run_load("http://127.0.0.1:8000/v1", "smollm2-135m", Workload(), LoadSpec(concurrency=4, max_requests=50))

Also a command line: `python -m swarm_checks.load --help`. This module is the engine's public
API; it imports nothing of pytest (the pytest glue is `swarm_checks.load_recording`).
"""
from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562): `swarm_checks.load.roofline` (stdlib only) is what the compose
# target asks for GPU detection, and must not pull in aiohttp, numpy and prometheus_client,
# which only the `load` extra installs.
_NAMES = {
    "LoadSpec": "runner", "RunResult": "runner", "alternate": "runner", "run_load": "runner", "sweep": "runner",
    "Slo": "metrics", "Workload": "workload",
}
_MODULES = ("roofline", "server_metrics", "thresholds")

__all__ = ["LoadSpec", "RunResult", "Slo", "Workload", "alternate", "roofline", "run_load", "server_metrics", "sweep",
           "thresholds"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"swarm_checks.load.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"swarm_checks.load.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'swarm_checks.load' has no attribute {name!r}")
