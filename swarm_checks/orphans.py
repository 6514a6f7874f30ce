"""Sweep what killed runs left behind: containers, networks and volumes labelled with a run id
whose owning pytest process is gone.

Every resource a run creates carries `io.vllm-swarm.run-id` and `io.vllm-swarm.owner`
(host:pid of the pytest process that owns the run). A run killed with SIGKILL cannot clean up;
the next run on the same host finds its resources by label and removes them. Stacks kept on
purpose (--keep-stack) carry `io.vllm-swarm.keep=true` and are never swept.

Several runs share one engine (xdist workers of different sessions, CI jobs side by side), so
their sweeps and teardowns race: a resource listed a moment ago may be gone, or being removed
by someone else, when we act on it. Removal therefore goes one resource at a time, counts
"no such container/network/volume" as done, waits out a removal already in progress, and
raises on none of the engine's answers: housekeeping must not fail a run. What it cannot
remove stays for the next sweep.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections import defaultdict

from swarm_checks.compose_cli import vanished

LABEL_RUN = "io.vllm-swarm.run-id"
LABEL_OWNER = "io.vllm-swarm.owner"
LABEL_KEEP = "io.vllm-swarm.keep"
LABEL_PROJECT = "com.docker.compose.project"
KINDS = ("container", "network", "volume")  # the order of removal: users before what they use
_LISTING = {"container": ("ps", "-a"), "network": ("network", "ls"), "volume": ("volume", "ls")}
_REMOVAL = {"container": ("rm", "--force", "--volumes"), "network": ("network", "rm"), "volume": ("volume", "rm", "--force")}
# Someone else is removing it, or a container still being removed holds it: wait, then retry.
_BUSY = ("already in progress", "has active endpoints", "volume is in use")
BUSY_WAIT = 15.0


def owner_label(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(owner: str) -> bool:
    """Only a process of this host that no longer exists is gone; anything unclear is alive."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)


def _labelled(kind: str) -> list[dict[str, str]]:
    """(id, labels) of every container/network/volume that carries a run id."""
    result = _docker(*_LISTING[kind], "--filter", f"label={LABEL_RUN}", "--format", "{{json .}}")
    if result.returncode != 0:
        return []
    found = []
    for line in result.stdout.splitlines():
        item = json.loads(line)
        labels = dict(part.split("=", 1) for part in item.get("Labels", "").split(",") if "=" in part)
        found.append({"id": item.get("ID") or item.get("Name", ""), **labels})
    return found


def orphaned_projects() -> dict[str, dict[str, list[str]]]:
    """Project name -> {kind: [ids]} of the runs whose owner process is gone and that are not kept.

    A run is judged as a whole: one resource of it that is kept, or whose owner is alive (or
    unknown), spares all of it, so that no sweep ever touches a live run's resources.
    """
    by_run: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    for kind in KINDS:
        for item in _labelled(kind):
            by_run[item.get(LABEL_RUN, "")].append((kind, item))
    projects: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for items in by_run.values():
        if any(item.get(LABEL_KEEP) == "true" or not _owner_gone(item.get(LABEL_OWNER, "")) for _, item in items):
            continue
        for kind, item in items:
            projects[item.get(LABEL_PROJECT, "?")][kind].append(item["id"])
    return projects


def remove(kind: str, ident: str, busy_wait: float = BUSY_WAIT) -> str | None:
    """Remove one container/network/volume by id or name: None once it is gone (whoever removed
    it), else the engine's last error line. A removal in progress elsewhere, or a network or
    volume still held by a container being removed, is waited for up to `busy_wait` seconds."""
    deadline = time.monotonic() + busy_wait
    while True:
        try:
            result = _docker(*_REMOVAL[kind], ident)
        except subprocess.TimeoutExpired:
            return f"docker {' '.join(_REMOVAL[kind][:2])} {ident} did not answer within 120 s"
        # `docker rm --force` exits 0 on a missing container, older engines and `network rm` 1.
        if result.returncode == 0 or vanished(result.stderr, kind):
            return None
        error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        if not any(busy in error for busy in _BUSY) or time.monotonic() > deadline:
            return error
        time.sleep(0.2)


def sweep() -> list[str]:
    """Remove orphaned resources, one by one; returns the projects left with nothing of theirs.
    No docker CLI: nothing to do."""
    if shutil.which("docker") is None:
        return []
    swept = []
    for project, resources in orphaned_projects().items():
        failures = [ident for kind in KINDS for ident in resources.get(kind, ()) if remove(kind, ident)]
        if not failures:
            swept.append(project)
    return swept


def leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes still labelled with `project` (empty after a clean down)."""
    found: dict[str, list[str]] = {}
    for kind in KINDS:
        result = _docker(*_LISTING[kind], "--filter", f"label={LABEL_PROJECT}={project}",
                         "--format", "{{.Names}}" if kind == "container" else "{{.Name}}")
        names = [line for line in result.stdout.splitlines() if line.strip()]
        if names:
            found[kind] = names
    return found


def remove_project(project: str) -> None:
    """Force-remove whatever still carries the project's label (after `down` left something),
    one resource at a time: one that vanished meanwhile is removed as far as we are concerned."""
    for kind, names in leftovers(project).items():
        for name in names:
            remove(kind, name)
