"""The Grafana dashboards the chart ships (helm/dashboards), checked without Grafana: importable
anywhere, PromQL that parses, and handed to Grafana's sidecar by the chart. Whether their metrics
exist is checked against the live stack in suites/health/test_dashboards.py."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from swarm_checks import SwarmError, SwarmSettings, fail
from swarm_checks.static import dashboard_rules, fail_on

# The rules that read the chart's renders besides the files (the others need no render at all).
NEEDS_RENDERS = {"dashboard-configmaps"}


@pytest.fixture(scope="session")
def dashboard_assets(swarm_settings: SwarmSettings) -> dashboard_rules.DashboardAssets:
    return dashboard_rules.load_assets(swarm_settings.chart, {})


@pytest.mark.parametrize("rule", dashboard_rules.RULES, ids=[rule.name for rule in dashboard_rules.RULES])
def test_dashboard_rule(rule: Any, dashboard_assets: dashboard_rules.DashboardAssets, request: pytest.FixtureRequest) -> None:
    """One rule over every dashboard file (and, for the ConfigMaps, every render of the chart)."""
    if rule.name in NEEDS_RENDERS:
        dashboard_assets = dataclasses.replace(dashboard_assets, renders=request.getfixturevalue("chart_renders"))
    try:
        violations = list(rule.check(dashboard_assets))
    except SwarmError as error:  # promql-parser missing: what to install, in one line
        fail(str(error))
    fail_on(violations)
