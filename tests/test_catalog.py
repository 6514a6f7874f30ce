"""The catalog is read from the assets themselves: real `docker compose config`, real chart."""
from __future__ import annotations

from pathlib import Path

from swarm_checks import helm_render
from swarm_checks.catalog import Catalog, load_compose_catalog
from swarm_checks.static.helm_rules import OFFLINE_SECRETS
from tests.conftest import CHART_DIR, COMPOSE_DIR, edit

ENV_EXAMPLE = COMPOSE_DIR / ".env.example"


def test_profiles_choose_the_deployed_services() -> None:
    catalog = load_compose_catalog(COMPOSE_DIR / "docker-compose.yml", [ENV_EXAMPLE], ["cpu", "proxy"])
    assert {"llm-cpu", "proxy", "redis", "ray-head", "ray-worker"} <= catalog.active
    assert "vllm-phi" not in catalog.active and "vllm-phi" in catalog.services
    assert [s.name for s in catalog.of_kind("llm")] == ["llm-cpu"]
    assert catalog.services["llm-cpu"].model == "smollm2-135m"
    assert catalog.services["redis"].port == 6379
    assert catalog.how_to_enable("vllm-phi") == "enable it with --profile gpu (Compose profile gpu)"
    assert "known services:" in catalog.how_to_enable("no-such-service")


def test_a_service_added_to_the_assets_is_discovered(asset_copy: Path) -> None:
    compose = asset_copy / "compose" / "docker-compose.yml"
    edit(compose, "\nnetworks:\n", "\n  search:\n    image: example/search:1.0\n    labels:\n      swarm.kind: search\n      swarm.port: \"7700\"\n\nnetworks:\n")
    catalog = load_compose_catalog(compose, [asset_copy / "compose" / ".env.example"], ["cpu"])
    assert "search" in catalog.active
    assert catalog.services["search"].kind == "search" and catalog.services["search"].port == 7700


def test_chart_services_are_discovered_from_annotations() -> None:
    manifests = helm_render.render(CHART_DIR, {"proxy": {"enabled": True}, **OFFLINE_SECRETS})
    catalog = Catalog.from_manifests(manifests, source="helm")
    assert catalog.services["vllm-phi"].kind == "llm"
    assert catalog.services["vllm-phi"].model == "phi-3.5-mini"
    assert catalog.services["proxy"].port == 8080
    assert {"redis", "postgresql", "clickhouse", "qdrant", "minio", "langfuse-web", "ray-head"} <= catalog.active


def test_switching_a_store_off_removes_it_from_the_chart_catalog() -> None:
    manifests = helm_render.render(CHART_DIR, {"redis": {"enabled": False, "external": {"host": "redis.example"}}, **OFFLINE_SECRETS})
    catalog = Catalog.from_manifests(manifests)
    assert "redis" not in catalog.active
    env = [e for doc in manifests if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "swarm-langfuse-web"
           for e in doc["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "REDIS_HOST"]
    assert env == [{"name": "REDIS_HOST", "value": "redis.example"}]

