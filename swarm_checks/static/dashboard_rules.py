"""Rules for the Grafana dashboards the chart ships (helm/dashboards/*.json), checked with no
Grafana and no Prometheus: each file is a dashboard Grafana imports into any installation
(stable uid, the data source as a variable, PromQL that parses), and the chart hands every one to
Grafana's sidecar when monitoring.grafana.dashboards.enabled.

Whether the metrics they name exist is the live check's (suites/health/test_dashboards.py): only
a running stack knows what it exports.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from swarm_checks.dashboards import DashboardError, dashboard_queries, load_dashboard
from swarm_checks.static.helm_rules import ChartRender
from swarm_checks.static.rule import Rule, Violation

DASHBOARD_DIR = "dashboards"
DATASOURCE = "${datasource}"
# Grafana 11's dashboard schema; an older one is migrated on import, silently changing panels.
MIN_SCHEMA_VERSION = 39
_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class DashboardAssets:
    """The chart's dashboard files (name -> JSON, or why it is not a dashboard) and its renders."""

    directory: Path
    dashboards: Mapping[str, Mapping[str, Any]]
    unreadable: Mapping[str, str] = field(default_factory=dict)
    renders: Mapping[str, ChartRender] = field(default_factory=dict)


def load_assets(chart: Path, renders: Mapping[str, ChartRender]) -> DashboardAssets:
    directory = chart / DASHBOARD_DIR
    dashboards: dict[str, Mapping[str, Any]] = {}
    unreadable: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            dashboards[path.name] = load_dashboard(path)
        except DashboardError as error:
            unreadable[path.name] = str(error)
    return DashboardAssets(directory, dashboards, unreadable, renders)


def _obj(name: str, panel: str | None = None) -> str:
    return f"dashboard {name}" + (f" panel {panel!r}" if panel else "")


def _panels(panels: Any) -> Iterator[Mapping[str, Any]]:
    for panel in panels or []:
        if isinstance(panel, Mapping):
            yield panel
            yield from _panels(panel.get("panels"))


def check_readable(assets: DashboardAssets) -> Iterator[Violation]:
    """There are dashboards, and each file is one (a JSON object with a panels list)."""
    if not assets.dashboards and not assets.unreadable:
        yield Violation(f"chart dashboards {assets.directory}", "dashboard-files", "no dashboard (*.json) to ship")
    for name, problem in assets.unreadable.items():
        yield Violation(_obj(name), "dashboard-files", problem)


def check_identity(assets: DashboardAssets) -> Iterator[Violation]:
    """A stable uid (links and provisioning find the dashboard by it), unique across files, a
    title, and a current schemaVersion."""
    seen: dict[str, str] = {}
    for name, doc in assets.dashboards.items():
        uid = doc.get("uid")
        if not isinstance(uid, str) or not _UID.match(uid):
            yield Violation(_obj(name), "dashboard-identity", f"uid {uid!r} is not a stable uid (1-40 of A-Z a-z 0-9 - _)")
        elif uid in seen:
            yield Violation(_obj(name), "dashboard-identity", f"uid {uid!r} is also the uid of {seen[uid]}")
        else:
            seen[uid] = name
        if not str(doc.get("title") or "").strip():
            yield Violation(_obj(name), "dashboard-identity", "no title")
        version = doc.get("schemaVersion")
        if not isinstance(version, int) or version < MIN_SCHEMA_VERSION:
            yield Violation(_obj(name), "dashboard-identity", f"schemaVersion {version!r} is older than {MIN_SCHEMA_VERSION}")


def _uid_of(datasource: Any) -> Any:
    return datasource.get("uid") if isinstance(datasource, Mapping) else datasource


