"""The proxy: its own OpenAPI document driven by schemathesis against the deployed proxy, and the
same requests sent to the engine and through the proxy (what the engine accepts the proxy
accepts; the engine's errors come through in shape)."""
from __future__ import annotations

import json
from typing import Callable

import pytest
from hypothesis import strategies as st

from swarm_checks import Endpoint
from swarm_checks.contracts import Budget, Client, Features, check_error, properties, proxy, run_property, strategies

# The operations README documents; each must be in the proxy's /openapi.json.
OPERATIONS = ["GET /health", "GET /ready", "GET /metrics", "GET /v1/models", "POST /v1/chat/completions",
              "POST /v1/completions", "POST /v1/embeddings"]


@pytest.fixture
def proxy_endpoint(endpoint_of_kind: Callable[[str], Endpoint]) -> Endpoint:
    return endpoint_of_kind("proxy")


@pytest.fixture(scope="session")
def _schemas() -> dict[str, object]:
    return {}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_proxy_holds_its_openapi_document(operation: str, proxy_endpoint: Endpoint,
                                          engine_and_proxy: tuple[Client, Client, Features],
                                          contract_budget: Budget, _schemas: dict[str, object]) -> None:
    """schemathesis generates valid and invalid requests for the operation; no 5xx, 4xx in
    OpenAI's shape, 200 answers hold the OpenAI contract."""
    engine, client, features = engine_and_proxy
    root = proxy_endpoint.root_url
    if root not in _schemas:
        _schemas[root] = proxy.load_schema(root)
    found = proxy.operations(_schemas[root])
    assert operation in found, f"{operation} is not in the proxy's /openapi.json ({sorted(found)})"
    # Embeddings are sent through only when the engine serves them (see the known-defect test).
    reach = operation != "POST /v1/embeddings" or _engine_embeds(engine, features.model)
    strategy = proxy.request_strategy(found[operation], features.model, features.max_tokens, reach)
    run_property("proxy_" + operation.split()[1].strip("/").replace("/", "_"), strategy,
                 proxy.schema_check(client, root, features.model), contract_budget)


def _engine_embeds(engine: Client, model: str) -> bool:
    return engine.post("/embeddings", {"model": model, "input": "x"}).status == 200


def test_proxy_accepts_what_the_engine_accepts(engine_and_proxy: tuple[Client, Client, Features],
                                               contract_budget: Budget) -> None:
    """Valid and invalid chat requests (streamed or not) to both: the same verdict."""
    engine, client, features = engine_and_proxy
    requests = st.one_of(strategies.chat_requests(features), strategies.chat_requests(features, stream=True),
                         strategies.invalid_chat_requests(features))
    run_property("proxy_parity_chat", requests, properties.parity_check(engine, client, "/chat/completions"),
                 contract_budget)


def test_proxy_accepts_what_the_engine_accepts_for_completions(engine_and_proxy: tuple[Client, Client, Features],
                                                               contract_budget: Budget) -> None:
    engine, client, features = engine_and_proxy
    requests = st.one_of(strategies.completion_requests(features), strategies.invalid_completion_requests(features))
    run_property("proxy_parity_completion", requests, properties.parity_check(engine, client, "/completions"),
                 contract_budget)


def test_proxy_refuses_a_wrong_key_in_openai_shape(proxy_endpoint: Endpoint,
                                                   engine_and_proxy: tuple[Client, Client, Features]) -> None:
    model = engine_and_proxy[2].model
    for key in (None, "sk-swarm-contract-wrong-key"):
        with Client(proxy_endpoint.openai_base_url, key) as client:
            exchange = client.post("/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert exchange.status == 401, exchange.describe()
        check_error(exchange.status, exchange.raw)


def test_proxy_errors_for_embeddings_are_openai_shaped(engine_and_proxy: tuple[Client, Client, Features]) -> None:
    """/v1/embeddings for a model whose engine serves no embeddings: a 4xx in OpenAI's shape."""
    engine, client, features = engine_and_proxy
    direct_status, direct, status, body = proxy.embeddings_answer(engine, client, features.model)
    if direct_status == 200:
        assert status == 200, f"the engine embeds, the proxy answers {status}: {body[:300]!r}"
        return
    if status == direct_status and body == direct and not _openai_shaped(body):
        pytest.xfail(f"known defect of the proxy: the engine has no /v1/embeddings route for {features.model} and "
                     f"answers {direct_status} {direct[:60]!r} (FastAPI's own 404, not OpenAI's error shape); the "
                     "proxy relays it as it is. Fix: compose/docker/proxy/swarm_proxy/errors.py (relayed_error) should wrap an upstream "
                     "error that is not in OpenAI's shape into one (e.g. 404 model_not_found for embeddings)")
    check_error(status, body)


def _openai_shaped(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body).get("error"), dict)
    except (ValueError, AttributeError):
        return False
