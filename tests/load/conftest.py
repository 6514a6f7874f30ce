"""The load engine against the real CPU engine (and the real proxy for in-stream errors)."""
from __future__ import annotations

import pytest

from tests.live_parts import mark_live


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_live(items, "load", "load engine tests")
