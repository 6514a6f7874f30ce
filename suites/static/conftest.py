"""Fixtures of the static suite: the assets, loaded once per session, no engine, no cluster."""
from __future__ import annotations

from typing import Any

import pytest

from swarm_checks import SwarmError, SwarmSettings, fail, static
from swarm_checks.static import compose_rules, helm_rules, helm_values_rules


@pytest.fixture(scope="session")
def service_matrix() -> dict[str, Any]:
    """The specification of the stack, shipped with the package (not in the assets it checks)."""
    return static.service_matrix()


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


@pytest.fixture(scope="session")
def chart_values(swarm_settings: SwarmSettings) -> helm_values_rules.ChartValues:
    """The chart's values, schema and render overrides, for the rules over the values as a whole."""
    chart = swarm_settings.chart
    try:
        return helm_values_rules.load_values(chart)
    except (SwarmError, FileNotFoundError, ValueError) as error:
        fail(f"chart {chart}: rule 'values': {error}")
