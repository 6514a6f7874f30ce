"""The waiting loop's contract (deadline, transient errors, give-up, stop) and the redactor's,
on plain functions: no stack needed."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from swarm_checks.redaction import MASK, Redactor, secret_values
from swarm_checks.secrets import is_secret_name, read_env_file
from swarm_checks.waiting import Backoff, GiveUp, WaitTimeout, wait_until


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(first=0.1, factor=2.0, cap=1.0)
    delays = [[backoff.delay(attempt) for _ in range(200)] for attempt in range(8)]
    assert all(0 < d <= 0.1 for d in delays[0])
    assert all(d <= 1.0 for row in delays for d in row)
    assert max(delays[7]) > 0.8, "late attempts should reach the cap"
    assert len({round(d, 6) for d in delays[5]}) > 100, "delays should be jittered, not fixed"


def test_transient_errors_are_retried_until_success() -> None:
    calls = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("not yet")
        return "ready"

    assert wait_until(attempt, time.monotonic() + 10, what="svc", backoff=Backoff(first=0.01, cap=0.02)) == "ready"
    assert len(calls) == 4


def test_the_deadline_names_the_last_error() -> None:
    def attempt() -> None:
        raise ConnectionRefusedError("connection refused")

    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="svc was not ready before the deadline: last error: ConnectionRefusedError: connection refused"):
        wait_until(attempt, started + 0.3, what="svc", backoff=Backoff(first=0.01, cap=0.05))
    assert time.monotonic() - started < 2


def test_give_up_ends_the_wait_at_once() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise GiveUp("wrong password")

    with pytest.raises(GiveUp, match="wrong password"):
        wait_until(attempt, time.monotonic() + 30, what="svc")
    assert len(calls) == 1


def test_a_stop_event_ends_a_waiter_when_another_fails() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(GiveUp, match="another service failed"):
        wait_until(lambda: (_ for _ in ()).throw(OSError("down")), time.monotonic() + 30, what="svc", stop=stop,
                   backoff=Backoff(first=5, cap=5, floor=5))
    assert time.monotonic() - started < 3


def test_env_file_secrets_are_found_and_masked(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nREDIS_PASSWORD='s3cret-redis'\nPROXY_API_KEYS=sk-one,sk-two-long\n"
                   "REDIS_PORT=6379\nexport HF_TOKEN=hf_abcdef\nLANGFUSE_SECRET_KEY=sk-lf-x1\nSHORT_PASSWORD=ab\n")
    assert read_env_file(env)["REDIS_PASSWORD"] == "s3cret-redis"
    assert secret_values(read_env_file(env)) == {"s3cret-redis", "sk-one,sk-two-long", "sk-one", "sk-two-long",
                                                 "hf_abcdef", "sk-lf-x1"}
    redact = Redactor.from_env_files([env])
    text = "auth s3cret-redis from sk-two-long on port 6379 with hf_abcdef"
    assert redact(text) == f"auth {MASK} from {MASK} on port 6379 with {MASK}"
    redact.add("runtime-secret")
    assert redact("x runtime-secret y") == f"x {MASK} y"


@pytest.mark.parametrize("name, secret", [
    ("LANGFUSE_SALT", True), ("S3_ACCESS_KEY_ID", True), ("REDIS_PASSWORD_FILE", False), ("POSTGRES_PASSWORD", True),
    ("PROXY_API_KEYS", True), ("ENCRYPTION_KEY", True), ("NEXTAUTH_SECRET", True), ("REDISCLI_AUTH", True),
    ("HF_TOKEN", True), ("REDIS_PORT", False), ("POSTGRES_USER", False), ("LANGFUSE_INIT_PROJECT_ID", False),
])
def test_one_rule_says_which_variables_are_secrets(name: str, secret: bool) -> None:
    """The redactor and the static suite's no-secret-literal rule ask the same function, so
    they agree on every name (they used to disagree on the first three)."""
    from swarm_checks.static import compose_rules

    assert is_secret_name(name) is secret
    assert compose_rules.is_secret_name is is_secret_name
    assert bool(secret_values({name: "value-long-enough"})) is secret
