"""The dashboard check (swarm_checks.dashboards) on known inputs: a query naming a series no
exposition declares fails with dashboard, panel and metric named, a sound one passes, histogram
and counter series map to their families, and a query that does not parse says so. Then the live
test of suites/health, run for real against the proxy's real /metrics, failing on a broken
dashboard and skipping what no deployed service could export."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from swarm_checks import SwarmError, dashboard_queries, exported_metric_names, load_dashboards, missing_metrics
from swarm_checks.dashboards import DashboardError, metric_names
from tests.conftest import CHART_DIR, COMPOSE_DIR, REPO
from tests.docker_helpers import wait_http
from tests.live_parts import spawn_proxy

EXPOSITION = """\
# HELP app_requests_total Requests answered
# TYPE app_requests_total counter
app_requests_total{status="200"} 3.0
# HELP app_latency_seconds Time to answer
# TYPE app_latency_seconds histogram
# HELP app_queue Requests waiting
# TYPE app_queue gauge
app_queue 0.0
# HELP ray_tasks_finished Tasks finished
# TYPE ray_tasks_finished counter
ray_tasks_finished{State="FINISHED"} 2.0
"""


def _dashboard(*exprs: str, title: str = "App") -> dict[str, Any]:
    return {"uid": "app", "title": title, "schemaVersion": 41,
            "panels": [{"id": 1, "type": "row", "title": "Row", "panels": [
                {"id": i + 2, "type": "timeseries", "title": f"Panel {i}", "targets": [{"refId": "A", "expr": expr}]}
                for i, expr in enumerate(exprs)]}]}


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    return exported_metric_names(EXPOSITION)


def test_a_dashboard_naming_a_missing_metric_fails_with_dashboard_panel_and_metric(exported: frozenset[str]) -> None:
    findings = missing_metrics(_dashboard("sum(rate(app_requests_total[5m]))", "rate(app_errors_total[5m]) / rate(app_requests_total[5m])"),
                               exported)
    assert [str(f) for f in findings] == [
        "dashboard 'App' panel 'Panel 1': metric 'app_errors_total' is not exported "
        "(query: rate(app_errors_total[5m]) / rate(app_requests_total[5m]))"]
    assert (findings[0].dashboard, findings[0].panel, findings[0].metric) == ("App", "Panel 1", "app_errors_total")


def test_a_sound_dashboard_passes(exported: frozenset[str]) -> None:
    dashboard = _dashboard('sum by (status) (rate(app_requests_total{status=~"5.."}[$__rate_interval]))',
                           'max(app_queue{instance=~"$instance"})',
                           'count({__name__="app_queue"})')
    dashboard["templating"] = {"list": [{"name": "instance", "type": "query",
                                         "query": {"query": "label_values(app_queue, instance)"}}]}
    assert missing_metrics(dashboard, exported) == []
    assert {q.panel for q in dashboard_queries(dashboard)} == {"Panel 0", "Panel 1", "Panel 2", "variable $instance"}


def test_histogram_series_map_to_the_declared_family(exported: frozenset[str]) -> None:
    """A histogram declared by its # TYPE line (no sample yet) is its _bucket, _sum and _count
    series; the bare family name is not a series, nor is a gauge's _bucket."""
    ok = _dashboard("histogram_quantile(0.95, sum by (le) (rate(app_latency_seconds_bucket[5m])))",
                    "rate(app_latency_seconds_sum[5m]) / rate(app_latency_seconds_count[5m])")
    assert missing_metrics(ok, exported) == []
    findings = missing_metrics(_dashboard("rate(app_latency_seconds[5m])", "app_queue_bucket"), exported)
    assert [(f.metric, f.problem) for f in findings] == [
        ("app_latency_seconds", "is not exported (did you mean 'app_latency_seconds_bucket'?)"),
        ("app_queue_bucket", "is not exported (family 'app_queue' is exported, but not as this series)")]


def test_counters_are_the_names_their_exporter_wrote(exported: frozenset[str]) -> None:
    """prometheus_client's parser renames a counter sample to x_total; Prometheus stores the text
    format's name as written, so `ray_tasks_finished` exists and `ray_tasks_finished_total` not."""
    assert {"app_requests_total", "ray_tasks_finished"} <= exported
    assert "ray_tasks_finished_total" not in exported and "app_requests" not in exported
    openmetrics = exported_metric_names("# TYPE app_jobs counter\napp_jobs_total 1\n# EOF\n")
    assert "app_jobs_total" in openmetrics and "app_jobs" not in openmetrics


def test_an_unparseable_query_is_reported_clearly(exported: frozenset[str]) -> None:
    findings = missing_metrics(_dashboard("sum(rate(app_requests_total[5m])"), exported)
    assert len(findings) == 1 and findings[0].metric is None
    assert str(findings[0]).startswith("dashboard 'App' panel 'Panel 0': query does not parse as PromQL: ")
    assert "(query: sum(rate(app_requests_total[5m]))" in str(findings[0])


