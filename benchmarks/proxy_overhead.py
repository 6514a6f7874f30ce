"""Benchmark (not a test): what the proxy adds, measured side by side in one run.

    .venv/bin/python benchmarks/proxy_overhead.py [--requests 200] [--seconds 10]

1. Latency against the real CPU engine (vLLM CPU, SmolLM2-135M, a container of the image set):
   the same requests, alternating direct and through the proxy (ABAB, so drift hits both):
   non-streaming p50/p99 and what the proxy adds; streaming TTFT (first chunk with content)
   and inter-chunk gaps. A proxy that buffered would raise TTFT and shrink the gaps.
2. Capacity: requests per second one proxy worker (one uvicorn process) sustains against an
   upstream that answers at once (benchmarks/fast_upstream.py), compared with the same client
   against that upstream directly, at fixed concurrency, for a bounded time.

Everything runs on 127.0.0.1 and is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.docker_helpers import start_llm, wait_http  # noqa: E402

PROXY_DIR = ROOT / "compose" / "docker" / "proxy"
MODEL = "smollm2-135m"
KEY = "sk-bench-not-a-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_proxy(upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PROXY_API_KEYS": f"{KEY}:0:0", "PROXY_ROUTES": f"*={upstream}", "REDIS_URL": ""}
    process = subprocess.Popen([sys.executable, "-m", "swarm_proxy.server", "--host", "127.0.0.1", "--port", str(port),
                                "--log-level", "warning"], cwd=PROXY_DIR,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", 30)
    return process, url + "/v1"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def non_streaming(client: httpx.AsyncClient, base: str, model: str) -> float:
    started = time.perf_counter()
    response = await client.post(f"{base}/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0})
    response.raise_for_status()
    return time.perf_counter() - started


async def streaming(client: httpx.AsyncClient, base: str, model: str, max_tokens: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    ttft, last, gaps = None, 0.0, []
    body = {"model": model, "messages": [{"role": "user", "content": "Count from 1 to 50."}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True}
    async with client.stream("POST", f"{base}/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]" or '"content"' not in line:
                continue
            now = time.perf_counter()
            if ttft is None:
                ttft = now - started
            else:
                gaps.append(now - last)
            last = now
    return ttft or 0.0, gaps


async def latency(direct: str, proxied: str, requests: int) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as client:
        for _ in range(5):  # warm-up: connections, model caches
            await non_streaming(client, direct, MODEL)
            await non_streaming(client, proxied, MODEL)
        plain: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(requests):
            plain["direct"].append(await non_streaming(client, direct, MODEL))
            plain["proxy"].append(await non_streaming(client, proxied, MODEL))
        ttft: dict[str, list[float]] = {"direct": [], "proxy": []}
        gaps: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(max(10, requests // 4)):
            for name, base in (("direct", direct), ("proxy", proxied)):
                first, between = await streaming(client, base, MODEL, 24)
                ttft[name].append(first)
                gaps[name].extend(between)
    ms = 1e3
    print(f"\nLatency against vLLM (SmolLM2-135M, CPU), {requests} non-streaming and "
          f"{len(ttft['direct'])} streaming requests per path, alternating; milliseconds")
    print(f"{'':<34}{'direct':>10}{'proxy':>10}{'added':>10}")
    for label, values, q in (("non-streaming p50", plain, 50), ("non-streaming p99", plain, 99),
                             ("streaming TTFT p50", ttft, 50), ("streaming TTFT p99", ttft, 99),
                             ("inter-chunk gap p50", gaps, 50), ("inter-chunk gap p99", gaps, 99)):
        d, p = pct(values["direct"], q) * ms, pct(values["proxy"], q) * ms
        print(f"{label:<34}{d:>10.2f}{p:>10.2f}{p - d:>+10.2f}")
    print(f"{'inter-chunk gap mean':<34}{statistics.mean(gaps['direct']) * ms:>10.2f}"
          f"{statistics.mean(gaps['proxy']) * ms:>10.2f}"
          f"{(statistics.mean(gaps['proxy']) - statistics.mean(gaps['direct'])) * ms:>+10.2f}")


async def capacity(base: str, seconds: float, concurrency: int, stream: bool) -> float:
    """Completed requests per second at fixed concurrency for a bounded time."""
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = 0
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                if stream:
                    await streaming(client, base, "fast", 16)
                else:
                    await non_streaming(client, base, "fast")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each capacity measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    llm = start_llm(MODEL)
    try:
        direct = f"http://127.0.0.1:{llm.port}/v1"
        proxy, proxied = start_proxy(direct)
        processes.append(proxy)
        asyncio.run(latency(direct, proxied, args.requests))

        fast_port = free_port()
        processes.append(subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_upstream.py"), str(fast_port)]))
        fast = f"http://127.0.0.1:{fast_port}/v1"
        wait_http(fast + "/models", 30)
        fast_proxy, fast_proxied = start_proxy(fast)
        processes.append(fast_proxy)
        print(f"\nCapacity against an instant upstream, concurrency {args.concurrency}, {args.seconds:g} s each; "
              "requests per second (client, proxy and upstream share the machine's cores)")
        print(f"{'':<34}{'direct':>10}{'proxy':>10}{'ratio':>10}")
        for label, stream in (("non-streaming", False), ("streaming, 16 chunks", True)):
            d = asyncio.run(capacity(fast, args.seconds, args.concurrency, stream))
            p = asyncio.run(capacity(fast_proxied, args.seconds, args.concurrency, stream))
            print(f"{label:<34}{d:>10.0f}{p:>10.0f}{p / d:>10.2f}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        llm.remove()


if __name__ == "__main__":
    main()
