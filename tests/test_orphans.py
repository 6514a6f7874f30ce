"""The orphan sweep and the project listing racing for real on a Docker engine.

Runs share one engine, so a container, network or volume listed a moment ago may be gone, or
half-way through someone else's removal, when a run acts on it. These tests make that happen:
the resources of a fake run whose owner process has exited are removed by two sweeps at once
(and, in the second test, partly by a hook between the sweep's listing and its removals) while
the compose target lists that project's containers again and again. No error may surface and
nothing of the dead run may remain; a live run's and a kept run's resources must stay.

The sweeps see only this test's runs (a filter on the listing): other orphans on a shared
engine are not this test's to remove.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from swarm_checks import compose_cli, docker_engine, orphans
from swarm_checks.errors import SwarmError
from swarm_checks.options import SwarmSettings
from swarm_checks.shared_state import STATE_ROOT, RunContext
from swarm_checks.targets.compose import ComposeTarget
from tests.docker_helpers import DEBIAN_IMAGE, docker_unavailable

MINI = Path(__file__).parent / "data" / "compose-mini"
CONTAINERS = 100  # enough removals during enough listings that today's race shows every time
WHY_NOT = docker_unavailable([DEBIAN_IMAGE])

needs_docker = pytest.mark.skipif(WHY_NOT is not None, reason=f"orphan sweep tests: {WHY_NOT}")
pytestmark = pytest.mark.xdist_group("docker")


@pytest.mark.parametrize(("stderr", "kind"), [
    ("Error response from daemon: No such container: 3f2a", "container"),
    ("Error response from daemon: network swarm-x_mini not found", "network"),
    ("Error response from daemon: get swarm-x_redis-data: no such volume", "volume"),
])
def test_the_engines_words_for_gone(stderr: str, kind: str) -> None:
    """The engine's answers (docker 28) for a resource that is gone; a missing image is not one."""
    assert compose_cli.vanished(stderr, kind) and compose_cli.vanished(stderr)
    assert not compose_cli.vanished(stderr, next(k for k in compose_cli.VANISHED if k != kind))
    assert not compose_cli.vanished("Error response from daemon: No such image: vllm-swarm/does-not-exist:0")


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)


def _dead_pid() -> int:
    """The pid of a process of ours that has exited: the owner of an orphaned run."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    assert not orphans._alive(process.pid)
    return process.pid


class FakeRun:
    """Resources labelled like a run's (run id, owner, keep, Compose project), by the CLI."""

    def __init__(self, owner_pid: int, keep: bool = False) -> None:
        self.run_id = f"orphantest{uuid.uuid4().hex[:8]}"
        self.project = f"swarm-{self.run_id}"
        self.labels = [f"{orphans.LABEL_RUN}={self.run_id}", f"{orphans.LABEL_OWNER}={orphans.owner_label(owner_pid)}",
                       f"{orphans.LABEL_KEEP}={'true' if keep else 'false'}", f"{orphans.LABEL_PROJECT}={self.project}"]

    def _label_args(self, service: str | None = None) -> list[str]:
        # Compose lists a project's containers by its label and the config hash label.
        service_labels = [f"com.docker.compose.service={service}", "com.docker.compose.config-hash=test"]
        labels = self.labels + (service_labels if service else [])
        return [arg for label in labels for arg in ("--label", label)]

    def network(self) -> str:
        name = f"{self.project}_net"
        _checked("network", "create", *self._label_args(), name)
        return name

    def volume(self, suffix: str) -> str:
        name = f"{self.project}_{suffix}"
        _checked("volume", "create", *self._label_args(), name)
        return name

    def containers(self, count: int, network: str | None = None, volume: str | None = None, running: int = 0) -> None:
        """`count` containers, the first `running` of them started (they hold the network)."""
        def make(number: int) -> None:
            options = ["--network", network] if network else []
            options += ["-v", f"{volume}:/data"] if volume and number % 3 == 0 else []
            verb = ["run", "-d", "--init"] if number < running else ["create"]
            _checked(*verb, "--name", f"{self.project}-app-{number}", *self._label_args("app"), *options,
                     DEBIAN_IMAGE, "sleep", "300")

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(make, range(count)))

    def remaining(self) -> dict[str, list[str]]:
        """What still carries this run's id, by kind."""
        found = {}
        for kind, listing in (("container", ["ps", "-a"]), ("network", ["network", "ls"]), ("volume", ["volume", "ls"])):
            result = _docker(*listing, "--filter", f"label={orphans.LABEL_RUN}={self.run_id}", "--format", "{{.Names}}"
                             if kind == "container" else "{{.Name}}")
            names = result.stdout.split()
            if names:
                found[kind] = names
        return found

    def remove(self) -> None:
        """Remove this run's resources, whatever a failing test left (this run's label only)."""
        for kind, names in self.remaining().items():
            command = {"container": ["rm", "-f", "-v"], "network": ["network", "rm"], "volume": ["volume", "rm", "-f"]}[kind]
            _docker(*command, *names)
        shutil.rmtree(STATE_ROOT / self.run_id, ignore_errors=True)


