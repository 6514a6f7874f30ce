"""Flow 8 (disaster recovery), its path broken: the suite's own flow-8 test, run by an inner
pytest on a stack of the real Compose file with only Redis and PostgreSQL, with a backup that
lost its Redis part (deleted between `make backup` and `make restore`, by a plugin that wraps the
test's `make`). The test must fail on Redis, after PostgreSQL came back identical. And the flow's
PostgreSQL wipe, run under a server that keeps writing, must still leave it empty."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from integration_stack import postgres_ready, psql, wait_until
from integration_state import wipe_postgres
from tests.docker_helpers import Container, docker_unavailable
from tests.integration.conftest import docker_exec

REPO = Path(__file__).resolve().parents[2]
FLOW_8 = REPO / "suites" / "integration" / "test_08_disaster_recovery.py"
POSTGRES_IMAGE = "vllm-swarm/postgres:17-trixie"
WHY_NOT = docker_unavailable(["vllm-swarm/redis:7.0-bookworm", POSTGRES_IMAGE])
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


# Three writers making new relation files in base/1 (template1) for 5 s, as a checkpoint or
# autovacuum does now and then: a single `rm -rf` under them fails with "Directory not empty".
TEMPLATE1_WRITERS = " & ".join(
    f'timeout 5 sh -c \'while :; do psql -q -U swarm -d template1 -c "CREATE TABLE IF NOT EXISTS churn{n}(i int); '
    f'INSERT INTO churn{n} SELECT generate_series(1, 2000); DROP TABLE churn{n}" >/dev/null 2>&1; done\'' for n in range(3))


def test_wiping_postgres_while_it_writes_leaves_it_empty() -> None:
    container = Container(POSTGRES_IMAGE, 5432, env={"POSTGRES_PASSWORD": "wipe-test", "POSTGRES_USER": "swarm", "POSTGRES_DB": "swarm"},
                          run_options=["-v", "/var/lib/postgresql/data"])
    try:
        run = docker_exec(container.id)
        wait_until(lambda: postgres_ready(run), 120, "the test's PostgreSQL to start")
        psql(run, "CREATE TABLE kept_before_the_wipe(i int)")
        subprocess.run(["docker", "exec", "-d", container.id, "sh", "-c", TEMPLATE1_WRITERS], check=True)
        time.sleep(1.5)
        wipe_postgres(run, lambda service, action: container.docker(action), "postgres")
        assert psql(run, "SELECT count(*) FROM pg_tables WHERE tablename = 'kept_before_the_wipe'") == "0"
    finally:
        container.remove()
