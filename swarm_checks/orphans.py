"""Sweep what killed runs left behind: containers, networks and volumes labelled with a run id
whose owning pytest process is gone.

Every resource a run creates carries `io.vllm-swarm.run-id` and `io.vllm-swarm.owner`
(host:pid of the pytest process that owns the run). A run killed with SIGKILL cannot clean up;
the next run on the same host finds its resources by label and removes them. Stacks kept on
purpose (--keep-stack) carry `io.vllm-swarm.keep=true` and are never swept.

Several runs share one engine, so their sweeps and teardowns race; removal goes one resource
at a time through `docker_engine.remove`, which tolerates that: housekeeping must not fail a
run. What it cannot remove stays for the next sweep. This module decides what is an orphan;
the docker calls are in `docker_engine`.
"""
from __future__ import annotations

import os
import socket
from collections import defaultdict

from swarm_checks import docker_engine
from swarm_checks.docker_engine import KINDS

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
    """Only a process of this host that no longer exists is gone; anything unclear is alive."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def orphaned_projects() -> dict[str, dict[str, list[str]]]:
    """Project name -> {kind: [ids]} of the runs whose owner process is gone and that are not kept.

    A run is judged as a whole: one resource of it that is kept, or whose owner is alive (or
    unknown), spares all of it, so that no sweep ever touches a live run's resources.
    """
    by_run: dict[str, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    for kind in KINDS:
        for item in docker_engine.labelled(kind, LABEL_RUN):
            by_run[item.get(LABEL_RUN, "")].append((kind, item))
    projects: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for items in by_run.values():
        if any(item.get(LABEL_KEEP) == "true" or not _owner_gone(item.get(LABEL_OWNER, "")) for _, item in items):
            continue
        for kind, item in items:
            projects[item.get(LABEL_PROJECT, "?")][kind].append(item["id"])
    return projects


def sweep() -> list[str]:
    """Remove orphaned resources, one by one; returns the projects left with nothing of theirs.
    No docker CLI: nothing to do."""
    if not docker_engine.available():
        return []
    swept = []
    for project, resources in orphaned_projects().items():
        failures = [ident for kind in KINDS for ident in resources.get(kind, ()) if docker_engine.remove(kind, ident)]
        if not failures:
            swept.append(project)
    return swept


def leftovers(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes still labelled with `project` (empty after a clean down)."""
    found = {kind: docker_engine.names_labelled(kind, f"{LABEL_PROJECT}={project}") for kind in KINDS}
    return {kind: names for kind, names in found.items() if names}


def remove_project(project: str) -> None:
    """Force-remove whatever still carries the project's label (after `down` left something),
    one resource at a time: one that vanished meanwhile is removed as far as we are concerned."""
    for kind, names in leftovers(project).items():
        for name in names:
            docker_engine.remove(kind, name)
