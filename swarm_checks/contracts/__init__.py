"""API contracts: what each API of the stack must answer, as checks any test can run.

`openai_contract` and `sse` judge OpenAI-compatible answers (the openai SDK's types, usage,
stop sequences, choices, error shape, SSE framing); `strategies` generates requests over
OpenAI's documented space with Hypothesis; `properties` runs them against an endpoint with a
bounded budget; `proxy` drives schemathesis from the proxy's OpenAPI document; `datastores` and
`services` hold Redis, PostgreSQL, Qdrant, ClickHouse, MinIO, Ray, vLLM's own endpoints,
Langfuse, Open WebUI and Langflow to what the assets (`assets`) promise.

Every check raises `ContractViolation` with a `rule`; suites/contracts runs them live,
tests/contracts shows each failing against a deliberately broken endpoint. This package imports
no pytest: it can run from any harness.
"""
from swarm_checks.contracts import assets, datastores, properties, proxy, services, sse, strategies
from swarm_checks.contracts.http import Client, Exchange, curl_line
from swarm_checks.contracts.openai_contract import (
    FINISH_REASONS, ContractViolation, check_chat_completion, check_completion, check_error, check_models,
)
from swarm_checks.contracts.properties import Budget, OpenAIApi, discover_features, run_property
from swarm_checks.contracts.sse import check_chat_stream, check_completion_stream, parse_sse
from swarm_checks.contracts.strategies import Features

DEFAULT_EXAMPLES = 5


def parse_examples(value: str | int | None) -> int:
    """--contract-examples: a positive number of generated examples per property."""
    if value is None or value == "":
        return DEFAULT_EXAMPLES
    try:
        examples = int(str(value).strip())
    except ValueError:
        raise ValueError(f"--contract-examples: expected a whole number of examples, got {value!r}") from None
    if examples < 1:
        raise ValueError(f"--contract-examples: must be at least 1, got {value!r}")
    return examples


__all__ = [
    "Budget", "Client", "ContractViolation", "DEFAULT_EXAMPLES", "Exchange", "FINISH_REASONS", "Features", "OpenAIApi", "assets",
    "check_chat_completion", "check_chat_stream", "check_completion", "check_completion_stream", "check_error",
    "check_models", "curl_line", "datastores", "discover_features", "parse_examples", "parse_sse",
    "properties", "proxy", "run_property", "services", "sse", "strategies",
]
