"""Benchmark (not a test): what the proxy adds, measured side by side in one run.

    .venv/bin/python benchmarks/proxy_overhead.py [--requests 200] [--seconds 5] [--capacity-only]

1. Latency against the real CPU engine (vLLM CPU, SmolLM2-135M, a container of the image set):
   the same requests, alternating direct and through the proxy (ABAB, so drift hits both):
   non-streaming p50/p99 and what the proxy adds; streaming TTFT (first chunk with content)
   and inter-chunk gaps. A proxy that buffered would raise TTFT and shrink the gaps. Then TTFT
   with the raw-socket client below, paired, for a key without limits and one with limits in
   Redis, as the Compose file deploys the proxy (limits counted, set too high to be reached).
2. TTFT against an upstream whose first chunk comes after exactly 20 ms (benchmarks/fast_upstream.py):
   the engine's own jitter (several ms between requests) hides a difference of 1 ms in the first
   part, so here the proxy's share is measured alone; with a client on a raw socket (the request
   in one send, the clock stopped at the first event's bytes), as the median of paired
   differences with a bootstrap 95 % interval; for a key without limits, one with limits kept
   in-process, and one with limits in Redis (a container of the image set, reached on Docker's
   bridge as the proxy reaches it in Compose), whose round trip overlaps the upstream call
   (early admission, swarm_proxy/ratelimit.py).
3. Capacity: requests per second one proxy worker (one uvicorn process) sustains against an
   upstream that answers at once (benchmarks/fast_upstream.py), compared with the same client
   (wrk, `apt-get install wrk`) against that upstream directly (the client's own ceiling),
   alternating three times, at fixed concurrency, for a bounded time; with the proxy's CPU per
   request and its memory.

Everything runs on 127.0.0.1 and is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.docker_helpers import REDIS_IMAGE, Container, start_llm, wait_http  # noqa: E402

PROXY_DIR = ROOT / "compose" / "docker" / "proxy"
MODEL = "smollm2-135m"
KEY = "sk-bench-not-a-secret"
WRK = shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def redis_pings(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_address(redis: Container, seconds: float = 30.0) -> str:
    """host:port of the Redis container once it answers PING: its address on Docker's bridge
    where this host reaches it (Linux), as the proxy reaches Redis in the Compose network; else
    its published port, whose relay (docker-proxy) added about 0.07 ms a round trip here."""
    bridge = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                             redis.id], capture_output=True, text=True, check=False).stdout.strip()
    deadline = time.monotonic() + seconds
    while not redis_pings("127.0.0.1", redis.port):
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: Redis on 127.0.0.1:{redis.port} did not answer PING within {seconds:g} s")
        time.sleep(0.3)
    return f"{bridge}:6379" if bridge and redis_pings(bridge, 6379) else f"127.0.0.1:{redis.port}"


def start_proxy(upstream: str, limits: str = "0:0", redis_url: str = "") -> tuple[subprocess.Popen[bytes], str]:
    """One proxy worker; by default the key has no limits and there is no Redis (nothing to count)."""
    port = free_port()
    env = {**os.environ, "PROXY_API_KEYS": f"{KEY}:{limits}", "PROXY_ROUTES": f"*={upstream}", "REDIS_URL": redis_url}
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


def paired(direct: list[float], proxied: list[float]) -> tuple[float, float, float]:
    """The median of the paired differences (proxy minus direct, each pair taken back to back) and
    its bootstrap 95 % interval (1,000 resamples, seeded): what a difference of medians hides."""
    differences = [p - d for d, p in zip(direct, proxied)]
    draw = random.Random(1)
    resampled = sorted(statistics.median(draw.choices(differences, k=len(differences))) for _ in range(1000))
    return statistics.median(differences), resampled[24], resampled[974]


class RawStreams:
    """Streams over one kept-alive socket per port, the request in one send: the clock runs from
    that send to the first event's bytes, with no client library's work inside it."""

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}

    def ttft(self, port: int, body: bytes) -> float:
        sock = self._sockets.get(port)
        if sock is None:
            sock = self._sockets[port] = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        received, first = b"", None
        started = time.perf_counter()
        sock.sendall(request)
        while not received.endswith(b"0\r\n\r\n"):  # the chunked body's end
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit(f"benchmark: 127.0.0.1:{port} closed the stream: {received[:200]!r}")
            received += chunk
            if first is None and b"data:" in received:
                first = time.perf_counter()
        if not received.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"benchmark: 127.0.0.1:{port} answered {received[:200]!r}")
        return (first or started) - started

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()


def paired_ttft(title: str, upstream_port: int, proxies: list[tuple[str, int]], streams: int, model: str) -> None:
    """Each proxy (label, port) in front of the upstream, its streams alternating with direct ones."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hi."}], "stream": True,
                       "max_tokens": 2}).encode()
    print(f"\nTTFT {title}, {streams} streams per path, alternating, raw-socket client; milliseconds")
    print(f"{'':<34}{'direct':>10}{'proxy':>10}{'added':>10}")
    client = RawStreams()
    try:
        for label, proxied_port in proxies:
            for _ in range(10):  # warm-up: connections, the proxy's model list
                client.ttft(upstream_port, body), client.ttft(proxied_port, body)
            direct, proxied = [], []
            for _ in range(streams):
                direct.append(client.ttft(upstream_port, body))
                proxied.append(client.ttft(proxied_port, body))
            added, low, high = (value * 1e3 for value in paired(direct, proxied))
            print(f"{'TTFT p50, ' + label:<34}{statistics.median(direct) * 1e3:>10.2f}"
                  f"{statistics.median(proxied) * 1e3:>10.2f}{(statistics.median(proxied) - statistics.median(direct)) * 1e3:>+10.2f}")
            print(f"{'  added, paired median':<34}{'':>20}{added:>+10.2f}  (95 % interval {low:+.2f} to {high:+.2f})")
    finally:
        client.close()


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
        for _ in range(max(10, requests // 2)):  # short streams: the first token is what is measured
            for name, base in (("direct", direct), ("proxy", proxied)):
                ttft[name].append((await streaming(client, base, MODEL, 2))[0])
        gaps: dict[str, list[float]] = {"direct": [], "proxy": []}
        gap_streams = max(10, requests // 4)
        for _ in range(gap_streams):
            for name, base in (("direct", direct), ("proxy", proxied)):
                gaps[name].extend((await streaming(client, base, MODEL, 24))[1])
    ms = 1e3
    print(f"\nLatency against vLLM (SmolLM2-135M, CPU), {requests} non-streaming, {len(ttft['direct'])} streams of "
          f"2 tokens (TTFT) and {gap_streams} of 24 (gaps) per path, alternating; milliseconds")
    print(f"{'':<34}{'direct':>10}{'proxy':>10}{'added':>10}")
    for label, values, q in (("non-streaming p50", plain, 50), ("non-streaming p99", plain, 99),
                             ("streaming TTFT p50", ttft, 50), ("streaming TTFT p99", ttft, 99),
                             ("inter-chunk gap p50", gaps, 50), ("inter-chunk gap p99", gaps, 99)):
        d, p = pct(values["direct"], q) * ms, pct(values["proxy"], q) * ms
        print(f"{label:<34}{d:>10.2f}{p:>10.2f}{p - d:>+10.2f}")
    print(f"{'inter-chunk gap mean':<34}{statistics.mean(gaps['direct']) * ms:>10.2f}"
          f"{statistics.mean(gaps['proxy']) * ms:>10.2f}"
          f"{(statistics.mean(gaps['proxy']) - statistics.mean(gaps['direct'])) * ms:>+10.2f}")
    added, low, high = (value * ms for value in paired(ttft["direct"], ttft["proxy"]))
    print(f"{'TTFT added, paired median':<34}{'':>20}{added:>+10.2f}  (95 % interval {low:+.2f} to {high:+.2f})")


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = [[%s]]
"""


def capacity(base: str, seconds: float, concurrency: int, stream: bool) -> tuple[float, int]:
    """Completed requests per second at fixed concurrency for a bounded time, and how many, as
    wrk counts them (a stream completes with its last chunk). wrk is C on one thread: about
    10 us of CPU a request, so its ceiling (the direct figure) is far above what it measures.
    Python clients were not: httpx topped out at about 440 requests/s here, aiohttp about 3,000,
    both near the proxy they were meant to measure."""
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16,
                       "temperature": 0, **({"stream": True} if stream else {})})
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % (KEY, body))
        script.flush()
        run = subprocess.run([WRK, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", script.name,
                              f"{base}/chat/completions"], capture_output=True, text=True, timeout=seconds + 30)
    out = run.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if run.returncode != 0 or rate is None or total is None:
        raise SystemExit(f"benchmark: wrk failed: {(run.stderr or out).strip()[:300]}")
    if "Non-2xx" in out or "Socket errors" in out:
        problem = next(line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line)
        raise SystemExit(f"benchmark: {base} did not answer every request: {problem.strip()}")
    return float(rate.group(1)), int(total.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def throughput(fast: str, proxied: str, proxy: subprocess.Popen[bytes], seconds: float, concurrency: int,
               rounds: int) -> None:
    """Direct and through one proxy worker, alternating `rounds` times (ABAB: drift hits both):
    the direct figure is the ceiling of this client and upstream on this machine, in the same run."""
    capacity(proxied, 1.0, concurrency, False)  # warm-up: connections, caches
    print(f"\nCapacity against an instant upstream (16 chunks a stream), concurrency {concurrency}, {rounds} rounds "
          f"of {seconds:g} s each way; requests per second (client, proxy and upstream share the machine's cores)")
    print(f"{'':<24}{'round':>6}{'direct':>10}{'proxy':>10}{'ratio':>8}{'proxy CPU/req':>15}{'proxy RSS':>11}")
    for label, stream in (("non-streaming", False), ("streaming, 16 chunks", True)):
        proxy_rates = []
        for round_index in range(1, rounds + 1):
            direct_rate, _ = capacity(fast, seconds, concurrency, stream)
            before = cpu_seconds(proxy.pid)
            proxy_rate, done = capacity(proxied, seconds, concurrency, stream)
            used_us = (cpu_seconds(proxy.pid) - before) / max(1, done) * 1e6
            proxy_rates.append(proxy_rate)
            print(f"{label:<24}{round_index:>6}{direct_rate:>10.0f}{proxy_rate:>10.0f}{proxy_rate / direct_rate:>8.2f}"
                  f"{used_us:>12.0f} us{rss_mib(proxy.pid):>8.0f} MiB")
        print(f"{label:<24}{'median':>6}{'':>10}{statistics.median(proxy_rates):>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each capacity measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of direct and proxy per capacity figure")
    parser.add_argument("--streams", type=int, default=300, help="streams per path against the exact upstream")
    parser.add_argument("--engine-streams", type=int, default=300,
                        help="streams per path and key against the engine, raw-socket client")
    parser.add_argument("--capacity-only", action="store_true", help="skip the part against the CPU engine (none started)")
    args = parser.parse_args()
    if WRK is None:
        raise SystemExit("benchmark: the capacity part needs wrk (apt-get install wrk): a Python client is slower "
                         "than the proxy it would measure")
    processes: list[subprocess.Popen[bytes]] = []
    llm = None if args.capacity_only else start_llm(MODEL)
    redis = Container(REDIS_IMAGE, 6379)
    try:
        redis_url = f"redis://{redis_address(redis)}/0"
        if llm is not None:
            direct = f"http://127.0.0.1:{llm.port}/v1"
            proxy, proxied = start_proxy(direct)
            limited, limited_url = start_proxy(direct, "100000:1000000000", redis_url)
            processes += [proxy, limited]
            asyncio.run(latency(direct, proxied, args.requests))
            paired_ttft(f"against vLLM ({MODEL}, CPU), 2 tokens a stream", llm.port,
                        [("no limits", port_of(proxied)), ("limits in Redis", port_of(limited_url))],
                        args.engine_streams, MODEL)

        exact_port = free_port()
        processes.append(subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_upstream.py"), str(exact_port),
                                           "16", "20", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{exact_port}/v1/models", 30)
        exact = f"http://127.0.0.1:{exact_port}/v1"
        variants = [("no limits", start_proxy(exact)),  # below: generous limits, counted and never reached
                    ("limits in-process", start_proxy(exact, "100000:1000000000")),
                    ("limits in Redis", start_proxy(exact, "100000:1000000000", redis_url))]
        processes.extend(process for _, (process, _) in variants)
        paired_ttft("against an upstream whose first chunk comes after exactly 20 ms", exact_port,
                    [(label, port_of(url)) for label, (_, url) in variants], args.streams, "fast")

        fast_port = free_port()
        processes.append(subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_upstream.py"), str(fast_port)]))
        fast = f"http://127.0.0.1:{fast_port}/v1"
        wait_http(fast + "/models", 30)
        fast_proxy, fast_proxied = start_proxy(fast)
        processes.append(fast_proxy)
        throughput(fast, fast_proxied, fast_proxy, args.seconds, args.concurrency, args.rounds)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        redis.remove()
        if llm is not None:
            llm.remove()


if __name__ == "__main__":
    main()
