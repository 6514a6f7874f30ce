"""The plugin as users meet it: option precedence, markers and their skip reasons, the external
target, and one-line usage errors for bad input. Each test runs a real pytest session."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import COMPOSE_DIR

COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"

PRINT_SETTINGS = """
def test_show(swarm_settings):
    print("TARGET=" + swarm_settings.target)
    print("TIMEOUT=" + str(swarm_settings.stack_timeout))
    print("PROFILES=" + ",".join(swarm_settings.profiles))
    print("KEEP=" + str(swarm_settings.keep_stack))
"""


def _endpoints(pytester: pytest.Pytester, body: str) -> Path:
    return pytester.makefile(".yaml", endpoints=textwrap.dedent(body))


# --- options and their precedence -------------------------------------------------------

def test_defaults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PRINT_SETTINGS)
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(["*TARGET=compose*", "*TIMEOUT=900.0*", "*PROFILES=*", "*KEEP=False*"])


def test_ini_overrides_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nswarm_stack_timeout = 120\nswarm_profiles = proxy webui\nswarm_keep_stack = true\n")
    pytester.makepyfile(PRINT_SETTINGS)
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(["*TIMEOUT=120.0*", "*PROFILES=proxy,webui*", "*KEEP=True*"])


def test_environment_overrides_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nswarm_stack_timeout = 120\nswarm_profiles = proxy\n")
    monkeypatch.setenv("SWARM_STACK_TIMEOUT", "300")
    monkeypatch.setenv("SWARM_PROFILES", "cpu,langflow")
    pytester.makepyfile(PRINT_SETTINGS)
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(["*TIMEOUT=300.0*", "*PROFILES=cpu,langflow*"])


def test_command_line_overrides_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_STACK_TIMEOUT", "300")
    monkeypatch.setenv("SWARM_PROFILES", "cpu")
    pytester.makepyfile(PRINT_SETTINGS)
    result = pytester.runpytest("-s", "--stack-timeout=45", "--profile=gpu", "--profile=proxy")
    result.stdout.fnmatch_lines(["*TIMEOUT=45.0*", "*PROFILES=gpu,proxy*"])


def test_options_documented_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for flag in ("--target", "--compose-file", "--profile", "--env-file", "--namespace", "--release", "--kubeconfig",
                 "--kube-context", "--values", "--endpoints", "--keep-stack", "--reuse-stack", "--stack-timeout"):
        result.stdout.fnmatch_lines([f"*{flag}*"])
    assert "SWARM_STACK_TIMEOUT" in result.stdout.str() and "swarm_stack_timeout" in result.stdout.str()


# --- bad input: one line, what to do, no traceback --------------------------------------

@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--target=nowhere"], {}, "*argument --target: invalid choice: 'nowhere'*"),
        ([], {"SWARM_TARGET": "nowhere"}, "*environment variable SWARM_TARGET: unknown target 'nowhere'; choose one of compose, k8s, external*"),
        (["--compose-file=missing/docker-compose.yml"], {}, "*--compose-file: */missing/docker-compose.yml does not exist; pass the path of an existing file*"),
        (["--stack-timeout=soon"], {}, "*--stack-timeout: expected a number of seconds, got 'soon'*"),
        (["--target=k8s"], {}, "*--target=k8s: the k8s target is not implemented in this version*"),
        (["--target=external"], {}, "*--target=external needs --endpoints FILE*"),
        (["--keep-stack", "--reuse-stack"], {}, "*--keep-stack and --reuse-stack exclude each other*"),
    ],
    ids=["unknown-target-cli", "unknown-target-env", "missing-compose-file", "bad-timeout", "target-not-implemented",
         "external-without-endpoints", "keep-and-reuse"],
)
def test_usage_errors_are_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                   args: list[str], env: dict[str, str], expected: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, 2), result.stderr.str()
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("services: [unclosed\n", "*endpoints file *endpoints.yaml: not valid YAML (line *); see README, 'external target'*"),
        ("just-a-string\n", "*expected a mapping with a non-empty 'services:' mapping*"),
        ("services:\n  not-a-service:\n    url: http://127.0.0.1:1\n",
         "*service 'not-a-service': unknown service; use a name from the Compose file (*redis*) or give its 'kind'*"),
        ("services:\n  redis:\n    host: 127.0.0.1\n", "*service 'redis': unknown field(s) host; allowed: *"),
        ("services:\n  redis:\n    url: 127.0.0.1:6379\n", "*service 'redis': 'url' must be a URL such as http://127.0.0.1:8000*"),
        ("services:\n  redis:\n    url: redis://127.0.0.1:6379\n    password: ${SWARM_TEST_UNSET_PASSWORD}\n",
         "*service 'redis': environment variable SWARM_TEST_UNSET_PASSWORD is not set; export it or write the value*"),
    ],
    ids=["malformed-yaml", "not-a-mapping", "unknown-service", "unknown-field", "bad-url", "unset-variable"],
)
def test_bad_endpoints_file_is_one_usage_error(pytester: pytest.Pytester, content: str, expected: str) -> None:
    endpoints = pytester.makefile(".yaml", endpoints=content)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--target=external", f"--endpoints={endpoints}", f"--compose-file={COMPOSE_FILE}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    assert "Traceback" not in result.stderr.str()


# --- the external target and the markers -------------------------------------------------

MARKED_TESTS = """
import pytest

