"""Health: the LLM engines serve the configured model and honour the request, directly and
through the proxy, with the official OpenAI SDK as the client."""
from __future__ import annotations

from typing import Callable

import openai
import pytest
from openai import OpenAI

from swarm_checks import Endpoint

COUNTING = [{"role": "user", "content": "Count from 1 to 200, separated by spaces."}]


def _client(endpoint: Endpoint, api_key: str | None = None) -> OpenAI:
    return OpenAI(base_url=endpoint.openai_base_url, api_key=api_key or endpoint.api_key or "not-needed",
                  timeout=120, max_retries=0)


def test_llm_lists_its_configured_model(primary_llm: Endpoint) -> None:
    models = [model.id for model in _client(primary_llm).models.list()]
    assert primary_llm.model in models, f"the engine serves {models}, the stack configures {primary_llm.model!r}"


def test_llm_respects_max_tokens(primary_llm: Endpoint) -> None:
    completion = _client(primary_llm).chat.completions.create(
        model=primary_llm.model or "", messages=COUNTING, max_tokens=5, temperature=0)
    assert completion.usage is not None
    assert 1 <= completion.usage.completion_tokens <= 5
    assert completion.choices[0].finish_reason == "length"


def test_llm_streams_a_chat_completion(primary_llm: Endpoint) -> None:
    stream = _client(primary_llm).chat.completions.create(
        model=primary_llm.model or "", messages=COUNTING, max_tokens=12, temperature=0, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) >= 2, "the answer did not arrive in several chunks"


def test_proxy_answers_a_chat_for_the_primary_model(endpoint_of_kind: Callable[[str], Endpoint],
                                                    primary_llm: Endpoint) -> None:
    proxy = endpoint_of_kind("proxy")
    completion = _client(proxy).chat.completions.create(
        model=primary_llm.model or "", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
    assert (completion.choices[0].message.content or "").strip()


def test_proxy_refuses_a_wrong_key(endpoint_of_kind: Callable[[str], Endpoint], primary_llm: Endpoint) -> None:
    proxy = endpoint_of_kind("proxy")
    with pytest.raises(openai.AuthenticationError):
        _client(proxy, api_key="sk-wrong-key").chat.completions.create(
            model=primary_llm.model or "", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
