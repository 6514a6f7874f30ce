"""The OpenAI contract as runnable properties: generate requests, send them, judge the answers.

Hypothesis runs each property with a fixed number of examples, no example database (a shared
CI machine must not replay yesterday's failures into today's run) and a seed that is printed.
Against a live engine every example costs a request, and so does every shrinking step: after the
first failure at most `Budget.shrink_requests` new requests are sent, then untried examples
count as passing, so the example reported is always one that really failed, and a failure
costs seconds, not Hypothesis's five minutes of shrinking.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import note as _hypothesis_note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from swarm_checks.contracts.http import Client, Exchange
from swarm_checks.contracts.openai_contract import (
    check_chat_completion, check_completion, check_error, check_models, require, violation,
)
from swarm_checks.contracts.sse import check_chat_stream, check_completion_stream
from swarm_checks.contracts.strategies import Features

Check = Callable[[Any], None]


def note(text: str) -> None:
    """Hypothesis's note (printed with the final failing example), a no-op outside a property."""
    if currently_in_test_context():
        _hypothesis_note(text)


@dataclass
class OpenAIApi:
    """One OpenAI-compatible endpoint under contract: the service, its client, model and features."""

    service: str
    client: Client
    model: str
    features: Features


@dataclass(frozen=True)
class Budget:
    """How much one property may send: generated examples, and requests spent on shrinking."""

    examples: int
    seed: int
    shrink_requests: int = 30

    def reproduce(self) -> str:
        return f"hypothesis seed {self.seed}: rerun with --hypothesis-seed={self.seed} --contract-examples={self.examples}"


class BoundedCheck:
    """Runs `check`, but after the first failure tries at most `budget` new examples."""

    def __init__(self, check: Check, budget: int) -> None:
        self.check, self.budget = check, budget
        self.calls = 0
        self.failed: set[str] = set()
        self.first_failure: int | None = None

    def __call__(self, value: Any) -> None:
        key = json.dumps(value, sort_keys=True, default=repr)
        if self.first_failure is not None and self.calls - self.first_failure >= self.budget and key not in self.failed:
            return  # not tried: the shrinking budget is spent
        self.calls += 1
        # Hypothesis prints the example itself, but schemathesis's pytest plugin blanks its
        # pretty-printer ("request=,"): the note keeps the shrunk example in the report.
        note(f"example: {key if len(key) < 4000 else key[:4000] + ' ...'}")
        try:
            self.check(value)
        except BaseException:
            self.failed.add(key)
            if self.first_failure is None:
                self.first_failure = self.calls
            raise


def run_property(name: str, strategy: st.SearchStrategy[Any], check: Check, budget: Budget,
                 explicit: Sequence[Any] = ()) -> int:
    """Check `check` on the explicit examples, then on `budget.examples` generated ones.
    Returns how many examples were checked; a failure carries the seed and the shrunk example."""
    bounded = BoundedCheck(check, budget.shrink_requests)

    def prop(request: Any) -> None:
        bounded(request)

    prop.__name__ = prop.__qualname__ = name
    test = given(request=strategy)(prop)
    for value in reversed(list(explicit)):
        test = example(request=value)(test)
    test = settings(max_examples=budget.examples, database=None, deadline=None, print_blob=False,
                    report_multiple_bugs=False, derandomize=False,
                    phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),
                    suppress_health_check=list(HealthCheck))(test)
    test = seed(budget.seed)(test)
    try:
        test()
    except BaseException as error:
        error.add_note(budget.reproduce())
        raise
    return bounded.calls


def _sent(exchange: Exchange) -> Exchange:
    note(f"reproduce: {exchange.curl()}")
    note(f"answer: {exchange.describe(1200)}")
    return exchange


def _accepted(exchange: Exchange, request: Mapping[str, Any], path: str) -> None:
    """A valid request is answered 200 with the right content type, and the answer holds."""
    if exchange.status != 200:
        raise violation("valid-accepted", f"a valid request was refused: {exchange.describe()}")
    content_type = exchange.headers.get("content-type", "")
    if request.get("stream"):
        require(content_type.startswith("text/event-stream"), "sse-content-type",
                f"a stream must be text/event-stream, got {content_type!r}")
        (check_chat_stream if path == "/chat/completions" else check_completion_stream)(request, exchange.raw)
        return
    require(content_type.startswith("application/json"), "json-content-type",
            f"an answer must be application/json, got {content_type!r}")
    try:
        body = exchange.json()
    except ValueError:
        raise violation("json-body", f"the answer is not JSON: {exchange.describe()}") from None
    (check_chat_completion if path == "/chat/completions" else check_completion)(request, body)


def valid_check(client: Client, path: str) -> Check:
    """Send a valid request; the answer must be accepted and hold the contract."""
    def check(request: Mapping[str, Any]) -> None:
        _accepted(_sent(client.post(path, request)), request, path)
    return check


def invalid_check(client: Client, path: str) -> Check:
    """Send an invalid request: a 4xx in OpenAI's error shape, and the endpoint still serves."""
    def check(request: Any) -> None:
        exchange = _sent(client.post(path, request))
        check_error(exchange.status, exchange.raw, exchange.headers)
        alive = client.get("/models")
        require(alive.status == 200, "still-healthy", f"after that request GET /models answers {alive.describe()}")
    return check


