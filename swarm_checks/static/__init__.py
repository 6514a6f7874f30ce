"""Static checks of the deployment assets: rules that need no container engine and no cluster.

Each rule returns `Violation`s naming the object and the rule, so that a failing check says
exactly what to fix. The suites in `suites/static` only run these rules and report; this module
is their public API (rules, the renderers they read, `fail_on`, the service matrix they hold the
assets to).
"""
from swarm_checks.compose_cli import render_config as render_compose_config
from swarm_checks.datafiles import service_matrix
from swarm_checks.helm_render import default_values as chart_default_values
from swarm_checks.helm_render import lint as lint_chart
from swarm_checks.static import compose_rules, dashboard_rules, helm_reference_rules, helm_rules, helm_upstream_rules, helm_values_rules, helm_vllm_rules
from swarm_checks.static.rule import Rule, Violation, fail_on, is_pinned

__all__ = ["Rule", "Violation", "chart_default_values", "compose_rules", "dashboard_rules", "fail_on", "helm_reference_rules", "helm_rules", "helm_upstream_rules", "helm_values_rules",
           "helm_vllm_rules",
           "is_pinned", "lint_chart", "render_compose_config", "service_matrix"]
