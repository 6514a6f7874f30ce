"""Health: the Grafana dashboards the chart ships (helm/dashboards) query only series the live
stack exports. The names come from the engine's, the proxy's and the Ray head's own /metrics,
scraped here, not from a list written by hand: a renamed series in a new vLLM or Ray fails this
test instead of leaving a panel at "No data".

Some series exist only once there is work (Ray's task and actor gauges, labelled counters), so
the test first runs a Ray job with a task and an actor and sends a chat, then scrapes until the
dashboards are satisfied or SETTLE_SECONDS pass (Ray's agents report every few seconds). A metric
whose exporter is not deployed (its namespace, `vllm:`/`http_`, `proxy_` or `ray_`, belongs to a kind of
service the deployment lacks) skips, naming the service and how to deploy it; everything else that
is missing fails, naming dashboard, panel and metric.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Mapping

import httpx
import pytest
from openai import OpenAI

from swarm_checks import Catalog, DashboardFinding, Endpoint, SwarmError, SwarmSettings, exported_metric_names, load_dashboards, missing_metrics
from swarm_checks.contracts import services

# The kinds of service whose /metrics the dashboards read (vLLM and any other LLM engine, the proxy,
# the Ray head's metrics agent): where to look, not what to find.
SOURCES = ("llm", "proxy", "ray-head")
# Which kind of service exports each metric namespace the dashboards use: a missing series skips
# only when its exporter is not deployed; any other missing series (a typo'd namespace included) fails.
EXPORTER_OF = {"vllm:": "llm", "http_": "llm", "proxy_": "proxy", "ray_": "ray-head"}  # http_: vLLM's API server
SETTLE_SECONDS = 90.0
_NAMESPACE = re.compile(r"^[A-Za-z]+[_:]")
# Work for Ray's task and actor series; the job stays up (the actor alive) until the test stops it.
RAY_WORK = '''
import time, ray
ray.init()

@ray.remote(num_cpus=0)
def task():
    return 1

@ray.remote(num_cpus=0)
class Actor:
    def ping(self):
        return 1

actor = Actor.remote()
print("SWARM_RESULT", ray.get([task.remote(), actor.ping.remote()]), flush=True)
time.sleep(300)
'''


def _namespace(metric: str) -> str:
    match = _NAMESPACE.match(metric)
    return match.group(0) if match else metric


def _scrape(endpoint: Endpoint) -> frozenset[str]:
    url = endpoint.metrics_url
    try:
        response = httpx.get(url, timeout=15)
        response.raise_for_status()
        return exported_metric_names(response.text, f"{endpoint.service} {url}")
    except httpx.HTTPError as error:
        hint = "" if "metrics_url" in endpoint.extra else (
            "; metrics on a port of their own are named by the label swarm.metrics-port (Compose) or extra metrics_url (endpoints file)")
        pytest.fail(f"{endpoint.service}: GET {url} failed: {type(error).__name__}: {error}{hint}", pytrace=False)
    except SwarmError as error:
        pytest.fail(str(error), pytrace=False)


def _one_chat(swarm_catalog: Catalog, swarm_endpoint: Callable[[str], Endpoint]) -> bool:
    """One short chat, through the proxy when it is deployed (so that its series and the engine's
    both have samples), else to the primary engine; False when there is no engine to ask."""
    engine = swarm_catalog.primary_llm()
    if engine is None:
        return False
    model = swarm_endpoint(engine.name).model or ""
    proxies = swarm_catalog.of_kind("proxy")
    via = swarm_endpoint(proxies[0].name) if proxies else swarm_endpoint(engine.name)
    client = OpenAI(base_url=via.openai_base_url, api_key=via.api_key or "not-needed", timeout=120, max_retries=0)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=2, temperature=0)
    return True


def _ray_work(jobs: services.RayJobs) -> None:
    """Run RAY_WORK and wait until its task and actor answered (the job then sleeps)."""
    submission_id = jobs.submit(RAY_WORK)
    deadline = time.monotonic() + services.JOB_SECONDS
    while time.monotonic() < deadline:
        status, logs = jobs.status(submission_id), jobs.logs(submission_id)
        if "SWARM_RESULT" in logs:
            return
        if status in services.FINAL:
            pytest.fail(f"the Ray job for the task and actor series ended {status}; its log:\n{logs[-2000:]}", pytrace=False)
        time.sleep(1.0)
    pytest.fail(f"the Ray job for the task and actor series did not run within {services.JOB_SECONDS:g} s", pytrace=False)


def _judge(dashboards: Mapping[str, Any], scraped: Mapping[str, frozenset[str]],
           absent: Mapping[str, str]) -> tuple[list[DashboardFinding], list[DashboardFinding]]:
    """(failures, unattributed): a missing metric is unattributed when the kind of service that
    exports its namespace (EXPORTER_OF) is not deployed."""
    exported = frozenset().union(*scraped.values())
    findings = [f for doc in dashboards.values() for f in missing_metrics(doc, exported)]
    unattributed = [f for f in findings if f.metric and EXPORTER_OF.get(_namespace(f.metric)) in absent]
    return [f for f in findings if f not in unattributed], unattributed


def test_every_dashboard_query_names_an_exported_series(swarm_settings: SwarmSettings, swarm_catalog: Catalog,
                                                        swarm_endpoint: Callable[[str], Endpoint]) -> None:
    try:
        dashboards = load_dashboards(swarm_settings.chart / "dashboards")
    except SwarmError as error:
        pytest.fail(str(error), pytrace=False)
    absent = {kind: swarm_catalog.why_none_of_kind(kind) for kind in SOURCES if not swarm_catalog.of_kind(kind)}
    endpoints = [swarm_endpoint(service.name) for kind in SOURCES for service in swarm_catalog.of_kind(kind)]
    heads = [e for e in endpoints if e.kind == "ray-head"]
    jobs = services.RayJobs(heads[0].root_url) if heads else None
    try:
        if jobs is not None:
            _ray_work(jobs)
        chatted = _one_chat(swarm_catalog, swarm_endpoint)
        # Retry only while the work just done may still be on its way into an exposition.
        deadline = time.monotonic() + (SETTLE_SECONDS if jobs is not None or chatted else 0.0)
        while True:
            scraped = {endpoint.service: _scrape(endpoint) for endpoint in endpoints}
            failures, unattributed = _judge(dashboards, scraped, absent)
            if not failures or time.monotonic() > deadline:
                break
            time.sleep(5.0)
    finally:
        if jobs is not None:
            jobs.cleanup()
    where = ", ".join(f"{name} ({len(names)} series)" for name, names in scraped.items())
    assert not failures, (f"{len(failures)} dashboard quer{'y' if len(failures) == 1 else 'ies'} name what the stack does not export "
                          f"(scraped: {where}):\n" + "\n".join(f"  {f}" for f in failures))
    if unattributed:
        by_namespace: dict[str, set[str]] = {}
        for finding in unattributed:
            by_namespace.setdefault(_namespace(finding.metric or ""), set()).add(finding.metric or "")
        counts = ", ".join(f"{len(names)} {namespace}*" for namespace, names in sorted(by_namespace.items()))
        pytest.skip(f"the dashboards' series {counts} are exported by none of {where or 'no service'}; "
                    f"their exporter is not deployed: {'; '.join(absent.values())}")
