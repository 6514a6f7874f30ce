"""Benchmark (not a test): is the load engine ever the bottleneck, and how exact are its figures?

    .venv/bin/python benchmarks/load_engine.py [--seconds 10] [--guidellm PATH]

1. Capacity: requests and streamed chunks per second the engine sustains against a local
   endpoint that answers at once (benchmarks/fast_upstream.py, 16 chunks per answer), at fixed
   concurrency for a bounded time; in the same run GuideLLM (`guidellm run`, profile concurrent,
   same endpoint, same concurrency and duration) for comparison.
2. Accuracy: against the same endpoint injecting a known delay before the first chunk (100 ms)
   and between chunks (20 ms), the error of the measured TTFT and ITL.

GuideLLM lives in its own virtual environment (its dependencies are not the project's):
    python3 -m venv /tmp/guidellm-venv && /tmp/guidellm-venv/bin/pip install guidellm==0.8.1
Without it, the comparison column says so. Everything runs on 127.0.0.1 and is stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm_checks.load import LoadSpec, Workload, run_load  # noqa: E402
from tests.docker_helpers import wait_http  # noqa: E402

CHUNKS = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream(ttft_ms: float = 0, itl_ms: float = 0) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_upstream.py"), str(port), str(CHUNKS),
                                str(ttft_ms), str(itl_ms)])
    wait_http(f"http://127.0.0.1:{port}/v1/models", 30)
    return process, f"http://127.0.0.1:{port}"


def ours(base: str, concurrency: int, seconds: float) -> dict[str, float]:
    result = run_load(f"{base}/v1", "fast", Workload(input_words=8, output_tokens=CHUNKS),
                      LoadSpec(concurrency=concurrency, max_requests=10_000_000, max_seconds=seconds, warmup_requests=4,
                               drain_seconds=5))
    s = result.summary
    chunks = sum(r.chunks for r in result.records if r.success)
    return {"rps": s["request_throughput"], "chunks_per_s": chunks / s["duration_s"], "failed": s["failed"] + s["incomplete"],
            "lag_p99_ms": s["scheduling_lag_ms"].get("p99", 0.0), "ttft_median_ms": s["ttft_ms"].get("median", 0.0),
            "itl_median_ms": s["itl_ms"].get("median", 0.0), "itl_mean_ms": s["itl_ms"].get("mean", 0.0),
            "ttft_p99_ms": s["ttft_ms"].get("p99", 0.0), "itl_p99_ms": s["itl_ms"].get("p99", 0.0)}


def guidellm(binary: Path, base: str, concurrency: int, seconds: float) -> dict[str, float] | None:
    if not binary.exists():
        return None
    try:
        return _guidellm(binary, base, concurrency, seconds)
    except subprocess.TimeoutExpired:
        print(f"  guidellm at concurrency {concurrency} did not finish in {seconds * 3 + 60:g} s (it hangs in its "
              "worker processes now and then on this machine)")
        return None


def _guidellm(binary: Path, base: str, concurrency: int, seconds: float) -> dict[str, float] | None:
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(f"prompt number {n} for the benchmark" for n in range(64)))
        output = Path(tmp) / "result.json"
        run = subprocess.run([str(binary), "run", "--backend", f"kind=openai_http,target={base},model=fast",
                              "--profile", f"kind=concurrent,streams={concurrency}",
                              "--constraint", f"kind=max_duration,seconds={seconds:g}",
                              "--data", f"kind=text_file,path={prompts}", "--output", f"kind=json,path={output}",
                              "--disable-console-interactive"], capture_output=True, text=True,
                             timeout=seconds * 3 + 60)
        if run.returncode != 0 or not output.exists():
            print(f"  guidellm failed: {run.stderr[-300:]}")
            return None
        metrics = json.loads(output.read_text())["benchmarks"][0]["metrics"]
    return {"rps": metrics["requests_per_second"]["successful"]["mean"],
            "concurrency": metrics["request_concurrency"]["successful"]["mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--guidellm", type=Path, default=Path("/tmp/guidellm-venv/bin/guidellm"))
    args = parser.parse_args()
    processes = []
    try:
        fast, fast_url = upstream()
        processes.append(fast)
        print(f"Capacity against an instant endpoint ({CHUNKS} chunks per answer), {args.seconds:g} s per point; "
              "client and endpoint share the machine's 2 cores")
        print(f"{'concurrency':<13}{'swarm req/s':>13}{'chunks/s':>11}{'lag p99 ms':>12}{'failed':>8}"
              f"{'GuideLLM req/s':>16}{'its concurrency':>17}{'ratio':>8}")
        for concurrency in (1, 16, 64):
            mine = ours(fast_url, concurrency, args.seconds)
            theirs = guidellm(args.guidellm, fast_url, concurrency, args.seconds)
            missing = "did not finish" if args.guidellm.exists() else "not installed"
            other = f"{theirs['rps']:>16.0f}{theirs['concurrency']:>17.1f}{mine['rps'] / theirs['rps']:>8.1f}" if theirs else \
                f"{missing:>16}{'':>17}{'':>8}"
            print(f"{concurrency:<13}{mine['rps']:>13.0f}{mine['chunks_per_s']:>11.0f}{mine['lag_p99_ms']:>12.2f}"
                  f"{mine['failed']:>8.0f}{other}")

        slow, slow_url = upstream(ttft_ms=100, itl_ms=20)
        processes.append(slow)
        print("\nAccuracy against an endpoint with a known 100 ms before the first chunk and 20 ms between chunks")
        print(f"{'concurrency':<13}{'TTFT median':>13}{'error':>9}{'TTFT p99':>10}{'ITL median':>12}{'error':>9}{'ITL p99':>9}")
        for concurrency in (1, 16):
            m = ours(slow_url, concurrency, args.seconds)
            print(f"{concurrency:<13}{m['ttft_median_ms']:>13.2f}{m['ttft_median_ms'] - 100:>+9.2f}{m['ttft_p99_ms']:>10.2f}"
                  f"{m['itl_median_ms']:>12.2f}{m['itl_median_ms'] - 20:>+9.2f}{m['itl_p99_ms']:>9.2f}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
