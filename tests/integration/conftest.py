"""The integration suite's checks against parts broken on purpose: each flow's check must fail
when its path is broken (a proxy pointed at a wrong upstream, the cache off, data on tmpfs instead
of a volume, an upstream that hangs or answers 500, a backup that lost a part).

The checks are the suite's own functions (suites/integration/integration_*.py), imported the way
the suite imports them; the live parts are tests/live_parts.py's (the CPU engine, Redis, proxies).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import pytest

from swarm_checks import ExecResult

from tests.live_parts import mark_live

SUITE = Path(__file__).resolve().parents[2] / "suites" / "integration"
if str(SUITE) not in sys.path:
    sys.path.insert(0, str(SUITE))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_live(items, "integration", "integration suite's broken paths")


def docker_exec(container_id: str) -> Callable[[str, Sequence[str]], ExecResult]:
    """An exec function for the suite's helpers that runs in one container, whatever the service."""

    def run(service: str, argv: Sequence[str]) -> ExecResult:
        result = subprocess.run(["docker", "exec", container_id, *argv], capture_output=True, text=True, timeout=120,
                                check=False)
        return ExecResult(result.returncode, result.stdout + result.stderr)

    return run
