"""Smoke: every deployed service answers its probe, and the primary LLM answers a chat.

Against a running stack (--reuse-stack, or the external target) this takes seconds: each check
is one call through the service's official client or documented health endpoint.
"""
from __future__ import annotations

from typing import Callable, Mapping

import pytest

from swarm_checks import Catalog, Endpoint, GiveUp, Probe, fail, ray_alive_nodes


def test_service_answers_its_probe(service_name: str, swarm_catalog: Catalog, swarm_endpoint: Callable[[str], Endpoint],
                                   swarm_probes: Mapping[str, Probe], record_property: Callable[[str, object], None]) -> None:
    """The probe raises when the service does not answer as its kind should; what it saw goes
    into the report as the test's `probe` property."""
    service = swarm_catalog.services[service_name]
    if service_name not in swarm_catalog.active:
        pytest.skip(f"service {service_name!r} is not deployed: {swarm_catalog.how_to_enable(service_name)}")
    if service.kind == "ray-worker":
        # Workers publish no port: they are counted through the head's state API.
        heads = swarm_catalog.of_kind("ray-head")
        assert heads, "ray-worker is deployed without a ray-head"
        alive = ray_alive_nodes(swarm_endpoint(heads[0].name))
        assert len(alive) >= 2, f"only {len(alive)} alive Ray node(s): no worker joined the head"
        return
    probe = swarm_probes.get(service.kind)
    assert probe is not None, (f"no probe for kind {service.kind!r} (service {service_name}): add one by overriding "
                               "the swarm_probes fixture in a conftest.py (README, Plugin reference)")
    endpoint = swarm_endpoint(service_name)
    try:
        seen = probe(endpoint)
    except GiveUp as error:  # an answer retrying cannot change: a refused password, a missing client
        fail(f"{service_name}: {error}")
    record_property("probe", seen)


def test_primary_llm_answers_a_chat_completion(primary_llm: Endpoint) -> None:
    try:
        from openai import OpenAI
    except ImportError:
        fail("the OpenAI SDK (openai) is not installed: pip install 'swarm-checks[clients]'")
    client = OpenAI(base_url=primary_llm.openai_base_url, api_key=primary_llm.api_key or "not-needed",
                    timeout=120, max_retries=0)
    completion = client.chat.completions.create(
        model=primary_llm.model or "",
        messages=[{"role": "user", "content": "Say hello in one word."}],
        max_tokens=16,
        temperature=0,
    )
    assert completion.choices, "the engine answered with no choice"
    text = completion.choices[0].message.content or ""
    assert text.strip(), "the engine answered with empty content"
    assert completion.usage is not None and completion.usage.completion_tokens >= 1
