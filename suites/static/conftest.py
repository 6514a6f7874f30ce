"""Fixtures of the static suite: the assets, loaded once per session, no engine, no cluster."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm_checks import SwarmError, SwarmSettings, fail, static
from swarm_checks.static import compose_rules, helm_rules

# The matrix is the specification of the stack; it lives beside the suites, not in the assets.
MATRIX_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "service_matrix.yaml"


@pytest.fixture(scope="session")
def service_matrix() -> dict[str, Any]:
    return yaml.safe_load(MATRIX_FILE.read_text())


@pytest.fixture(scope="session")
def compose_assets(swarm_settings: SwarmSettings, service_matrix: dict[str, Any]) -> compose_rules.ComposeAssets:
    try:
        return compose_rules.load_assets(swarm_settings.compose_file, service_matrix)
    except SwarmError as error:
        fail(str(error))


@pytest.fixture(scope="session")
def chart_renders(swarm_settings: SwarmSettings) -> dict[str, helm_rules.ChartRender]:
    """The chart rendered once per variant: defaults, each flag flipped, everything on."""

    chart = swarm_settings.chart
    try:
        defaults = static.chart_default_values(chart)
        return {
            name: helm_rules.render_variant(chart, name, overrides)
            for name, overrides in helm_rules.variants(defaults).items()
        }
    except (SwarmError, FileNotFoundError) as error:
        fail(f"chart {chart}: rule 'renders': {error}")
