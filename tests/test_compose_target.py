"""The compose target against a real Docker engine: teardown in every case, one stack per xdist
run, fail-fast and timeouts with logs in the report, and one clear line for each bad input.

Each test runs a real pytest session in a subprocess on the small stack in
tests/data/compose-mini (real Redis from the local image set and a Debian container whose
behaviour the variables choose), then checks with the docker CLI that nothing of it is left.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from swarm_checks import orphans
from tests.docker_helpers import docker_unavailable

MINI = Path(__file__).parent / "data" / "compose-mini"
BASE_ARGS = ["-p", "no:cacheprovider", "--target=compose", f"--compose-file={MINI / 'docker-compose.yml'}",
             f"--env-file={MINI / 'mini.env'}", "--profile=cpu"]
NEEDED_IMAGES = ("vllm-swarm/redis:7.0-bookworm", "vllm-swarm/debian:bookworm")
DOCKER_MISSING = docker_unavailable(NEEDED_IMAGES)

pytestmark = [
    pytest.mark.skipif(DOCKER_MISSING is not None, reason=f"compose target tests: {DOCKER_MISSING}"),
    # One xdist worker runs these one after another (--dist loadgroup): a run's orphan sweep must
    # not race with the test that leaves an orphan on purpose.
    pytest.mark.xdist_group("docker"),
]

USES_REDIS = """
def test_uses_redis(swarm_endpoint, swarm_target):
    endpoint = swarm_endpoint("redis")
    print("PROJECT=" + swarm_target.project)
    assert endpoint.port
"""


def _project(output: str) -> str:
    match = re.search(r"project (swarm-[0-9a-f]+)", output)
    assert match, f"no project name in the output:\n{output}"
    return match.group(1)


def _assert_nothing_left(project: str) -> None:
    left = orphans.leftovers(project)
    assert not left, f"the run left {left} behind"


@pytest.fixture
def run_inner(pytester: pytest.Pytester) -> Iterator:
    """Run pytest in a subprocess on the mini stack; returns (RunResult, seconds)."""

    def run(source: str, *args: str) -> tuple[pytest.RunResult, float]:
        pytester.makepyfile(test_inner=source)
        started = time.monotonic()
        result = pytester.runpytest_subprocess(*BASE_ARGS, *args, timeout=300)
        return result, time.monotonic() - started

    yield run


def test_a_failing_test_gets_the_service_logs_and_the_stack_is_removed(run_inner, pytester: pytest.Pytester) -> None:
    result, _ = run_inner("""
def test_fails(swarm_endpoint):
    swarm_endpoint("redis")
    assert False, "deliberate failure"
""")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "swarm logs: redis (last 40 lines)" in output
    assert "Ready to accept connections" in output  # a line of Redis's own log
    assert "mini-redis-password-not-for-production" not in output, "a secret reached the report"
    project = _project(output)
    assert (pytester.path / "reports" / "swarm-logs" / project / "redis.log").exists()
    _assert_nothing_left(project)


def test_xdist_workers_share_one_stack(run_inner, pytester: pytest.Pytester) -> None:
    seen = pytester.path / "seen"
    seen.mkdir()
    source = "import os, pathlib, time\n" + "\n".join(f"""
def test_{n}(swarm_target, swarm_endpoint):
    swarm_endpoint("redis")
    ids = sorted(c.id for c in swarm_target.containers())
    worker = os.environ["PYTEST_XDIST_WORKER"]
    pathlib.Path({str(seen)!r}, worker + "-{n}").write_text(swarm_target.project + ":" + ",".join(ids))
    time.sleep(1)  # keep both workers busy, so each one attaches
""" for n in range(4))
    result, _ = run_inner(source, "-n", "2")
    result.assert_outcomes(passed=4)
    records = {path.name: path.read_text() for path in seen.iterdir()}
    workers = {name.split("-")[0] for name in records}
    assert workers == {"gw0", "gw1"}, f"both workers should have run tests: {sorted(records)}"
    assert len(set(records.values())) == 1, f"the workers saw different stacks: {records}"
    project = _project(result.stdout.str())
    assert next(iter(records.values())).startswith(project + ":")
    _assert_nothing_left(project)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_removes_its_stack(pytester: pytest.Pytester, sig: signal.Signals) -> None:
    ready = pytester.path / "ready.txt"
    pytester.makepyfile(test_inner=f"""