@pytest.mark.requires_service("redis")
def test_redis_deployed(swarm_endpoint):
    endpoint = swarm_endpoint("redis")
    assert endpoint.url == "redis://127.0.0.1:6379/0"
    assert endpoint.kind == "redis"
    assert "s3cr3t-value" not in repr(endpoint)
    assert endpoint.password == "s3cr3t-value"

@pytest.mark.requires_service("qdrant")
def test_needs_qdrant():
    pass

@pytest.mark.requires_profile("proxy")
def test_needs_proxy_profile():
    pass

@pytest.mark.requires_gpu
def test_needs_gpu():
    pass

@pytest.mark.target("k8s")
def test_only_on_k8s():
    pass

@pytest.mark.target("external")
def test_only_external(swarm_target, swarm_catalog):
    assert swarm_target.name == "external"
    assert set(swarm_catalog.active) == {"redis", "llm-cpu"}
    assert swarm_catalog.services["llm-cpu"].model == "smollm2-135m"

def test_endpoint_of_undeployed_service_skips(swarm_endpoint):
    swarm_endpoint("langflow")

def test_logs_not_available(swarm_target):
    from swarm_checks.errors import TargetCapabilityError
    with pytest.raises(TargetCapabilityError, match="cannot read service logs"):
        swarm_target.logs("redis")
"""


def test_external_target_and_marker_skip_reasons(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_TEST_REDIS_PASSWORD", "s3cr3t-value")
    endpoints = _endpoints(pytester, """
        services:
          redis:
            url: redis://127.0.0.1:6379/0
            password: ${SWARM_TEST_REDIS_PASSWORD}
          llm-cpu:
            url: http://127.0.0.1:8000/v1
    """)
    pytester.makepyfile(MARKED_TESTS)
    result = pytester.runpytest("-rs", "--target=external", f"--endpoints={endpoints}", f"--compose-file={COMPOSE_FILE}")
    result.assert_outcomes(passed=3, skipped=5)
    result.stdout.fnmatch_lines_random([
        "SKIPPED*service 'qdrant' is not deployed: add it to the endpoints file *endpoints.yaml*",
        "SKIPPED*Compose profile 'proxy' is not active: enable it with --profile proxy*",
        "SKIPPED*no GPU: the LLM engine of this deployment does not run on an NVIDIA GPU*",
        "SKIPPED*runs only with --target=k8s; this run uses --target=external*",
        "SKIPPED*service 'langflow' is not deployed: add it to the endpoints file *endpoints.yaml (Compose profile langflow)*",
    ])
    assert "s3cr3t-value" not in result.stdout.str()


def test_test_ids_carry_the_target(pytester: pytest.Pytester) -> None:
    endpoints = _endpoints(pytester, "services:\n  redis:\n    url: redis://127.0.0.1:6379/0\n")
    pytester.makepyfile("def test_uses_target(swarm_target):\n    assert swarm_target.name == 'external'\n")
    result = pytester.runpytest("-v", "--target=external", f"--endpoints={endpoints}", f"--compose-file={COMPOSE_FILE}")
    result.stdout.fnmatch_lines(["*test_uses_target[[]external[]] PASSED*"])


def test_gpu_flag_in_endpoints_enables_gpu_tests(pytester: pytest.Pytester) -> None:
    endpoints = _endpoints(pytester, "gpu: true\nservices:\n  vllm-phi:\n    url: http://127.0.0.1:8000/v1\n")
    pytester.makepyfile("import pytest\n@pytest.mark.requires_gpu\n@pytest.mark.requires_service('vllm-phi')\ndef test_gpu():\n    pass\n")
    result = pytester.runpytest("--target=external", f"--endpoints={endpoints}", f"--compose-file={COMPOSE_FILE}")
    result.assert_outcomes(passed=1)


def test_marker_without_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    endpoints = _endpoints(pytester, "services:\n  redis:\n    url: redis://127.0.0.1:6379/0\n")
    pytester.makepyfile("import pytest\n@pytest.mark.requires_service\ndef test_x():\n    pass\n")
    result = pytester.runpytest("--target=external", f"--endpoints={endpoints}", f"--compose-file={COMPOSE_FILE}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*requires_service needs at least one name*"])


def test_plugin_is_inert_in_unrelated_projects(pytester: pytest.Pytester) -> None:
    """Installed in a venv, the plugin loads in every pytest run: it must not demand its assets."""
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
