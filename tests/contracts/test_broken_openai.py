"""Every OpenAI contract check of suites/contracts, shown failing against a deliberately broken
endpoint: the session's real vLLM CPU engine behind a `BrokenEngine` wrapper that breaks one
thing (drops [DONE], miscounts usage, answers 500 to an edge input, errors in a non-OpenAI
shape, ...). The same endpoint without a mutation passes every check: the failures come from
the mutation, not from the checks. The checks are the ones the suite runs (swarm_checks.contracts).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import strategies as st

from swarm_checks.contracts import (
    Budget, Client, ContractViolation, Features, properties, proxy, run_property, strategies,
)
from tests.contracts import doubles
from tests.docker_helpers import Container
from tests.live_parts import MODEL

REPO = Path(__file__).resolve().parents[2]
BUDGET = Budget(examples=3, seed=20261201, shrink_requests=3)
# What the session's engine serves (vLLM 0.32.0 CPU, SmolLM2-135M); logprobs are left out: they
# kill this engine (see swarm_checks.contracts.known_defects), and the wrappers refuse them.
FEATURES = Features(model=MODEL, max_model_len=2048, max_tokens=6, max_n=2, greedy_n="vLLM refuses greedy n > 1",
                    logprobs="kills the CPU engine of the test session")
HELLO = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def broken(llm: Container) -> Iterator[Callable[[doubles.Mutation | None], Client]]:
    """broken(mutation) -> a client of the real engine behind a wrapper that applies it."""
    wrapper = doubles.BrokenEngine(f"http://127.0.0.1:{llm.port}")
    clients: list[Client] = []
    with doubles.serve(wrapper) as url:
        def make(mutation: doubles.Mutation | None) -> Client:
            wrapper.mutation = mutation
            clients.append(Client(url + "/v1"))
            return clients[-1]
        yield make
    for client in clients:
        client.close()


def _fails(rule: str, run: Callable[[], object]) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        run()
    assert caught.value.rule == rule, f"expected rule {rule!r}, got {caught.value}"
    return caught.value


def _chat(client: Client, explicit: list | None = None, stream: bool = False) -> Callable[[], int]:
    return lambda: run_property("chat", strategies.chat_requests(FEATURES, stream=stream),
                                properties.valid_check(client, "/chat/completions"), BUDGET, explicit or [])


def _completion(client: Client, explicit: list | None = None) -> Callable[[], int]:
    return lambda: run_property("completion", strategies.completion_requests(FEATURES),
                                properties.valid_check(client, "/completions"), BUDGET, explicit or [])


def _invalid(client: Client, explicit: list | None = None) -> Callable[[], int]:
    return lambda: run_property("invalid", strategies.invalid_chat_requests(FEATURES),
                                properties.invalid_check(client, "/chat/completions"), BUDGET, explicit or [])


STREAM = {"model": MODEL, "messages": HELLO, "max_tokens": 4, "stream": True}
STREAM_USAGE = {**STREAM, "n": 2, "temperature": 1.0, "stream_options": {"include_usage": True}}

CASES = [
    # (mutation, rule, property)
    (doubles.drop_done, "sse-done", lambda c: _chat(c, [STREAM], stream=True)),
    (doubles.event_field, "sse-data-only", lambda c: _chat(c, [STREAM], stream=True)),
    (doubles.change_id_midstream, "chunk-id", lambda c: _chat(c, [STREAM], stream=True)),
    (doubles.second_finish_reason, "one-finish-reason", lambda c: _chat(c, [STREAM], stream=True)),
    (doubles.usage_chunk_first, "usage-chunk-last", lambda c: _chat(c, [STREAM_USAGE], stream=True)),
    (doubles.miscount_usage, "usage-total", lambda c: _chat(c, [STREAM_USAGE], stream=True)),
    (doubles.miscount_usage, "usage-total", lambda c: _chat(c)),
    (doubles.over_budget, "usage-max-tokens", lambda c: _chat(c)),
    (doubles.bad_finish_reason, "sdk-parse", lambda c: _chat(c)),
    (doubles.created_as_string, "sdk-lossless", lambda c: _chat(c)),
    (doubles.leak_stop, "stop-sequence", lambda c: _chat(c, [{"model": MODEL, "messages": HELLO, "max_tokens": 6,
                                                              "stop": ["zebra"]}])),
    (doubles.one_choice, "choice-indexes", lambda c: _chat(c, [{"model": MODEL, "messages": HELLO, "max_tokens": 3,
                                                                "n": 2, "temperature": 1.0}])),
    (doubles.server_error_on_unicode, "valid-accepted",
     lambda c: _chat(c, [{"model": MODEL, "messages": [{"role": "user", "content": "Grüße 🙂"}], "max_tokens": 3}])),
    (doubles.miscount_usage, "usage-total", lambda c: _completion(c)),
    (doubles.drop_done, "sse-done", lambda c: _completion(c, [{"model": MODEL, "prompt": "The sea", "max_tokens": 3,
                                                               "stream": True}])),
    (doubles.leak_stop, "stop-sequence", lambda c: _completion(c, [{"model": MODEL, "prompt": "The sea",
                                                                    "max_tokens": 4, "stop": ["zebra"]}])),
    (doubles.server_error_on_empty_messages, "no-server-error",
     lambda c: _invalid(c, [{"model": MODEL, "messages": [], "max_tokens": 2}])),
    (doubles.detail_errors, "error-shape", lambda c: _invalid(c)),
]


@pytest.mark.parametrize("mutation, rule, prop", CASES, ids=[f"{m.__name__}-{r}" for m, r, _ in CASES])
def test_each_openai_check_fails_against_a_broken_endpoint(broken: Callable[..., Client], mutation: doubles.Mutation,
                                                           rule: str, prop: Callable[[Client], Callable[[], int]]) -> None:
    error = _fails(rule, prop(broken(mutation)))
    notes = "\n".join(getattr(error, "__notes__", []))
    assert "reproduce: curl" in notes and "hypothesis seed 20261201" in notes, notes


def test_a_server_that_dies_after_a_refusal_fails_still_healthy(broken: Callable[..., Client]) -> None:
    _fails("still-healthy", _invalid(broken(doubles.DeadAfterRefusal())))


def test_json_seed_and_models_checks_fail_against_broken_endpoints(broken: Callable[..., Client]) -> None:
    _fails("json-output", lambda: properties.check_json_mode(broken(doubles.not_json), MODEL, "json_object"))
    _fails("seed-reproducible", lambda: properties.check_reproducible(broken(doubles.unseeded), MODEL))
    _fails("models-configured", lambda: properties.check_models_endpoint(broken(doubles.drop_model), MODEL))


def test_proxy_parity_fails_when_the_proxy_refuses_or_rewrites(llm: Container, broken: Callable[..., Client]) -> None:
    engine = Client(f"http://127.0.0.1:{llm.port}/v1")
    valid_with_stop = {"model": MODEL, "messages": HELLO, "max_tokens": 3, "stop": ["\n"]}
    invalid = {"model": MODEL, "messages": [], "max_tokens": 2}
    requests = st.one_of(strategies.chat_requests(FEATURES), strategies.invalid_chat_requests(FEATURES))
    _fails("proxy-accepts", lambda: run_property("parity", requests, properties.parity_check(
        engine, broken(doubles.refuse_stop), "/chat/completions"), BUDGET, [valid_with_stop]))
    _fails("error-passthrough", lambda: run_property("parity", requests, properties.parity_check(
        engine, broken(doubles.errors_as_422), "/chat/completions"), BUDGET, [invalid]))
    engine.close()


def test_the_unbroken_endpoint_passes_every_check(broken: Callable[..., Client], llm: Container) -> None:
    """The control: the same wrapper, no mutation, the same checks: all pass."""
    client = broken(None)
    _chat(client, [STREAM_USAGE], stream=True)()
    _chat(client)()
    _completion(client)()
    _invalid(client)()
    run_property("invalid", strategies.invalid_completion_requests(FEATURES),
                 properties.invalid_check(client, "/completions"), BUDGET)
    properties.check_json_mode(client, MODEL, "json_object")
    properties.check_json_mode(client, MODEL, "json_schema")
    properties.check_reproducible(client, MODEL)
    assert MODEL in properties.check_models_endpoint(client, MODEL)
    engine = Client(f"http://127.0.0.1:{llm.port}/v1")
    run_property("parity", strategies.chat_requests(FEATURES), properties.parity_check(engine, client, "/chat/completions"),
                 BUDGET)
    engine.close()


def test_the_suite_itself_fails_and_says_how_to_reproduce(broken: Callable[..., Client], tmp_path: Path) -> None:
    """End to end: suites/contracts against the broken engine (external target): the stream test
    fails, and its report carries the rule, the shrunk example, a curl line and the seed."""
    client = broken(doubles.drop_done)
    endpoints = tmp_path / "endpoints.yaml"
    endpoints.write_text(textwrap.dedent(f"""\
        services:
          llm-cpu:
            url: {client.base_url}
        """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/contracts/test_contract_openai.py", "-k", "chat_streams and llm-cpu",
         "--target=external", f"--endpoints={endpoints}", "--contract-examples=2", "--hypothesis-seed=7",
         "-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    for expected in ("contract rule 'sse-done'", "example: ", "reproduce: curl", "hypothesis seed 7",
                     "1 failed"):
        assert expected in output, f"{expected!r} missing from:\n{output[-3000:]}"


PROXY_CASES = [
    # (mutation, operation, rule, an example every run tries)
    (doubles.detail_errors, "POST /v1/chat/completions", "error-shape",
     {"model": "swarm-no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
    (doubles.health_500, "GET /health", "no-server-error", None),
    (doubles.drop_model, "GET /v1/models", "models-configured", None),
    (doubles.miscount_usage, "POST /v1/completions", "usage-total", {"model": MODEL, "prompt": "The sea", "max_tokens": 3}),
    (None, "POST /v1/chat/completions", None, {"model": MODEL, "messages": HELLO, "max_tokens": 3}),  # the control
]


@pytest.mark.parametrize("mutation, operation, rule, body", PROXY_CASES,
                         ids=[f"{m.__name__ if m else 'unbroken'}-{o}" for m, o, _, _ in PROXY_CASES])
def test_the_proxy_schema_checks_fail_against_a_broken_proxy(start_proxy: Callable[..., Any], mutation: Any,
                                                             operation: str, rule: str | None, body: Any) -> None:
    """The real proxy (tests/live_parts.py) behind a wrapper; schemathesis reads its /openapi.json
    and generates the suite's requests (half of them pointed at the served model)."""
    real = start_proxy()
    with doubles.serve(doubles.BrokenEngine(real.url, mutation)) as url:
        found = proxy.operations(proxy.load_schema(url))
        client = Client(url + "/v1", real.key)
        strategy = proxy.request_strategy(found[operation], MODEL, 4, True)
        method, path = operation.split()
        explicit = [{"method": method, "path": path, "body": body}]
        budget = Budget(examples=5, seed=BUDGET.seed, shrink_requests=3)
        run = lambda: run_property("proxy", strategy, proxy.schema_check(client, url, MODEL), budget,  # noqa: E731
                                   explicit)
        if rule is None:
            run()
        else:
            _fails(rule, run)
        client.close()
