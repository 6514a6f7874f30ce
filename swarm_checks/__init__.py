"""swarm_checks: the pytest plugin that proves a vLLM Local Swarm deployment works.

The plugin is registered through the ``pytest11`` entry point; its public surface (options,
fixtures, markers, hooks and the names below) is documented in README.md, section "Plugin
reference". Suites and users' conftest files import from here, `swarm_checks.load` and
`swarm_checks.static` only; everything else is internal and may move.
"""
from swarm_checks.catalog import Catalog, Service
from swarm_checks.dashboards import DashboardFinding, dashboard_queries, exported_metric_names, load_dashboards, missing_metrics
from swarm_checks.endpoint import Endpoint
from swarm_checks.errors import SwarmError, SwarmUsageError, TargetCapabilityError, fail
from swarm_checks.options import SwarmSettings
from swarm_checks.probes import GiveUp, Probe, default_probes, ray_alive_nodes
from swarm_checks.stash import deployment_catalog
from swarm_checks.targets.base import ExecResult, Target

__all__ = [
    "Catalog", "DashboardFinding", "Endpoint", "ExecResult", "GiveUp", "Probe", "Service", "SwarmError", "SwarmSettings",
    "SwarmUsageError", "Target", "TargetCapabilityError", "dashboard_queries", "default_probes", "deployment_catalog",
    "exported_metric_names", "fail", "load_dashboards", "missing_metrics", "ray_alive_nodes",
]
__version__ = "0.1.0"
