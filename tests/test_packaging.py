"""What a plain, non-editable `pip install swarm-checks[...]` gives, outside the repository: the
plugin with the data it reads (once lost: it lived in the repo's fixtures/), each extra with
everything it promises, and one line saying what to install when an extra is missing.

The fresh environments come from `fresh_install` (tests/packaging_venvs.py): one per set of
extras, built once per session on one xdist worker (about 40 s in all here); the live parts are
a Redis container of the local image set, and a copy of suites/smoke run by the installed pytest.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Callable

import pytest

from tests.docker_helpers import REDIS_IMAGE, Container, docker_unavailable
from tests.live_parts import REDIS_PASSWORD
from tests.packaging_venvs import GROUP, ROOT, Venv

pytestmark = pytest.mark.xdist_group(GROUP)
NO_REDIS = docker_unavailable([REDIS_IMAGE])
PROXY_DIR = ROOT / "compose" / "docker" / "proxy"
NO_TOOLS = ""  # PATH beyond the venv's bin/: no docker, no helm, no kubectl (a machine without Docker)

# What each extra promises: the modules it makes importable, in an environment with that extra
# alone (the package's own modules that need it included).
PROMISES: dict[str, list[str]] = {
    "clients": ["redis", "psycopg", "openai", "clickhouse_connect", "qdrant_client", "minio", "swarm_checks.probes",
                "prometheus_client", "promql_parser"],
    "load": ["aiohttp", "numpy", "tqdm", "prometheus_client", "swarm_checks.load", "swarm_checks.load.__main__",
             "swarm_checks.load_recording"],
    "proxy": ["fastapi", "uvicorn", "uvloop", "httptools", "aiohttp", "redis", "prometheus_client",
              "schemathesis", "swarm_proxy.app", "swarm_proxy.gateway"],
    "k8s": ["helm_python", "kubernetes_validate", "promql_parser", "swarm_checks.static"],
    "compose": ["swarm_checks.compose_cli"],
}
# Run inside the fresh venv: import each module named on the command line, print the failures.
IMPORT_ALL = """
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failed))
"""


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _no_internal_error(result: subprocess.CompletedProcess[str]) -> None:
    text = _output(result)
    assert "INTERNALERROR" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def _outside_copy_of_smoke(directory: Path) -> Path:
    """suites/smoke with the suites' conftest, in a directory that is not the repository."""
    suites = directory / "suites"
    shutil.copytree(ROOT / "suites" / "smoke", suites / "smoke", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "suites" / "conftest.py", suites / "conftest.py")
    return directory


def _endpoints(directory: Path, redis_url: str) -> Path:
    """An endpoints file naming only Redis (its kind given: outside the repo no Compose file says it)."""
    path = directory / "endpoints.yaml"
    path.write_text(f"services:\n  redis:\n    kind: redis\n    url: {redis_url}\n    password: ${{SMOKE_REDIS_PASSWORD}}\n")
    return path


@pytest.fixture
def redis_for_smoke(request: pytest.FixtureRequest) -> Container:
    """The session's Redis container (tests/live_parts.py), password REDIS_PASSWORD."""
    if NO_REDIS:
        pytest.skip(f"a live Redis for the smoke suite: {NO_REDIS}")
    return request.getfixturevalue("redis_container")