def _checked(*args: str) -> None:
    result = _docker(*args)
    assert result.returncode == 0, f"docker {' '.join(args[:3])}: {result.stderr.strip()}"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FakeRun]]:
    """A dead run (owner exited), a live run (owner: this process) and a kept dead run; the
    sweeps see only these three."""
    dead_pid = _dead_pid()
    made = {"dead": FakeRun(dead_pid), "live": FakeRun(os.getpid()), "kept": FakeRun(dead_pid, keep=True)}
    mine = {run.run_id for run in made.values()}
    listing = docker_engine.labelled
    monkeypatch.setattr(docker_engine, "labelled",
                        lambda kind, label: [i for i in listing(kind, label) if i.get(orphans.LABEL_RUN) in mine])
    try:
        yield made
    finally:
        for run in made.values():
            run.remove()


def _target(run: FakeRun, log_dir: Path) -> ComposeTarget:
    """The compose target of the run's project (the mini stack's file; nothing is started)."""
    settings = SwarmSettings(
        target="compose", compose_file=MINI / "docker-compose.yml", profiles=("cpu",), env_files=(MINI / "mini.env",),
        services=(), host_ports="random", pull="never", namespace="vllm-swarm", release="swarm", chart=Path("helm"),
        kubeconfig=None, kube_context=None, values=(), endpoints=None, keep_stack=False, reuse_stack=False,
        stack_timeout=60.0, log_dir=log_dir, rootdir=log_dir)
    return ComposeTarget(settings, RunContext(run.run_id, os.getpid(), False, log_dir))


def _in_thread(action, failures: list[BaseException]) -> threading.Thread:
    def guarded() -> None:
        try:
            action()
        except BaseException as error:  # the test reports it; a thread would only print it
            failures.append(error)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


def _assert_only_the_dead_run_is_gone(runs: dict[str, FakeRun]) -> None:
    dead = runs["dead"]
    assert not dead.remaining(), f"the dead run left {dead.remaining()}"
    assert not orphans.leftovers(dead.project)
    assert runs["live"].remaining().get("container"), "a sweep removed a live run's container"
    assert runs["live"].remaining().get("volume"), "a sweep removed a live run's volume"
    assert runs["kept"].remaining().get("volume"), "a sweep removed a kept run's volume"


def _list_while(target: ComposeTarget, threads: list[threading.Thread]) -> tuple[int, list[str]]:
    """List the project's containers over and over until the threads end: (listings, errors)."""
    listings, errors = 0, []
    while any(thread.is_alive() for thread in threads):
        try:
            target.containers()
        except SwarmError as error:
            errors.append(str(error))
        listings += 1
    for thread in threads:
        thread.join()
    return listings, errors


@needs_docker
def test_two_sweeps_and_a_listing_race_for_a_dead_run(runs: dict[str, FakeRun], tmp_path: Path) -> None:
    dead, live, kept = runs["dead"], runs["live"], runs["kept"]
    network, data = dead.network(), dead.volume("data")
    dead.volume("spare")
    dead.containers(CONTAINERS, network=network, volume=data, running=4)
    live.containers(1)
    live.volume("data")
    kept.volume("data")
    target = _target(dead, tmp_path)
    listed = target.containers()
    assert len(listed) == CONTAINERS

    # First two others remove stopped containers one by one (teardowns, other runs' sweeps),
    # then two sweeps race for the rest; the project is listed all along. Each listing that
    # meets a removal between Compose's list and its inspect is the race of the issue.
    failures: list[BaseException] = []
    stopped = [c.id for c in listed if c.state != "running"][: CONTAINERS - 20]
    others = [_in_thread(lambda part=part: [_docker("rm", "-f", "-v", i) for i in part], failures)
              for part in (stopped[0::2], stopped[1::2])]
    first = _list_while(target, others)
    second = _list_while(target, [_in_thread(orphans.sweep, failures) for _ in range(2)])
    assert not failures, f"a sweep raised: {failures!r}"
    listings, errors = first[0] + second[0], first[1] + second[1]
    assert not errors, f"{len(errors)} of {listings} listings failed, e.g. {errors[0]}"
    assert target.containers() == []
    _assert_only_the_dead_run_is_gone(runs)


@needs_docker
def test_resources_removed_between_the_sweeps_listing_and_its_removals(
    runs: dict[str, FakeRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = runs["dead"]
    network, data = dead.network(), dead.volume("data")
    dead.containers(6, network=network, volume=data, running=2)
    runs["live"].containers(1)
    runs["live"].volume("data")
    runs["kept"].volume("data")
    listed = orphans.orphaned_projects

    def listing_then_someone_else_removes() -> dict[str, dict[str, list[str]]]:
        projects = listed()
        assert sorted(projects) == [dead.project], "the sweep should see the dead run only"
        victims = _docker("ps", "-aq", "--filter", f"label={orphans.LABEL_RUN}={dead.run_id}").stdout.split()
        _checked("rm", "-f", "-v", *victims[::2])  # someone else's sweep, between listing and acting
        return projects

    monkeypatch.setattr(orphans, "orphaned_projects", listing_then_someone_else_removes)
    assert orphans.sweep() == [dead.project]
    _assert_only_the_dead_run_is_gone(runs)