def check_datasource(assets: DashboardAssets) -> Iterator[Violation]:
    """The Prometheus data source is a dashboard variable, `${datasource}`, in every panel and
    query: a hard-coded uid exists only in the Grafana it was exported from."""
    for name, doc in assets.dashboards.items():
        variables = (doc.get("templating") or {}).get("list") or []
        if not any(v.get("name") == "datasource" and v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
            yield Violation(_obj(name), "dashboard-datasource", "no variable 'datasource' of type datasource querying prometheus")
        for variable in variables:
            if variable.get("type") == "query" and _uid_of(variable.get("datasource")) != DATASOURCE:
                yield Violation(_obj(name, f"variable ${variable.get('name')}"), "dashboard-datasource",
                                f"queries data source {_uid_of(variable.get('datasource'))!r}, not {DATASOURCE}")
        for panel in _panels(doc.get("panels")):
            if panel.get("type") == "row":
                continue
            title = str(panel.get("title") or f"id {panel.get('id')}")
            for where, datasource in [("panel", panel.get("datasource")), *(("query " + str(t.get("refId")), t.get("datasource"))
                                                                            for t in panel.get("targets") or [])]:
                if _uid_of(datasource) != DATASOURCE:
                    yield Violation(_obj(name, title), "dashboard-datasource", f"{where} uses data source {_uid_of(datasource)!r}, not {DATASOURCE}")


def check_promql(assets: DashboardAssets) -> Iterator[Violation]:
    """Every query parses as PromQL and selects at least one metric by name, so that the live
    check can hold it to what the stack exports."""
    for name, doc in assets.dashboards.items():
        queries = dashboard_queries(doc)
        if not queries:
            yield Violation(_obj(name), "dashboard-promql", "no PromQL query in any panel")
        for query in queries:
            if query.error is not None:
                yield Violation(_obj(name, query.panel), "dashboard-promql", f"does not parse as PromQL: {query.error}")
            elif not query.metrics:
                yield Violation(_obj(name, query.panel), "dashboard-promql", f"selects no metric by name: {' '.join(query.expr.split())}")


def check_configmaps(assets: DashboardAssets) -> Iterator[Violation]:
    """In every render with monitoring.grafana.dashboards.enabled, each dashboard file is in one
    ConfigMap carrying the sidecar's label (monitoring.grafana.dashboards.label/labelValue), with
    the file's content unchanged; with it off, no dashboard ConfigMap is rendered."""
    for render in assets.renders.values():
        settings = render.get("monitoring.grafana.dashboards") or {}
        label, value = settings.get("label"), settings.get("labelValue")
        shipped: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for doc in render.manifests:
            if doc.get("kind") != "ConfigMap":
                continue
            meta = doc.get("metadata") or {}
            for key, text in (doc.get("data") or {}).items():
                if key in assets.dashboards or key in assets.unreadable:
                    shipped.setdefault(key, []).append((f"ConfigMap/{meta.get('name')}", meta.get("labels") or {}))
                    if key in assets.dashboards and _json(text) != assets.dashboards[key]:
                        yield Violation(f"chart [{render.variant}] ConfigMap/{meta.get('name')}", "dashboard-configmaps",
                                        f"{key} differs from helm/{DASHBOARD_DIR}/{key}")
        for name in assets.dashboards:
            found = shipped.get(name, [])
            if not settings.get("enabled"):
                for obj, _ in found:
                    yield Violation(f"chart [{render.variant}] {obj}", "dashboard-configmaps", f"ships {name} with monitoring.grafana.dashboards.enabled off")
            elif len(found) != 1:
                yield Violation(f"chart [{render.variant}] dashboard {name}", "dashboard-configmaps",
                                f"in {len(found)} ConfigMaps, expected exactly one")
            elif found[0][1].get(label) != value:
                yield Violation(f"chart [{render.variant}] {found[0][0]}", "dashboard-configmaps",
                                f"label {label}={found[0][1].get(label)!r}, the sidecar looks for {label}={value!r}")


def _json(text: Any) -> Any:
    try:
        return json.loads(str(text))
    except json.JSONDecodeError:
        return None


RULES: list[Rule[DashboardAssets]] = [
    Rule("dashboard-files", "every file of helm/dashboards is a Grafana dashboard, and there is one", check_readable),
    Rule("dashboard-identity", "a stable unique uid, a title and a current schemaVersion", check_identity),
    Rule("dashboard-datasource", "the Prometheus data source is the ${datasource} variable everywhere", check_datasource),
    Rule("dashboard-promql", "every query parses as PromQL and selects a metric by name", check_promql),
    Rule("dashboard-configmaps", "with dashboards on, one sidecar-labelled ConfigMap per file, holding it unchanged", check_configmaps),
]
