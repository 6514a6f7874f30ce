"""The load and throughput engine: drive an OpenAI-compatible endpoint, measure it the way
`vllm bench serve` does, and write a versioned result document.

    from swarm_checks.load import LoadSpec, Workload, run_load
    result = run_load("http://127.0.0.1:8000/v1", "smollm2-135m", Workload(), LoadSpec(concurrency=4, max_requests=50))

Also a command line: `python -m swarm_checks.load --help`. This module is the engine's public
API; it imports nothing of pytest (the pytest glue is `swarm_checks.load_recording`).
"""
from swarm_checks.load import roofline, server_metrics, thresholds
from swarm_checks.load.metrics import Slo
from swarm_checks.load.runner import LoadSpec, RunResult, alternate, run_load, sweep
from swarm_checks.load.workload import Workload

__all__ = ["LoadSpec", "RunResult", "Slo", "Workload", "alternate", "roofline", "run_load", "server_metrics", "sweep",
           "thresholds"]
