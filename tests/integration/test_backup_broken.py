"""Flow 8 (disaster recovery), its path broken: the suite's own flow-8 test, run by an inner
pytest on a stack of the real Compose file with only Redis and PostgreSQL, with a backup that
lost its Redis part (deleted between `make backup` and `make restore`, by a plugin that wraps the
test's `make`). The test must fail on Redis, after PostgreSQL came back identical."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker_helpers import docker_unavailable

REPO = Path(__file__).resolve().parents[2]
FLOW_8 = REPO / "suites" / "integration" / "test_08_disaster_recovery.py"
WHY_NOT = docker_unavailable(["vllm-swarm/redis:7.0-bookworm", "vllm-swarm/postgres:17-trixie"])
pytestmark = [pytest.mark.skipif(bool(WHY_NOT), reason=f"flow 8 broken: {WHY_NOT}"), pytest.mark.xdist_group("docker")]

LOSE_REDIS = '''
import shutil, sys
from pathlib import Path
import pytest

@pytest.fixture(autouse=True)
def _a_backup_without_redis(monkeypatch):
    module = sys.modules["test_08_disaster_recovery"]
    real = module.make

    def make(target, rootdir, environment, timeout=600.0):
        result = real(target, rootdir, environment, timeout)
        if target == "backup":
            shutil.rmtree(Path(environment["BACKUP_DIR"]) / "redis")
        return result

    monkeypatch.setattr(module, "make", make)
'''


def test_a_backup_that_lost_redis_fails_the_flow(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(lose_redis=LOSE_REDIS)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = pytester.runpytest_subprocess(
        f"{FLOW_8}::test_postgres_and_redis_backed_up_destroyed_and_restored_identical", "-p", "lose_redis",
        f"--rootdir={REPO}", "-c", str(REPO / "pyproject.toml"), "-p", "no:cacheprovider",
        "--target=compose", "--pull=never", f"--env-file={REPO / 'compose' / '.env.example'}",
        f"--env-file={REPO / 'compose' / 'images.env'}", "--services=redis,postgres", f"--log-dir={pytester.path / 'logs'}",
        timeout=600)
    output = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert "Redis after the restore: ['missing: 4 swarm-dr:" in output, output[-3000:]
    assert "AssertionError: PostgreSQL after the restore" not in output  # PostgreSQL came back identical
