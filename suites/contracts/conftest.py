"""Fixtures of the contract suite: the endpoints under contract, their features, the budget of
generated examples, and what the assets promise each service.

Every OpenAI-compatible service the assets define (kind `llm`: the primary engine, the large
model; kind `proxy`) gets its own test ids, so the report names each, and one that is not
deployed skips with the reason the plugin gives (which service, how to deploy it).
"""
from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import pytest

from swarm_checks import Catalog, Endpoint, SwarmError, SwarmSettings, Target, deployment_catalog, fail, static
from swarm_checks.contracts import Budget, Client, Features, OpenAIApi, assets, discover_features, parse_examples
from swarm_checks.contracts.known_defects import logprobs_defect

SEED = pytest.StashKey[int]()
OPENAI_KINDS = ("llm", "proxy")


def pytest_configure(config: pytest.Config) -> None:
    """One seed for the session: --hypothesis-seed when given, else a fresh one (printed)."""
    given = config.getoption("hypothesis_seed", None)
    config.stash[SEED] = int(given) if given not in (None, "") and str(given).isdigit() else random.randrange(2**32)


def pytest_report_header(config: pytest.Config) -> str:
    return (f"contracts: hypothesis seed {config.stash[SEED]} (reproduce with --hypothesis-seed={config.stash[SEED]}), "
            "no example database")


def _services_of(config: pytest.Config, kinds: tuple[str, ...]) -> list[str]:
    try:
        catalog = deployment_catalog(config)
    except (SwarmError, pytest.UsageError) as error:
        raise pytest.UsageError(f"swarm: cannot read the services of the deployment: {error}") from None
    return sorted(name for name, service in catalog.services.items() if service.kind in kinds)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """openai_service: every OpenAI-compatible service; llm_service: every engine."""
    if "openai_service" in metafunc.fixturenames:
        metafunc.parametrize("openai_service", _services_of(metafunc.config, OPENAI_KINDS))
    if "llm_service" in metafunc.fixturenames:
        metafunc.parametrize("llm_service", _services_of(metafunc.config, ("llm",)))


@pytest.fixture(scope="session")
def contract_budget(swarm_settings: SwarmSettings, pytestconfig: pytest.Config) -> Budget:
    try:
        examples = parse_examples(swarm_settings.contract_examples)
    except ValueError as error:
        fail(str(error))
    return Budget(examples=examples, seed=pytestconfig.stash.get(SEED, None) or random.randrange(2**32))


@pytest.fixture(scope="session")
def rendered_assets(swarm_settings: SwarmSettings) -> dict[str, Any]:
    """The Compose file rendered with the run's env files and every profile."""
    try:
        return static.render_compose_config(swarm_settings.compose_file, swarm_settings.compose_env_files(), ["*"])
    except SwarmError as error:
        fail(str(error))


@pytest.fixture(scope="session")
def service_assets(rendered_assets: dict[str, Any]) -> Callable[[str], assets.ServiceAssets]:
    def lookup(name: str) -> assets.ServiceAssets:
        found = assets.service_assets(rendered_assets, name)
        if found is None:
            fail(f"service {name!r} is not in the Compose file: the contract cannot say what it promises")
        return found
    return lookup


@pytest.fixture(scope="session")
def _features_cache() -> dict[str, Features]:
    return {}


def _engine_of(service: str, catalog: Catalog) -> str | None:
    """The engine answering for an OpenAI service: itself, or for the proxy the primary slot."""
    if catalog.services[service].kind == "llm":
        return service
    primary = catalog.primary_llm()
    return primary.name if primary else None


@pytest.fixture
def openai_api(openai_service: str, swarm_catalog: Catalog, swarm_endpoint: Callable[[str], Endpoint],
               swarm_target: Target, _features_cache: dict[str, Features]) -> Iterator[OpenAIApi]:
    endpoint = swarm_endpoint(openai_service)
    engine = _engine_of(openai_service, swarm_catalog)
    model = endpoint.model or (swarm_catalog.services[engine].model if engine else None)
    if not model:
        pytest.skip(f"{openai_service}: no model to ask for (no primary LLM is deployed behind it)")
    if openai_service not in _features_cache:
        with Client(endpoint.openai_base_url, endpoint.api_key) as client:
            blocked = logprobs_defect(swarm_target, engine) if engine else None
            _features_cache[openai_service] = discover_features(client, model, blocked)
    api = OpenAIApi(openai_service, Client(endpoint.openai_base_url, endpoint.api_key), model,
                    _features_cache[openai_service])
    try:
        yield api
    finally:
        api.client.close()


@pytest.fixture
def engine_and_proxy(swarm_catalog: Catalog, swarm_endpoint: Callable[[str], Endpoint], swarm_target: Target,
                     _features_cache: dict[str, Features]) -> Iterator[tuple[Client, Client, Features]]:
    """The primary engine and the proxy in front of it, for the same request to both."""
    proxies = swarm_catalog.of_kind("proxy")
    if not proxies:
        pytest.skip(swarm_catalog.why_none_of_kind("proxy"))
    primary = swarm_catalog.primary_llm()
    if primary is None:
        pytest.skip(swarm_catalog.why_none_of_kind("llm"))
    engine_endpoint, proxy_endpoint = swarm_endpoint(primary.name), swarm_endpoint(proxies[0].name)
    engine = Client(engine_endpoint.openai_base_url, engine_endpoint.api_key)
    proxy = Client(proxy_endpoint.openai_base_url, proxy_endpoint.api_key)
    model = engine_endpoint.model or primary.model or ""
    if primary.name not in _features_cache:
        _features_cache[primary.name] = discover_features(engine, model, logprobs_defect(swarm_target, primary.name))
    try:
        yield engine, proxy, _features_cache[primary.name]
    finally:
        engine.close()
        proxy.close()
