"""The load and throughput engine: drive an OpenAI-compatible endpoint, measure it the way
`vllm bench serve` does, and write a versioned result document.

    from swarm_checks.load import LoadSpec, Workload, run_load
    result = run_load("http://127.0.0.1:8000/v1", "smollm2-135m", Workload(), LoadSpec(concurrency=4, max_requests=50))

Also a command line: `python -m swarm_checks.load --help`.
"""
from swarm_checks.load.runner import LoadSpec, RunResult, run_load, sweep
from swarm_checks.load.workload import Workload

__all__ = ["LoadSpec", "RunResult", "Workload", "run_load", "sweep"]
