"""What the tests that use a real Docker engine share: the availability check, and containers
labelled like the plugin's own (run id + owner) so that a killed test run is swept later."""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from typing import Sequence

import httpx

from swarm_checks import orphans

LLM_IMAGE = "vllm-swarm/vllm-cpu:0.32.0"
REDIS_IMAGE = "vllm-swarm/redis:7.0-bookworm"
DEBIAN_IMAGE = "vllm-swarm/debian:bookworm"
# vLLM loads in about 40 s on two idle cores; a busy CI machine takes several times that.
LLM_START_SECONDS = 400.0


def docker_unavailable(images: Sequence[str]) -> str | None:
    """Why tests needing these images cannot run here, or None."""
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return "the docker CLI is not installed (apt-get install docker.io)"
    if info.returncode != 0:
        return "the Docker engine is not running: start dockerd"
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
            return f"image {image} is missing: run scripts/build-image-set.sh"
    return None


class Container:
    """A container started with `docker run -d`, its published port, removed by `remove()`."""

    def __init__(self, image: str, port: int, args: Sequence[str] = (), env: dict[str, str] | None = None,
                 run_options: Sequence[str] = (), host_port: int | None = None) -> None:
        """`host_port` fixes the published port (a stop and start keeps it); by default Docker picks one."""
        run_id = f"test-{uuid.uuid4().hex[:8]}"
        command = ["docker", "run", "-d", "--label", f"{orphans.LABEL_RUN}={run_id}",
                   "--label", f"{orphans.LABEL_OWNER}={orphans.owner_label(os.getpid())}",
                   "-p", f"127.0.0.1:{host_port or ''}:{port}", *run_options]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        self.id = subprocess.run([*command, image, *args], capture_output=True, text=True, check=True).stdout.strip()
        mapping = subprocess.run(["docker", "port", self.id, f"{port}/tcp"], capture_output=True, text=True, check=True)
        self.port = int(mapping.stdout.splitlines()[0].rsplit(":", 1)[1])

    def docker(self, *args: str) -> None:
        """`docker ARGS ID`; a refusal raises with what Docker said (a bare exit status told nothing)."""
        done = subprocess.run(["docker", *args, self.id], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} {self.id[:12]} failed: {done.stderr.strip() or done.returncode}")

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", self.id], capture_output=True, check=False)


def start_llm(served_model_name: str, *, cpus: str | None = None) -> Container:
    """The CPU engine of the image set (vLLM's CPU build), as the Compose file runs it: shared
    memory for its worker processes, the model name it serves; healthy once /health answers."""
    options = ["--shm-size", "1g"] + (["--cpus", cpus] if cpus else [])
    container = Container(LLM_IMAGE, 8000, env={"SERVED_MODEL_NAME": served_model_name}, run_options=options)
    try:
        wait_http(f"http://127.0.0.1:{container.port}/health", LLM_START_SECONDS)
    except BaseException:
        container.remove()
        raise
    return container


def wait_http(url: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {seconds:g} s")
        time.sleep(0.3)
