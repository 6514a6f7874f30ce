"""The proxy under test, for real: compose/docker/proxy run by uvicorn in front of the real CPU
LLM engine and a real Redis (tests/live_parts.py). Tests reach it with the official openai SDK;
`scripted` (scripted.py) stands in for the engine where a test needs answers it never gives."""
from __future__ import annotations

import pytest

from tests.live_parts import mark_live
from tests.proxy.scripted import scripted  # noqa: F401 - fixture


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_live(items, "proxy", "proxy tests")
