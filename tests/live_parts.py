"""Real parts for the framework's own tests: the CPU LLM engine and Redis as containers of the
local image set, and the proxy application run by uvicorn as its own process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import httpx
import pytest

from tests.docker_helpers import LLM_IMAGE, REDIS_IMAGE, Container, docker_unavailable, start_llm, wait_http

PROXY_DIR = Path(__file__).resolve().parents[1] / "compose" / "docker" / "proxy"
MODEL = "smollm2-135m"
REDIS_PASSWORD = "proxy-test-redis-password"

WHY_NOT = docker_unavailable([LLM_IMAGE, REDIS_IMAGE])


def mark_live(items: list[pytest.Item], folder: str, what: str) -> None:
    """Skip the folder's tests that use live parts when Docker or the images are missing; run them
    on one xdist worker (they pause and stop shared containers)."""
    live = {"llm", "start_proxy", "redis_container"}
    for item in items:
        uses_live = bool(live & set(getattr(item, "fixturenames", ())))
        if uses_live and f"tests/{folder}/" in str(item.fspath).replace(os.sep, "/"):
            if WHY_NOT:
                item.add_marker(pytest.mark.skip(reason=f"{what}: {WHY_NOT}"))
            item.add_marker(pytest.mark.xdist_group("docker"))


@pytest.fixture(scope="session")
def llm() -> Iterator[Container]:
    """vLLM's CPU engine of the image set, one per test session (worker), serving MODEL."""
    container = start_llm(MODEL)
    try:
        yield container
    finally:
        container.remove()


def start_redis(host_port: int | None = None) -> Container:
    """A Redis of the image set; `host_port` fixed where a test stops and starts it (Docker may
    publish a restarted container on another ephemeral port)."""
    container = Container(REDIS_IMAGE, 6379, args=["redis-server", "--requirepass", REDIS_PASSWORD], host_port=host_port)
    import redis

    client = redis.Redis(port=container.port, password=REDIS_PASSWORD)
    for _ in range(100):
        try:
            client.ping()
            return container
        except redis.ConnectionError:
            import time

            time.sleep(0.1)
    raise TimeoutError("redis did not start")


@pytest.fixture(scope="session")
def redis_container() -> Iterator[Container]:
    container = start_redis()
    try:
        yield container
    finally:
        container.remove()


def redis_url(container: Container) -> str:
    return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{container.port}/1"


@dataclass
class Proxy:
    url: str
    key: str = field(repr=False)
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def metric(self, name: str) -> float:
        """A sample's value from /metrics (name with labels, as written there); 0 if absent."""
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def log_text(self) -> str:
        return self.log.read_text()


def free_port() -> int:
    """A port free at this moment, for what must bind it itself (a container's published port).
    Another process may take it before then: a server this process starts gets
    `listening_socket()` instead."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_socket() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1, to hand to a server. The port is held from
    the moment it is chosen: a port chosen free and bound by the server later can be taken in
    between (by the other xdist worker's proxy, a container's published port), and the test then
    talks to someone else's server: a 401 for a key that server never had."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener


def spawn_proxy(environment: Mapping[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """The proxy as its own process, on a socket this process bound (`--fd`), writing to `log`;
    with its root URL."""
    with listening_socket() as listener, log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "swarm_proxy.server", "--fd", str(listener.fileno())], cwd=PROXY_DIR,
            env=dict(environment), stdout=sink, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),))
        return process, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def start_proxy(tmp_path: Path, llm: Container) -> Iterator[Callable[..., Proxy]]:
    """start_proxy(key_spec=..., **env) -> a running proxy with a fresh key of its own."""
    started: list[Proxy] = []

    def start(limits: str = "", upstream: str | None = None, redis: Container | None = None, **env: str) -> Proxy:
        key = f"sk-test-{uuid.uuid4().hex}"
        log = tmp_path / f"proxy-{key[-8:]}.log"
        environment = {
            **os.environ,
            "PROXY_API_KEYS": key + limits,
            "PROXY_ROUTES": f"gpt-4*=openai,*={upstream or f'http://127.0.0.1:{llm.port}/v1'}",
            "REDIS_URL": redis_url(redis) if redis is not None else "",
            "OPENAI_API_KEY": "",
            "PROXY_RETRIES": "1",
            **env,
        }
        process, url = spawn_proxy(environment, log)
        proxy = Proxy(url, key, log, process)
        started.append(proxy)
        wait_http(proxy.url + "/health", 30)
        return proxy

    yield start
    for proxy in started:
        proxy.process.terminate()
        try:
            proxy.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.process.kill()


def rss_peak_kib(proxy: Proxy) -> int:
    """The proxy process's peak resident memory (VmHWM), in KiB: a peak catches a body that was
    held for a moment and freed before the test looked."""
    for line in open(f"/proc/{proxy.process.pid}/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")
