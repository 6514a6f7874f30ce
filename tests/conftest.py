"""Shared helpers of the framework's own tests: the repository's assets, copied for mutation."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# The live parts (vLLM's CPU engine, Redis, the proxy) are fixtures of this level, not of each
# folder: a session fixture defined in two conftests is two fixtures, and two engines of 3 GiB
# each would share the machine's two cores for the whole session.
from tests.live_parts import llm, redis_container, start_proxy  # noqa: F401,E402 - fixtures
from tests.packaging_venvs import fresh_install  # noqa: F401,E402 - fixture: fresh installs, built once

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
CHART_DIR = REPO / "helm"
STATIC_SUITE = REPO / "suites" / "static"


@pytest.fixture
def asset_copy(tmp_path: Path) -> Path:
    """A private copy of compose/ and helm/ that a test may break."""
    shutil.copytree(COMPOSE_DIR, tmp_path / "compose")
    shutil.copytree(CHART_DIR, tmp_path / "helm")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact snippet, failing loudly if the asset changed under the test."""
    text = path.read_text()
    assert old in text, f"snippet not found in {path.name}: {old!r}"
    path.write_text(text.replace(old, new, 1))
