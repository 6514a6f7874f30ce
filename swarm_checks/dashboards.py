"""Grafana dashboards held to what the stack exports: every metric a panel's PromQL names must
be a series some service's /metrics really declares.

A dashboard that queries a renamed or never-exported series shows "No data" forever and nobody
notices until an incident; comparing its queries with the live expositions (not with a list
written by hand, which drifts the same way) catches it. The queries are parsed with
`promql-parser` (a real PromQL grammar, so a syntax error is found too) and the expositions with
`prometheus_client.parser`; both come with the `clients` extra and are imported on first use, so
that `import swarm_checks` needs neither.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from swarm_checks.errors import SwarmError

# Grafana's built-in interval variables, which stand where PromQL wants a duration ([5m]); any
# other variable belongs inside a label value ("$model"), where the parser keeps it as text.
_DURATION_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_NUMBER_VARIABLES = {"__interval_ms": "60000", "__range_ms": "3600000", "__range_s": "3600"}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")
# A templating query of Grafana's Prometheus data source: label_values(<selector>, <label>).
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\s*\)\s*$", re.S)
# The series a `# TYPE name kind` line declares besides `name` itself (text format 0.0.4, OpenMetrics).
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
             "summary": ("", "_sum", "_count"), "info": ("_info",)}
_SAMPLE_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_FAMILY_SUFFIX = re.compile(r"(_bucket|_sum|_count|_total|_created|_info)$")


class DashboardError(SwarmError):
    """A dashboard file or an exposition that cannot be read at all (not JSON, not text format)."""


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL expression of a dashboard: a panel target's `expr` or a templating variable's
    query, the metric names it selects, or why it does not parse."""

    dashboard: str
    panel: str
    expr: str
    metrics: frozenset[str] = frozenset()
    error: str | None = None


@dataclass(frozen=True)
class DashboardFinding:
    """A query that cannot work against this stack: it names `metric`, which no /metrics
    declares, or (metric None) it does not parse."""

    dashboard: str
    panel: str
    expr: str
    metric: str | None
    problem: str

    def __str__(self) -> str:
        what = f"metric {self.metric!r} {self.problem}" if self.metric else self.problem
        return f"dashboard {self.dashboard!r} panel {self.panel!r}: {what} (query: {_one_line(self.expr)})"