import pathlib, time
def test_waits(swarm_endpoint, swarm_target):
    swarm_endpoint("redis")
    pathlib.Path({str(ready)!r}).write_text(swarm_target.project)
    time.sleep(120)
""")
    # The signal's default action in the inner run, whatever this run inherited: under `nohup` or
    # a shell's background job SIGINT is ignored, Python then installs no KeyboardInterrupt for it,
    # and the inner test would sleep through the signal (it is the teardown that is tested here).
    process = subprocess.Popen([sys.executable, "-m", "pytest", *BASE_ARGS], cwd=pytester.path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
        assert ready.exists(), "the inner run never got its stack"
        project = ready.read_text()
        assert orphans.leftovers(project), "the stack should be up before the signal"
        process.send_signal(sig)
        output, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert "KeyboardInterrupt" in output
    _assert_nothing_left(project)


def test_a_killed_run_is_swept_by_the_next_one(pytester: pytest.Pytester, run_inner) -> None:
    ready = pytester.path / "ready.txt"
    pytester.makepyfile(test_killed=f"""
import pathlib, time
def test_waits(swarm_endpoint, swarm_target):
    swarm_endpoint("redis")
    pathlib.Path({str(ready)!r}).write_text(swarm_target.project)
    time.sleep(120)
""")
    process = subprocess.Popen([sys.executable, "-m", "pytest", *BASE_ARGS, "test_killed.py"], cwd=pytester.path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    process.kill()  # SIGKILL: no teardown can run
    process.wait(timeout=60)
    assert ready.exists(), "the inner run never got its stack"
    killed = ready.read_text()
    assert orphans.leftovers(killed), "SIGKILL should leave the stack behind"
    (pytester.path / "test_killed.py").unlink()
    result, _ = run_inner(USES_REDIS)
    result.assert_outcomes(passed=1)
    _assert_nothing_left(killed)
    _assert_nothing_left(_project(result.stdout.str()))


def test_a_service_that_never_becomes_healthy_fails_within_the_timeout(run_inner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SCRIPT", "echo waiting for nothing; exec sleep infinity")
    monkeypatch.setenv("APP_HEALTH_RETRIES", "1000")
    result, seconds = run_inner(USES_REDIS, "--stack-timeout=10")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "not ready within --stack-timeout=10 s: app (running/starting)" in output
    assert "swarm logs: app" in output and "waiting for nothing" in output
    assert seconds < 10 + 120, f"the session took {seconds:.0f} s with --stack-timeout=10"
    _assert_nothing_left(_project(output))


def test_a_crashing_service_fails_fast_with_its_logs(run_inner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_SCRIPT", "echo boom; exit 3")
    result, _ = run_inner(USES_REDIS, "--stack-timeout=300")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert re.search(r"service app: container \S+ exited with code 3", output)
    assert "boom" in output
    assert "Traceback" not in output
    _assert_nothing_left(_project(output))


def test_no_docker_engine_is_one_clear_line(run_inner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result, _ = run_inner(USES_REDIS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the stack did not come up: the Docker engine is not reachable: start it*"])
    assert "Traceback" not in result.stdout.str()


def test_a_port_in_use_is_one_clear_line(run_inner, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("REDIS_PORT", str(port))
        result, _ = run_inner(USES_REDIS, "--host-ports=env")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*host port 127.0.0.1:{port} is already in use: stop what listens there*"])
    _assert_nothing_left(_project(result.stdout.str()))


RESTARTS_REDIS = """
import socket, subprocess, time