def test_the_proxy_extra_holds_every_requirement_of_the_proxy_image() -> None:
    """pyproject says the `proxy` extra is compose/docker/proxy/requirements.txt (and the fuzzer);
    it once lacked redis, so the proxy's app did not import on the host."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["proxy"]
    pinned = {re.split(r"[\[=<>~! ]", line, maxsplit=1)[0].lower(): line.replace(" ", "")
              for line in extra + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    wanted = [line.strip() for line in (PROXY_DIR / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    missing = [line for line in wanted if pinned.get(re.split(r"[\[=<>~! ]", line, maxsplit=1)[0].lower()) != line]
    assert not missing, f"in compose/docker/proxy/requirements.txt but not (with that pin) in the proxy extra or the core: {missing}"


def test_a_plain_install_runs_the_smoke_suite_outside_the_repo(fresh_install: Callable[[str], Venv],
                                                                redis_for_smoke: Container, tmp_path: Path) -> None:
    """`pip install swarm-checks[clients]`, then from a directory that is not the repository:
    `pytest --target=external --endpoints FILE suites/smoke` passes for Redis and skips the LLM."""
    venv = fresh_install("clients")
    work = _outside_copy_of_smoke(tmp_path / "elsewhere")
    endpoints = _endpoints(work, f"redis://127.0.0.1:{redis_for_smoke.port}/0")
    result = venv.run(["pytest", "-p", "no:cacheprovider", "-rs", "--target=external", "--endpoints", endpoints.name,
                       "suites/smoke"], cwd=work, env={"SMOKE_REDIS_PASSWORD": REDIS_PASSWORD})
    text = _output(result)
    assert result.returncode == 0, text[-3000:]
    assert re.search(r"\b1 passed, 1 skipped\b", text), text[-3000:]
    assert "no llm service is defined" in text, text[-3000:]
    assert "swarm-checks-0.1.0" in text, "the installed plugin was not loaded: " + text[:2000]
    where = venv.run(["python", "-c", "import swarm_checks; print(swarm_checks.__file__)"], cwd=work)
    assert where.stdout.strip().startswith(str(venv.root)), where.stdout + where.stderr


def test_a_plain_install_carries_the_data_the_plugin_reads(fresh_install: Callable[[str], Venv], tmp_path: Path) -> None:
    """Every file of swarm_checks/data is installed, and its readers find it: the service matrix
    (core), the load thresholds and the workload's prompts (the `load` extra)."""
    expected = sorted(str(p.relative_to(ROOT / "swarm_checks" / "data")) for p in (ROOT / "swarm_checks" / "data").rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    assert {"thresholds.yaml", "service_matrix.yaml", "prompts/topics.txt", "schemas/servicemonitor.json"} <= set(expected)
    core = fresh_install("clients")
    listed = core.run(["python", "-c", """
import importlib.resources, json, pathlib
from swarm_checks import static
from swarm_checks.static import helm_rules
data = pathlib.Path(str(importlib.resources.files("swarm_checks") / "data"))
print(json.dumps({"root": str(data), "files": sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()),
                  "matrix": sorted(static.service_matrix()), "crd": str(helm_rules.CRD_SCHEMAS)}))
"""], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    found = json.loads(listed.stdout)
    assert found["root"].startswith(str(core.root)) and found["crd"].startswith(str(core.root)), found
    assert found["files"] == expected, f"installed {found['files']}, the package has {expected}"
    assert "compose" in found["matrix"] and "helm" in found["matrix"], found["matrix"]
    load = fresh_install("load")
    read = load.run(["python", "-c", """
import json
from swarm_checks.load import Workload, thresholds
print(json.dumps({"file": str(thresholds.DEFAULT_FILE), "entry": thresholds.entry("cpu/smollm2-135m"),
                  "prompts": Workload().describe()["prompts_file"], "requests": len(Workload(seed=3).requests(3))}))
"""], cwd=tmp_path)
    assert read.returncode == 0, read.stderr[-2000:]
    found = json.loads(read.stdout)
    assert found["file"].startswith(str(load.root)) and found["prompts"].startswith(str(load.root)), found
    assert found["entry"] and found["requests"] == 3, found


@pytest.mark.parametrize("extra", sorted(PROMISES))
def test_each_extra_alone_imports_what_it_promises(extra: str, fresh_install: Callable[[str], Venv], tmp_path: Path) -> None:
    """A fresh venv with that extra only; run outside the repository with no docker, helm or
    kubectl on PATH, so what works comes from the install."""
    venv = fresh_install(extra)
    env = {"PYTHONPATH": str(PROXY_DIR)} if extra == "proxy" else {}  # the proxy's app, as its image runs it
    result = venv.run(["python", "-c", IMPORT_ALL, *PROMISES[extra]], cwd=tmp_path, path=NO_TOOLS, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    failed = json.loads(result.stdout)
    assert not failed, f"swarm-checks[{extra}] does not give: {failed}"
    if extra == "compose":
        # The official binary, found although no docker is on PATH, and it runs.
        check = venv.run(["python", "-c", "from swarm_checks.compose_cli import compose_command; import subprocess; "
                          "print(subprocess.run([*compose_command(), 'version'], capture_output=True, text=True).stdout)"],
                         cwd=tmp_path, path=NO_TOOLS)
        assert check.returncode == 0 and "Docker Compose version" in check.stdout, check.stdout + check.stderr[-2000:]
    if extra == "k8s":
        # The chart renders through the Helm SDK (no helm binary on PATH) and validates.
        check = venv.run(["python", "-c", f"""
import pathlib, kubernetes_validate
from swarm_checks import helm_render
docs = helm_render.render(pathlib.Path({str(ROOT / 'helm')!r}), {{'secrets': {{'generate': 'offline'}}}})
kubernetes_validate.validate(next(d for d in docs if d["kind"] == "Deployment"), "1.30.0", strict=True)
print(len(docs))
"""], cwd=tmp_path, path=NO_TOOLS)
        assert check.returncode == 0 and int(check.stdout.strip() or 0) > 10, check.stdout + check.stderr[-2000:]


def test_without_the_compose_extra_the_repo_root_run_has_no_internal_error(
        fresh_install: Callable[[str], Venv], redis_for_smoke: Container, tmp_path: Path) -> None:
    """`python -m pytest` from the repository root puts the root on sys.path, where `import
    compose` found the assets folder compose/ (a namespace package, no __file__): an INTERNALERROR
    on a machine without Docker. Now the external target passes, and the compose target says in
    one line what to install."""
    venv = fresh_install("clients")
    endpoints = _endpoints(tmp_path, f"redis://127.0.0.1:{redis_for_smoke.port}/0")
    external = venv.run(["python", "-m", "pytest", "-p", "no:cacheprovider", "--target=external", "--endpoints",
                         str(endpoints), "suites/smoke"], cwd=ROOT, path=NO_TOOLS,
                        env={"SMOKE_REDIS_PASSWORD": REDIS_PASSWORD})
    _no_internal_error(external)
    assert external.returncode == 0 and re.search(r"\b1 passed, 1 skipped\b", external.stdout), _output(external)[-3000:]
    compose = venv.run(["python", "-m", "pytest", "-p", "no:cacheprovider", "suites/smoke"], cwd=ROOT, path=NO_TOOLS)
    _no_internal_error(compose)
    assert compose.returncode != 0 and "pip install 'swarm-checks[compose]'" in compose.stdout, _output(compose)[-3000:]


def test_without_the_client_and_load_extras_each_missing_one_is_one_line(
        fresh_install: Callable[[str], Venv], tmp_path: Path) -> None:
    """Only the `compose` extra: the plugin starts (`pytest --help`), and the suites say in one
    line which extra to install (a probe without its client, a suite module without the engine)."""
    venv = fresh_install("compose")
    work = _outside_copy_of_smoke(tmp_path / "elsewhere")
    shutil.copytree(ROOT / "suites" / "load", work / "suites" / "load", ignore=shutil.ignore_patterns("__pycache__"))
    endpoints = _endpoints(work, "redis://127.0.0.1:9/0")
    helped = venv.run(["pytest", "--help"], cwd=work, path=NO_TOOLS)
    assert helped.returncode == 0 and "--endpoints" in helped.stdout, _output(helped)[-3000:]
    smoke = venv.run(["pytest", "-p", "no:cacheprovider", "--target=external", "--endpoints", endpoints.name, "suites/smoke"],
                     cwd=work, path=NO_TOOLS, env={"SMOKE_REDIS_PASSWORD": "x"})
    _no_internal_error(smoke)
    assert smoke.returncode == 1, _output(smoke)[-3000:]
    assert "redis: the Python module redis is not installed: pip install 'swarm-checks[clients]'" in smoke.stdout, smoke.stdout[-3000:]
    load = venv.run(["pytest", "-p", "no:cacheprovider", "--target=external", "--endpoints", endpoints.name, "suites/load"],
                    cwd=work, path=NO_TOOLS, env={"SMOKE_REDIS_PASSWORD": "x"})
    _no_internal_error(load)
    assert load.returncode != 0 and re.search(r"this suite needs \w+, which is not installed: pip install 'swarm-checks\[load\]'",
                                              load.stdout), _output(load)[-3000:]