def _one_line(expr: str, limit: int = 160) -> str:
    text = " ".join(expr.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _promql() -> Any:
    try:
        import promql_parser
    except ImportError:
        raise SwarmError("promql-parser is not installed: pip install 'swarm-checks[clients]' (or [k8s])") from None
    return promql_parser


def load_dashboard(path: Path) -> dict[str, Any]:
    """One dashboard file as JSON; a file that is not a JSON object is one clear line."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise DashboardError(f"dashboard {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DashboardError(f"dashboard {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("panels"), list):
        raise DashboardError(f"dashboard {path} is not a Grafana dashboard (no 'panels' list)")
    return document


def load_dashboards(directory: Path) -> dict[str, dict[str, Any]]:
    """Every `*.json` dashboard of a directory by file name, sorted; none at all is an error
    (a check over no dashboard would pass by checking nothing)."""
    files = sorted(directory.glob("*.json"))
    if not files:
        raise DashboardError(f"no dashboard (*.json) in {directory}")
    return {path.name: load_dashboard(path) for path in files}


def _substituted(expr: str) -> str:
    """The expression with Grafana's interval variables replaced outside quoted label values,
    so that the PromQL parser sees what Prometheus will be sent."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return _DURATION_VARIABLES.get(name) or _NUMBER_VARIABLES.get(name) or match.group(0)

    pieces, last = [], 0
    for quoted in _QUOTED.finditer(expr):
        pieces += [_VARIABLE.sub(replace, expr[last:quoted.start()]), quoted.group(0)]
        last = quoted.end()
    pieces.append(_VARIABLE.sub(replace, expr[last:]))
    return "".join(pieces)


def metric_names(expr: str) -> frozenset[str]:
    """The metric names a PromQL expression selects (`name{...}` and `{__name__="name"}`);
    raises ValueError with the parser's message when it does not parse."""
    promql = _promql()
    text = _substituted(expr)
    label_values = _LABEL_VALUES.match(text)
    if label_values:
        text = label_values.group("selector")
    tree = promql.parse(text)
    names: set[str] = set()

    def visit(node: Any) -> None:
        selector = node.vector_selector if isinstance(node, promql.MatrixSelector) else node
        if isinstance(selector, promql.VectorSelector):
            if selector.name:
                names.add(selector.name)
            names.update(m.value for m in selector.matchers.matchers if m.name == "__name__" and m.op == promql.MatchOp.Equal)

    promql.walk(tree, visit)
    return frozenset(names)


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # a collapsed row holds its panels


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every PromQL expression of a dashboard: each panel target's `expr` (rows included) and
    each templating variable's query, with the metrics it selects or its parse error."""
    title = str(dashboard.get("title") or dashboard.get("uid") or "untitled")
    sources: list[tuple[str, str]] = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if isinstance(target, Mapping) and str(target.get("expr") or "").strip():
                sources.append((str(panel.get("title") or f"id {panel.get('id')}"), str(target["expr"])))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        query = variable.get("query")
        query = query.get("query") if isinstance(query, Mapping) else query
        if variable.get("type") == "query" and isinstance(query, str) and query.strip():
            sources.append((f"variable ${variable.get('name')}", query))
    queries = []
    for panel, expr in sources:
        try:
            queries.append(PanelQuery(title, panel, expr, metric_names(expr)))
        except ValueError as error:
            queries.append(PanelQuery(title, panel, expr, error=str(error)))
    return queries


def exported_metric_names(exposition: str, source: str = "/metrics") -> frozenset[str]:
    """Every series name a Prometheus text exposition declares, as PromQL selects it.

    `prometheus_client.parser` checks the format; the names are read as written, because the
    parser renames a counter's samples to `x_total`, while Prometheus stores a text-format
    counter under the name its exporter wrote. A family counts from its `# TYPE` line even before
    it has samples (a labelled counter before its first event), with the series its type implies:
    a histogram `x` is `x_bucket`, `x_sum` and `x_count`, a summary adds `x_sum` and `x_count`."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        raise SwarmError("prometheus-client is not installed: pip install 'swarm-checks[clients]'") from None
    try:
        for _ in text_string_to_metric_families(exposition):
            pass
    except ValueError as error:
        raise DashboardError(f"{source} is not in Prometheus text format: {error}") from None
    openmetrics = exposition.rstrip().endswith("# EOF")
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = (line.split() + [""])[:4]
            # OpenMetrics names a counter family without the suffix its samples carry.
            names.update(name + suffix for suffix in (("_total",) if kind == "counter" and openmetrics else _SUFFIXES.get(kind, ("",))))
        elif line.strip() and not line.startswith("#"):
            sample = _SAMPLE_NAME.match(line)
            if sample:
                names.add(sample.group(0))
    return frozenset(names)


def family_of(metric: str) -> str:
    """The metric family a series name belongs to (`x_bucket` -> `x`, `x_total` -> `x`)."""
    return _FAMILY_SUFFIX.sub("", metric)


def _hint(metric: str, known: frozenset[str]) -> str:
    """What the exporter has under a near name: the family as another type, or its series."""
    family = family_of(metric)
    if family != metric and family in known:
        return f" (family {family!r} is exported, but not as this series)"
    series = [metric + suffix for suffix in ("_bucket", "_total") if metric + suffix in known]
    return f" (did you mean {series[0]!r}?)" if series else ""


def missing_metrics(dashboard: Mapping[str, Any], exported: Iterable[str]) -> list[DashboardFinding]:
    """The queries of a dashboard that cannot work against an exporter set: each metric name no
    exposition declares, and each query that does not parse. Empty when every query is sound."""
    known = frozenset(exported)
    findings = []
    for query in dashboard_queries(dashboard):
        if query.error is not None:
            findings.append(DashboardFinding(query.dashboard, query.panel, query.expr, None,
                                             f"query does not parse as PromQL: {query.error}"))
            continue
        for metric in sorted(query.metrics - known):
            findings.append(DashboardFinding(query.dashboard, query.panel, query.expr, metric,
                                             f"is not exported{_hint(metric, known)}"))
    return findings
