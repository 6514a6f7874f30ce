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

LLM_IMAGE = "vllm-swarm/llm-cpu:0.3.36"
REDIS_IMAGE = "vllm-swarm/redis:7.0-bookworm"
DEBIAN_IMAGE = "vllm-swarm/debian:bookworm"


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

    def __init__(self, image: str, port: int, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        run_id = f"test-{uuid.uuid4().hex[:8]}"
        command = ["docker", "run", "-d", "--label", f"{orphans.LABEL_RUN}={run_id}",
                   "--label", f"{orphans.LABEL_OWNER}={orphans.owner_label(os.getpid())}",
                   "-p", f"127.0.0.1::{port}"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        self.id = subprocess.run([*command, image, *args], capture_output=True, text=True, check=True).stdout.strip()
        mapping = subprocess.run(["docker", "port", self.id, f"{port}/tcp"], capture_output=True, text=True, check=True)
        self.port = int(mapping.stdout.splitlines()[0].rsplit(":", 1)[1])

    def docker(self, *args: str) -> None:
        subprocess.run(["docker", *args, self.id], capture_output=True, check=True)

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", self.id], capture_output=True, check=False)


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