def test_grafana_variables_outside_label_values() -> None:
    """The interval variables stand where PromQL wants a duration; any other variable there does
    not parse (the parser's message says where), one inside a label value is text."""
    assert metric_names('rate(app_requests_total{job="$job"}[$__rate_interval])') == {"app_requests_total"}
    assert metric_names("rate(app_requests_total[${__interval}])") == {"app_requests_total"}
    with pytest.raises(ValueError):
        metric_names("rate(app_requests_total[$window])")


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DashboardError, match=r"^/metrics is not in Prometheus text format: "):
        exported_metric_names("app_queue{unclosed 1\n")
    (tmp_path / "broken.json").write_text("{\"panels\": [")
    with pytest.raises(DashboardError, match=r"broken.json is not valid JSON: "):
        load_dashboards(tmp_path)
    with pytest.raises(SwarmError, match=r"no dashboard \(\*\.json\) in "):
        load_dashboards(tmp_path / "nothing")


def test_the_shipped_dashboards_parse() -> None:
    """Every query of the chart's dashboards parses and selects a metric (the static suite's
    dashboard-promql rule checks the same; here without rendering the chart)."""
    dashboards = load_dashboards(CHART_DIR / "dashboards")
    assert len(dashboards) == 4
    for doc in dashboards.values():
        assert all(q.error is None and q.metrics for q in dashboard_queries(doc)), doc["title"]


# -- the live test of suites/health against the proxy's real /metrics ----------------------------

@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The proxy application as its image runs it, without Redis and with no upstream behind it:
    its /metrics is the real exposition, which is all the test reads."""
    key = f"sk-test-{uuid.uuid4().hex}"
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    env = {**os.environ, "PROXY_API_KEYS": key, "PROXY_ROUTES": "*=http://127.0.0.1:9/v1", "REDIS_URL": "", "OPENAI_API_KEY": ""}
    process, url = spawn_proxy(env, log)
    try:
        wait_http(url + "/health", 30)
        yield url + "/v1", key
    finally:
        process.terminate()
        process.wait(timeout=10)


def _run_live_test(pytester: pytest.Pytester, chart: Path, proxy: tuple[str, str]) -> pytest.RunResult:
    endpoints = pytester.path / "endpoints.yaml"
    endpoints.write_text(f"services:\n  proxy:\n    url: {proxy[0]}\n    api_key: {proxy[1]}\n")
    return pytester.runpytest_subprocess(
        str(REPO / "suites" / "health" / "test_dashboards.py"), "-p", "no:cacheprovider", "-rs", "--target=external",
        f"--endpoints={endpoints}", f"--compose-file={COMPOSE_DIR / 'docker-compose.yml'}", f"--chart={chart}")


def test_live_check_skips_what_no_deployed_service_exports(pytester: pytest.Pytester, proxy_url: tuple[str, str]) -> None:
    """Only the proxy deployed: its series are found, the engine's and Ray's cannot be, and the
    skip names the services and how to deploy them."""
    result = _run_live_test(pytester, CHART_DIR, proxy_url)
    result.assert_outcomes(skipped=1)
    output = result.stdout.str()
    assert "vllm:*" in output and "ray_*" in output and "proxy (" in output, output
    assert "no llm service is deployed" in output and "no ray-head service is deployed" in output, output
    assert "add it to the endpoints file" in output, output


def test_live_check_fails_on_a_series_the_proxy_does_not_export(pytester: pytest.Pytester, proxy_url: tuple[str, str],
                                                                tmp_path: Path) -> None:
    chart = tmp_path / "helm"
    shutil.copytree(CHART_DIR, chart)
    path = chart / "dashboards" / "errors-latency.json"
    doc = json.loads(path.read_text())
    panel = next(p for p in doc["panels"] if p.get("title") == "Rate-limited requests per second")
    panel["targets"][0]["expr"] = "sum by (limit) (rate(proxy_rate_limits_total[$__rate_interval]))"
    path.write_text(json.dumps(doc))
    result = _run_live_test(pytester, chart, proxy_url)
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert ("dashboard 'vLLM Swarm / Errors and latency' panel 'Rate-limited requests per second': "
            "metric 'proxy_rate_limits_total' is not exported") in output, output
    assert "Traceback" not in output


def test_live_check_fails_on_a_namespace_no_exporter_owns(pytester: pytest.Pytester, proxy_url: tuple[str, str],
                                                         tmp_path: Path) -> None:
    """A typo'd namespace is not blamed on the services that are not deployed: with the engine and
    Ray absent, `prxy_` still fails instead of skipping."""
    chart = tmp_path / "helm"
    shutil.copytree(CHART_DIR, chart)
    path = chart / "dashboards" / "errors-latency.json"
    doc = json.loads(path.read_text())
    panel = next(p for p in doc["panels"] if p.get("title") == "Rate-limited requests per second")
    panel["targets"][0]["expr"] = "sum(rate(prxy_requests_total[$__rate_interval]))"
    path.write_text(json.dumps(doc))
    result = _run_live_test(pytester, chart, proxy_url)
    result.assert_outcomes(failed=1)
    assert "metric 'prxy_requests_total' is not exported" in result.stdout.str(), result.stdout.str()
