"""The Helm chart, checked without a cluster: rendered, linted, validated, and held to the
security checklist, with default values and with each flag flipped."""
from __future__ import annotations

from typing import Any

import pytest

from swarm_checks import Catalog, SwarmSettings, static
from swarm_checks.static import Violation, fail_on, helm_reference_rules, helm_rules, helm_upstream_rules, helm_values_rules, helm_vllm_rules

_MATRIX = static.service_matrix()
# The chart's rules: the checklist every workload follows, the vLLM Deployments' own, then what
# manifests refer to (Service targets, the image registry, disruption budgets, monitoring through
# the NetworkPolicies), then what Langfuse, ClickHouse and Redis require (as Compose holds them).
CHART_RULES = helm_rules.RULES + helm_vllm_rules.RULES + helm_reference_rules.RULES + helm_upstream_rules.RULES
# Linted variants: the defaults, everything on, and the primary LLM slot on CPUs.
LINTED = ("defaults", "everything-on", 'vllm.phi.device="cpu"')


def test_chart_lints_clean(swarm_settings: SwarmSettings) -> None:
    """`helm lint --strict` finds no warning or error, with defaults, with everything on and in CPU mode."""
    chart = swarm_settings.chart
    defaults = static.chart_default_values(chart)
    findings = []
    variants = helm_rules.variants(defaults)
    for name in LINTED:
        overrides = variants[name]
        findings += [Violation(f"chart [{name}]", "lint", line) for line in static.lint_chart(chart, overrides, helm_rules.KUBERNETES_VERSION)]
    fail_on(findings)


def test_default_components_rendered(chart_renders: dict[str, helm_rules.ChartRender]) -> None:
    """With default values the chart deploys every component of the matrix as its workload kind."""
    render = chart_renders["defaults"]
    workloads = {
        ((doc.get("metadata") or {}).get("labels") or {}).get(helm_rules.COMPONENT): doc.get("kind")
        for doc in render.manifests if doc.get("kind") in helm_rules.LONG_RUNNING
    }
    fail_on(
        Violation(f"chart [defaults] component '{name}'", "components", f"rendered as {workloads.get(name) or 'nothing'}, expected {kind}")
        for name, kind in _MATRIX["helm"]["components"].items() if workloads.get(name) != kind
    )


def test_services_discoverable(chart_renders: dict[str, helm_rules.ChartRender]) -> None:
    """Every Service carries the swarm.io annotations the plugin's catalog reads."""
    render = chart_renders["everything-on"]
    catalog = Catalog.from_manifests(render.manifests)
    services = [doc for doc in render.manifests if doc.get("kind") == "Service"]
    fail_on(
        Violation(f"chart [everything-on] Service/{doc['metadata']['name']}", "discoverable", "no swarm.io/kind annotation")
        for doc in services if not (doc["metadata"].get("annotations") or {}).get("swarm.io/kind")
    )
    assert catalog.of_kind("llm"), "no Service of kind llm in the chart"


@pytest.mark.parametrize("rule", CHART_RULES, ids=[rule.name for rule in CHART_RULES])
def test_chart_rule(rule: Any, chart_renders: dict[str, helm_rules.ChartRender]) -> None:
    """One rule over every variant's manifests."""
    fail_on(violation for render in chart_renders.values() for violation in rule.check(render))


@pytest.mark.parametrize("rule", helm_values_rules.RULES, ids=[rule.name for rule in helm_values_rules.RULES])
def test_chart_values_rule(rule: Any, chart_values: helm_values_rules.ChartValues) -> None:
    """One rule over the chart's values as a whole: the schema closed, every value read."""
    fail_on(rule.check(chart_values))
