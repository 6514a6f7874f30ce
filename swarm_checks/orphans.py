"""Sweep what killed runs left behind: containers, networks and volumes labelled with a run id
whose owning pytest process is gone.

Every resource a run creates carries `io.vllm-swarm.run-id` and `io.vllm-swarm.owner`
(host:pid of the pytest process that owns the run). A run killed with SIGKILL cannot clean up;
the next run on the same host finds its resources by label and removes them. Stacks kept on
purpose (--keep-stack) carry `io.vllm-swarm.keep=true` and are never swept.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections import defaultdict

LABEL_RUN = "io.vllm-swarm.run-id"
LABEL_OWNER = "io.vllm-swarm.owner"
LABEL_KEEP = "io.vllm-swarm.keep"
LABEL_PROJECT = "com.docker.compose.project"


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
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)


def _labelled(kind: str) -> list[dict[str, str]]:
    """(id, labels) of every container/network/volume that carries a run id."""
    listing = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
    result = _docker(*listing, "--filter", f"label={LABEL_RUN}", "--format", "{{json .}}")
    if result.returncode != 0:
        return []
    found = []
    for line in result.stdout.splitlines():
        item = json.loads(line)
        labels = dict(part.split("=", 1) for part in item.get("Labels", "").split(",") if "=" in part)
        found.append({"id": item.get("ID") or item.get("Name", ""), **labels})
    return found


def orphaned_projects() -> dict[str, dict[str, list[str]]]:
    """Project name -> {kind: [ids]} for resources whose owner process is gone and not kept."""
    projects: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for kind in ("container", "network", "volume"):
        for item in _labelled(kind):
            if item.get(LABEL_KEEP) == "true" or not _owner_gone(item.get(LABEL_OWNER, "")):
                continue
            projects[item.get(LABEL_PROJECT, "?")][kind].append(item["id"])
    return projects


def sweep() -> list[str]:
    """Remove orphaned resources; returns the swept project names. No docker CLI: nothing to do."""
    if shutil.which("docker") is None:
        return []
    swept = []
    for project, resources in orphaned_projects().items():
        if resources.get("container"):
            _docker("rm", "--force", "--volumes", *resources["container"])
        if resources.get("network"):
            _docker("network", "rm", *resources["network"])
        if resources.get("volume"):
            _docker("volume", "rm", "--force", *resources["volume"])
        swept.append(project)
    return swept


def leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes still labelled with `project` (empty after a clean down)."""
    found: dict[str, list[str]] = {}
    for kind, listing in (("container", ["ps", "-a"]), ("network", ["network", "ls"]), ("volume", ["volume", "ls"])):
        result = _docker(*listing, "--filter", f"label={LABEL_PROJECT}={project}", "--format", "{{.Names}}" if kind == "container" else "{{.Name}}")
        names = [line for line in result.stdout.splitlines() if line.strip()]
        if names:
            found[kind] = names
    return found


def remove_project(project: str) -> None:
    """Force-remove whatever still carries the project's label (after `down` left something)."""
    for kind, names in leftovers(project).items():
        if kind == "container":
            _docker("rm", "--force", "--volumes", *names)
        elif kind == "network":
            _docker("network", "rm", *names)
        else:
            _docker("volume", "rm", "--force", *names)
