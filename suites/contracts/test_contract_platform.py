"""Ray's Jobs API, vLLM's own endpoints, Langfuse's public API, Open WebUI and Langflow."""
from __future__ import annotations

from typing import Callable

import pytest

from swarm_checks import Catalog, Endpoint
from swarm_checks.contracts import Budget, assets, run_property, services, strategies
from swarm_checks.load import server_metrics

EndpointOfKind = Callable[[str], Endpoint]
ServiceAssets = Callable[[str], assets.ServiceAssets]


def test_ray_head_and_workers_run_the_pinned_versions(endpoint_of_kind: EndpointOfKind, swarm_catalog: Catalog,
                                                      service_assets: ServiceAssets) -> None:
    head = endpoint_of_kind("ray-head")
    if not swarm_catalog.of_kind("ray-worker"):
        pytest.skip(swarm_catalog.why_none_of_kind("ray-worker"))
    nodes = services.check_ray_versions(head.root_url, service_assets(head.service).version)
    for worker in swarm_catalog.of_kind("ray-worker"):
        pinned = service_assets(worker.name).version
        assert pinned is None or assets.version_matches(pinned, nodes[0]["ray"]), \
            f"the workers run Ray {nodes[0]['ray']}, {worker.name}'s image pins {pinned}"


def test_ray_jobs_submit_run_log_and_stop(endpoint_of_kind: EndpointOfKind) -> None:
    services.check_ray_job_lifecycle(endpoint_of_kind("ray-head").root_url)


def _vllm(llm_service: str, swarm_endpoint: Callable[[str], Endpoint]) -> Endpoint:
    endpoint = swarm_endpoint(llm_service)
    if endpoint.extra.get("engine", "vllm") != "vllm":
        pytest.skip(f"{llm_service} is served by {endpoint.extra.get('engine')}, not vLLM")
    return endpoint


def test_vllm_reports_the_pinned_version(llm_service: str, swarm_endpoint: Callable[[str], Endpoint],
                                         service_assets: ServiceAssets) -> None:
    engine = _vllm(llm_service, swarm_endpoint)
    services.check_vllm_version(engine.root_url, service_assets(llm_service).version)


def test_vllm_exposes_the_metrics_the_suites_read(llm_service: str, swarm_endpoint: Callable[[str], Endpoint]) -> None:
    engine = _vllm(llm_service, swarm_endpoint)
    vllm_only = {what: tuple(n for n in names if n.startswith("vllm:")) for what, names in
                 (("generated", server_metrics.GENERATED), ("prompt", server_metrics.PROMPT),
                  ("kv-cache", server_metrics.KV_CACHE))}
    services.check_vllm_metrics(engine.root_url, engine.model or "", vllm_only)


def test_vllm_tokenize_and_detokenize_round_trip(llm_service: str, swarm_endpoint: Callable[[str], Endpoint],
                                                 contract_budget: Budget) -> None:
    engine = _vllm(llm_service, swarm_endpoint)
    run_property("tokenize_roundtrip", strategies.tokenizable_text(),
                 services.tokenize_roundtrip(engine.root_url, engine.model or ""), contract_budget,
                 explicit=["Hello, world!", "Grüße aus Köln 🙂\n\ttabs"])


def test_langfuse_public_api_and_ingestion(endpoint_of_kind: EndpointOfKind) -> None:
    langfuse = endpoint_of_kind("langfuse-web")
    services.check_langfuse(langfuse.root_url, langfuse.username, langfuse.api_key, langfuse.extra.get("project_id"))


def test_open_webui_is_healthy_and_requires_auth(endpoint_of_kind: EndpointOfKind) -> None:
    services.check_open_webui(endpoint_of_kind("open-webui").root_url)


def test_langflow_is_healthy_and_requires_auth(endpoint_of_kind: EndpointOfKind) -> None:
    services.check_langflow(endpoint_of_kind("langflow").root_url)
