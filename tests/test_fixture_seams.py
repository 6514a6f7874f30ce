"""The fixtures are the seam users override (as with pytest-docker), and the plugin does nothing
until a test asks for the stack. Each test runs a real pytest session."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import COMPOSE_DIR

COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"


def test_a_run_that_never_uses_the_stack_leaves_nothing(pytester: pytest.Pytester, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No state directory in the temp directory, no SIGTERM handler, in a run of plain tests
    (the plugin used to leave `swarm-checks/<run id>` behind in every run and take SIGTERM)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    pytester.makepyfile("""
        import signal
        def test_plain():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the plugin took SIGTERM"
    """)
    for extra in ([], ["-n", "2"]):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *extra)
        result.assert_outcomes(passed=1)
        assert "swarm: stack" not in result.stdout.str()
    assert sorted(os.listdir(temp)) in ([], ["pytest-of-" + os.environ.get("USER", "root")]), os.listdir(temp)
    assert not (temp / "swarm-checks").exists() or not list((temp / "swarm-checks").iterdir()), \
        f"left behind: {list((temp / 'swarm-checks').iterdir())}"


def _endpoints(pytester: pytest.Pytester, name: str, body: str) -> Path:
    return pytester.makefile(".yaml", **{name: textwrap.dedent(body)})


def test_overriding_swarm_settings_changes_what_runs(pytester: pytest.Pytester) -> None:
    """A conftest that points `swarm_settings` at another endpoints file: the catalog, the
    endpoints and the skip reasons follow it (the other fixtures used to read the run's own
    settings, so the override changed nothing)."""
    given = _endpoints(pytester, "given", "services:\n  redis:\n    url: redis://127.0.0.1:6379/0\n")
    other = _endpoints(pytester, "other", "services:\n  qdrant:\n    url: http://127.0.0.1:7777\n")
    pytester.makeconftest(f"""
        import dataclasses, pathlib
        import pytest

        @pytest.fixture(scope="session")
        def swarm_settings(swarm_settings):
            return dataclasses.replace(swarm_settings, endpoints=pathlib.Path({str(other)!r}))
    """)
    pytester.makepyfile("""
        def test_sees_the_override(swarm_catalog, swarm_endpoint):
            assert sorted(swarm_catalog.active) == ["qdrant"]
            assert swarm_endpoint("qdrant").url == "http://127.0.0.1:7777"

        def test_redis_is_not_deployed_any_more(swarm_endpoint):
            swarm_endpoint("redis")
    """)
    result = pytester.runpytest("-rs", "--target=external", f"--endpoints={given}", f"--compose-file={COMPOSE_FILE}")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*service 'redis' is not deployed: add it to the endpoints file *other.yaml*"])


def test_a_new_kind_gets_a_probe_from_a_conftest(pytester: pytest.Pytester) -> None:
    """`swarm_probes` extended in a conftest covers a kind the package does not know; smoke's
    probe test uses it (it used to say: edit swarm_checks/probes.py)."""
    endpoints = _endpoints(pytester, "endpoints", "services:\n  mine:\n    url: http://127.0.0.1:9\n    kind: my-kind\n")
    pytester.makeconftest("""
        import pytest
        from swarm_checks import default_probes

        @pytest.fixture(scope="session")
        def swarm_probes():
            return {**default_probes(), "my-kind": lambda endpoint: "probed " + endpoint.url}
    """)
    pytester.makepyfile("""
        def test_probe(swarm_probes, swarm_endpoint):
            assert swarm_probes["my-kind"](swarm_endpoint("mine")) == "probed http://127.0.0.1:9"
            assert "redis" in swarm_probes
    """)
    result = pytester.runpytest("--target=external", f"--endpoints={endpoints}", f"--compose-file={COMPOSE_FILE}")
    result.assert_outcomes(passed=1)