def test_restarted(swarm_endpoint, swarm_target):
    endpoint = swarm_endpoint("redis")
    container = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={swarm_target.project}",
                                "--filter", "label=com.docker.compose.service=redis"],
                               capture_output=True, text=True, check=True).stdout.split()[0]
    subprocess.run(["docker", "restart", container], check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while True:  # the endpoint handed out before the restart must reach Redis again
        try:  # Docker's port proxy accepts before Redis listens, then closes: an empty answer is "not yet"
            with socket.create_connection((endpoint.host, endpoint.port), timeout=2) as sock:
                sock.sendall(b"PING\\r\\n")
                if sock.recv(64):
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{endpoint.host}:{endpoint.port} did not answer within 30 s of the restart"
        time.sleep(0.5)
"""


def test_a_service_that_restarts_keeps_its_address(run_inner) -> None:
    """A container restarted by its restart policy (a crash) or by hand keeps its host port: with
    Docker choosing a random port at each start, a proxy that restarted mid-run listened on a new
    one, and every later test got connection refused from the address handed out before."""
    result, _ = run_inner(RESTARTS_REDIS)
    result.assert_outcomes(passed=1)


def test_an_invalid_compose_file_is_one_clear_line(pytester: pytest.Pytester) -> None:
    broken = pytester.path / "broken.yml"
    broken.write_text((MINI / "docker-compose.yml").read_text().replace("    image: ${REDIS_IMAGE", "    imagee: ${REDIS_IMAGE"))
    pytester.makepyfile(test_inner=USES_REDIS)
    result = pytester.runpytest_subprocess(*BASE_ARGS, f"--compose-file={broken}", timeout=120)
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*invalid Compose file {broken}*imagee*"])
    assert "Traceback" not in result.stdout.str()


def test_a_missing_image_is_one_clear_line(run_inner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_IMAGE", "vllm-swarm/does-not-exist:0")
    result, _ = run_inner(USES_REDIS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*image vllm-swarm/does-not-exist:0 is not available locally and could not be pulled*"
                                 "build the local image set with scripts/build-image-set.sh*"])
    _assert_nothing_left(_project(result.stdout.str()))
    never, _ = run_inner(USES_REDIS, "--pull=never")
    never.assert_outcomes(errors=1)
    never.stdout.fnmatch_lines(["*image vllm-swarm/does-not-exist:0 is not available locally and could not be pulled: "
                                "build the local image set*"])


def test_keep_then_reuse_then_clean(run_inner, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    kept, _ = run_inner(USES_REDIS, "--keep-stack")
    kept.assert_outcomes(passed=1)
    project = _project(kept.stdout.str())
    try:
        assert orphans.leftovers(project).get("container"), "--keep-stack should leave the stack running"
        monkeypatch.setenv("COMPOSE_PROJECT_NAME", project)
        reused, _ = run_inner(USES_REDIS, "--reuse-stack", "-s")
        reused.assert_outcomes(passed=1)
        assert f"PROJECT={project}" in reused.stdout.str()
        assert orphans.leftovers(project).get("container"), "--reuse-stack must not tear down"
    finally:
        orphans.remove_project(project)
    _assert_nothing_left(project)


def test_a_service_started_again_is_reached_on_its_new_port(run_inner) -> None:
    """Stopped and started, a container gets a new random host port: the target reads it afresh,
    so the tests after a fault (and the state other workers read) reach the service."""
    result, _ = run_inner("""
import redis

def test_fault_then_reach(swarm_endpoint, swarm_target):
    before = swarm_endpoint("redis")
    swarm_target.fault("redis", "stop")
    swarm_target.fault("redis", "start")
    after = swarm_endpoint("redis")
    print(f"PORTS {before.port} -> {after.port}; PROJECT=" + swarm_target.project)
    client = redis.Redis(host=after.host, port=after.port, password=after.password, socket_timeout=5)
    for _ in range(50):
        try:
            assert client.ping()
            break
        except redis.ConnectionError:
            import time; time.sleep(0.2)
    else:
        raise AssertionError(f"redis not reachable at its endpoint after the restart: {after.host}:{after.port}")
""", "-s")
    result.assert_outcomes(passed=1)
    _assert_nothing_left(_project(result.stdout.str()))
