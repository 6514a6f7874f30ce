"""The Docker engine's own CLI (`docker ...`, not Compose): listing and removing labelled
resources, and the subnets networks use. Every plain `docker` call of the package is here.

Removal tolerates races by design: several runs share one engine (xdist workers of different
sessions, CI jobs side by side), so a resource listed a moment ago may be gone, or being
removed by someone else, when we act on it. "No such container/network/volume" counts as done,
a removal in progress elsewhere is waited out, and no answer of the engine raises.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

from swarm_checks.compose_cli import vanished

KINDS = ("container", "network", "volume")  # the order of removal: users before what they use
_LISTING = {"container": ("ps", "-a"), "network": ("network", "ls"), "volume": ("volume", "ls")}
_REMOVAL = {"container": ("rm", "--force", "--volumes"), "network": ("network", "rm"), "volume": ("volume", "rm", "--force")}
# Someone else is removing it, or a container still being removed holds it: wait, then retry.
_BUSY = ("already in progress", "has active endpoints", "volume is in use")
BUSY_WAIT = 15.0


def available() -> bool:
    return shutil.which("docker") is not None


def docker(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def labelled(kind: str, label: str) -> list[dict[str, str]]:
    """{"id": ..., **labels} of every container/network/volume carrying `label` (a key, or key=value)."""
    result = docker(*_LISTING[kind], "--filter", f"label={label}", "--format", "{{json .}}")
    if result.returncode != 0:
        return []
    found = []
    for line in result.stdout.splitlines():
        item = json.loads(line)
        labels = dict(part.split("=", 1) for part in item.get("Labels", "").split(",") if "=" in part)
        found.append({"id": item.get("ID") or item.get("Name", ""), **labels})
    return found


def names_labelled(kind: str, label: str) -> list[str]:
    """Names of the containers/networks/volumes carrying `label`."""
    result = docker(*_LISTING[kind], "--filter", f"label={label}",
                    "--format", "{{.Names}}" if kind == "container" else "{{.Name}}")
    return [line for line in result.stdout.splitlines() if line.strip()]


def remove(kind: str, ident: str, busy_wait: float = BUSY_WAIT) -> str | None:
    """Remove one container/network/volume by id or name: None once it is gone (whoever removed
    it), else the engine's last error line. A removal in progress elsewhere, or a network or
    volume still held by a container being removed, is waited for up to `busy_wait` seconds."""
    deadline = time.monotonic() + busy_wait
    while True:
        try:
            result = docker(*_REMOVAL[kind], ident)
        except subprocess.TimeoutExpired:
            return f"docker {' '.join(_REMOVAL[kind][:2])} {ident} did not answer within 120 s"
        # `docker rm --force` exits 0 on a missing container, older engines and `network rm` 1.
        if result.returncode == 0 or vanished(result.stderr, kind):
            return None
        error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        if not any(busy in error for busy in _BUSY) or time.monotonic() > deadline:
            return error
        time.sleep(0.2)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now (each socket held until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def used_subnets() -> set[str]:
    """Every subnet a Docker network of this engine uses (a new project must pick another)."""
    if not available():
        return set()
    ids = docker("network", "ls", "-q", timeout=60).stdout.split()
    if not ids:
        return set()
    result = docker("network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids, timeout=60)
    return set(result.stdout.split())