def parity_check(engine: Client, proxy: Client, path: str) -> Check:
    """The same request to the engine and through the proxy: what the engine accepts the proxy
    accepts (and its answer holds the contract); what the engine refuses the proxy refuses with
    a 4xx in OpenAI's shape, and an engine error it relays keeps the engine's status."""
    def check(request: Any) -> None:
        direct = _sent(engine.post(path, request))
        relayed = _sent(proxy.post(path, request))
        if direct.status == 200:
            require(relayed.status == 200, "proxy-accepts",
                    f"the engine accepts this request, the proxy answers {relayed.describe()}")
            _accepted(relayed, request, path)
            return
        engine_error = check_error(direct.status, direct.raw, direct.headers)
        proxy_error = check_error(relayed.status, relayed.raw, relayed.headers)
        if proxy_error.get("message") == engine_error.get("message"):
            require(relayed.status == direct.status, "error-passthrough",
                    f"the proxy relays the engine's error with HTTP {relayed.status}, the engine said {direct.status}")
    return check


def check_models_endpoint(client: Client, model: str | None) -> list[str]:
    exchange = client.get("/models")
    require(exchange.status == 200, "models-status", f"GET /models: {exchange.describe()}")
    return check_models(exchange.json(), model)


def discover_features(client: Client, model: str, logprobs_unavailable: str | None = None,
                      max_tokens: int = 16) -> Features:
    """What the endpoint serves, asked of it with one-token requests: its context length (vLLM
    lists max_model_len in /v1/models), whether n > 1 and json_schema are accepted. Logprobs are
    left out when the caller knows they would break the engine (see the suite's conftest)."""
    listing = client.get("/models")
    entries = listing.json().get("data", []) if listing.status == 200 else []
    entry = next((item for item in entries if item.get("id") == model), {})
    max_model_len = int(entry.get("max_model_len") or 2048)
    base = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1}
    n_probe = client.post("/chat/completions", {**base, "n": 2})
    max_n = 3 if n_probe.status == 200 and len(n_probe.json().get("choices", [])) == 2 else 1
    greedy_probe = client.post("/chat/completions", {**base, "n": 2, "temperature": 0.0}) if max_n > 1 else None
    greedy_n = None if greedy_probe is None or greedy_probe.status == 200 else \
        f"n > 1 at temperature 0 refused: {greedy_probe.describe(200)}"
    schema = {"type": "json_schema", "json_schema": {"name": "probe", "schema": {"type": "object"}}}
    schema_probe = client.post("/chat/completions", {**base, "response_format": schema})
    json_schema = None if schema_probe.status == 200 else f"json_schema refused: {schema_probe.describe(200)}"
    return Features(model=model, max_model_len=max_model_len, max_tokens=max_tokens, max_n=max_n, greedy_n=greedy_n,
                    json_schema=json_schema, logprobs=logprobs_unavailable)


def check_reproducible(client: Client, model: str) -> None:
    """Temperature 0 gives the same answer twice; so does temperature 1 with the same seed
    (vLLM documents per-request seeds as reproducible)."""
    prompt = [{"role": "user", "content": "Write one sentence about the sea."}]
    for extra in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 1234}):
        request = {"model": model, "messages": prompt, "max_tokens": 12, **extra}
        answers = []
        for _ in range(2):
            exchange = client.post("/chat/completions", request)
            require(exchange.status == 200, "valid-accepted", f"{exchange.describe()}; reproduce: {exchange.curl()}")
            check_chat_completion(request, exchange.json())
            answers.append(exchange.json()["choices"][0]["message"]["content"])
        require(answers[0] == answers[1], "seed-reproducible",
                f"the same request with {extra} gave {answers[0]!r}, then {answers[1]!r}; reproduce: {exchange.curl()}")


JSON_PROMPT = [{"role": "user", "content": 'Reply with the JSON object {"ok": true} and nothing else.'}]
JSON_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
               "additionalProperties": False}


def check_json_mode(client: Client, model: str, kind: str) -> str:
    """response_format json_object / json_schema: the finished output parses (and matches)."""
    response_format: dict[str, Any] = {"type": kind}
    if kind == "json_schema":
        response_format["json_schema"] = {"name": "answer", "schema": JSON_SCHEMA, "strict": True}
    request = {"model": model, "messages": JSON_PROMPT, "max_tokens": 32, "temperature": 0.0,
               "response_format": response_format}
    exchange = client.post("/chat/completions", request)
    require(exchange.status == 200, "valid-accepted", f"{exchange.describe()}; reproduce: {exchange.curl()}")
    body = exchange.json()
    check_chat_completion(request, body)
    choice = body["choices"][0]
    require(choice["finish_reason"] == "stop", "json-finished",
            f"{kind}: the output did not finish within 32 tokens ({choice['message']['content']!r}), so it cannot "
            f"be judged; reproduce: {exchange.curl()}")
    return choice["message"]["content"]
