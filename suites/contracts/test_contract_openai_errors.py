"""Invalid requests to every OpenAI-compatible endpoint: wrong types, out-of-range values, an
unknown model, empty messages, max_tokens beyond the context, a prompt longer than it, bodies
that are not a request at all. Each is refused with a 4xx in OpenAI's error shape, never a 5xx,
and the endpoint still serves afterwards."""
from __future__ import annotations

import pytest

from swarm_checks.contracts import (
    Budget, OpenAIApi, check_completion, check_error, properties, run_property, strategies,
)

EXPLICIT_CHAT = [
    {"messages": [], "max_tokens": 2},  # empty messages
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "two"},  # a wrong type
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 7},  # out of range
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6},  # beyond the context
]


def _with_model(requests: list[dict], model: str) -> list[dict]:
    return [{"model": model, **request} for request in requests]


def test_invalid_chat_requests_are_refused_in_openai_shape(openai_api: OpenAIApi, contract_budget: Budget) -> None:
    explicit = _with_model(EXPLICIT_CHAT, openai_api.model) + [
        {"model": strategies.UNKNOWN_MODEL_PREFIX + "x", "messages": [{"role": "user", "content": "hi"}]}]
    run_property("invalid_chat", strategies.invalid_chat_requests(openai_api.features),
                 properties.invalid_check(openai_api.client, "/chat/completions"), contract_budget, explicit=explicit)
    _still_answers(openai_api)


def test_invalid_completion_requests_are_refused_in_openai_shape(openai_api: OpenAIApi,
                                                                 contract_budget: Budget) -> None:
    explicit = [{"model": openai_api.model, "prompt": "", "max_tokens": 2},
                {"model": openai_api.model, "prompt": "hi", "max_tokens": -1}]
    run_property("invalid_completion", strategies.invalid_completion_requests(openai_api.features),
                 properties.invalid_check(openai_api.client, "/completions"), contract_budget, explicit=explicit)
    _still_answers(openai_api)


def _still_answers(api: OpenAIApi) -> None:
    """After the refusals, a real request is still answered (the engine did not die quietly)."""
    request = {"model": api.model, "prompt": "The sea is", "max_tokens": 2}
    exchange = api.client.post("/completions", request)
    assert exchange.status == 200, f"after the invalid requests: {exchange.describe()}"
    check_completion(request, exchange.json())


NOT_UTF8 = b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}'


def test_a_body_that_is_not_utf8_is_refused_in_openai_shape(openai_api: OpenAIApi) -> None:
    exchange = openai_api.client.post("/chat/completions", NOT_UTF8)
    if exchange.status == 400 and exchange.raw.startswith(b'{"detail":'):
        pytest.xfail(f"known defect of {openai_api.service}: a body that is not UTF-8 is refused with FastAPI's "
                     f"own {exchange.raw[:60]!r}, not OpenAI's error shape (vLLM's server: Starlette fails to "
                     "decode the body before vLLM's error handler runs; the proxy reads bodies itself and answers in "
                     "OpenAI's shape). Upstream vLLM: an exception handler for fastapi.HTTPException")
    check_error(exchange.status, exchange.raw, exchange.headers)


def test_an_empty_prompt_in_a_stream_is_refused_before_it_streams(openai_api: OpenAIApi) -> None:
    """A refusal is a 4xx before any byte of a stream, not an error event inside a 200."""
    request = {"model": openai_api.model, "prompt": ["The sea is", ""], "max_tokens": 2, "stream": True}
    exchange = openai_api.client.post("/completions", request)
    if exchange.status == 200 and b'"error"' in exchange.raw:
        pytest.xfail(f"known defect of {openai_api.service} (vLLM 0.32.0): an empty prompt in a prompt list is "
                     "refused only after the stream began: HTTP 200 with an error event "
                     f"({exchange.raw[:90]!r}); without stream it is a 400. Upstream vLLM: validate every prompt "
                     "before streaming")
    check_error(exchange.status, exchange.raw, exchange.headers)
