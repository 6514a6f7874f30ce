"""The proxy held to its own OpenAPI document: schemathesis generates every operation's requests
(valid ones and, for operations with a body, invalid ones) from the deployed proxy's
/openapi.json, and the answers are judged by the OpenAI contract, not only by "no 5xx".

Generated bodies name random models, which the proxy refuses itself (404), so some examples are
pointed at the served model, to go through to the engine; their token budget is capped, because
an answer of the whole context takes minutes on a CPU engine.
"""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from swarm_checks.contracts.http import Client
from swarm_checks.contracts.known_defects import streams_an_error_for_an_empty_prompt
from swarm_checks.contracts.openai_contract import check_error, check_models, require, violation
from swarm_checks.contracts.properties import Check, _accepted, _sent, note

OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def load_schema(root_url: str) -> Any:
    """The deployed proxy's OpenAPI document, through schemathesis."""
    import schemathesis

    return schemathesis.openapi.from_url(f"{root_url}/openapi.json")


def operations(schema: Any) -> dict[str, Any]:
    """label (`POST /v1/chat/completions`) -> schemathesis operation, for every operation."""
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def _bounded(body: Any, model: str, to_model: bool, max_tokens: int) -> Any:
    """Point a generated body at the served model (when asked) and cap its token budget."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if to_model:
        body["model"] = model
    if body.get("model") == model:
        budget = body.get("max_tokens")
        number = isinstance(budget, (int, float)) and not isinstance(budget, bool)
        # Absent or null means "the rest of the context"; a wrong type or a value out of any
        # context's range stays, for the API to refuse.
        if budget is None or (number and max_tokens < budget <= 1 << 20):
            body["max_tokens"] = max_tokens
        # vLLM takes max_completion_tokens before max_tokens: a large one made a slow answer.
        completion = body.get("max_completion_tokens")
        if isinstance(completion, (int, float)) and not isinstance(completion, bool) and max_tokens < completion <= 1 << 20:
            body["max_completion_tokens"] = max_tokens
    return body


def request_strategy(operation: Any, model: str, max_tokens: int, reach_engine: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Requests for one operation as plain data (method, path, body): valid ones from the schema,
    and schema-violating ones where the operation has a body."""
    from schemathesis import GenerationMode
    from schemathesis.core import NotSet

    def plain(case: Any, to_model: bool) -> dict[str, Any]:
        body = None if isinstance(case.body, NotSet) else case.body
        return {"method": case.method.upper(), "path": case.formatted_path,
                "body": _bounded(body, model, to_model and reach_engine, max_tokens)}

    strategies = [st.tuples(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), st.booleans())]
    if operation.method.upper() == "POST":
        strategies.append(st.tuples(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), st.booleans()))
    # Two known defects have tests of their own (suites/contracts): bodies that are not UTF-8,
    # streams of a prompt list with an empty prompt.
    return st.one_of(strategies).map(lambda pair: plain(*pair)).filter(
        lambda request: utf8(request["body"]) and not streams_an_error_for_an_empty_prompt(request["body"]))


def utf8(body: Any) -> bool:
    if not isinstance(body, bytes):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def schema_check(proxy: Client, root_url: str, model: str) -> Check:
    """No 5xx for any request; 4xx in OpenAI's error shape; 200 answers of the OpenAI operations
    hold the contract (chat and completions, streamed or not; the model list)."""
    def check(request: dict[str, Any]) -> None:
        path, body = request["path"], request["body"]
        root = Client(root_url, proxy.api_key)
        try:
            exchange = _sent(root.request(request["method"], path, body))
        finally:
            root.close()
        note(f"answer: {exchange.describe(600)}")
        require(exchange.status < 500, "no-server-error", f"{request['method']} {path}: {exchange.describe()}")
        if exchange.status >= 400:
            check_error(exchange.status, exchange.raw, exchange.headers)
            return
        if path in ("/v1/chat/completions", "/v1/completions") and isinstance(body, dict):
            _accepted(exchange, body, path.removeprefix("/v1"))
        elif path == "/v1/models":
            check_models(exchange.json(), model)
        elif path == "/v1/embeddings":
            raise violation("embeddings-answer", f"an embeddings answer from an upstream that serves none: "
                                                 f"{exchange.describe()}")
    return check


def embeddings_answer(engine: Client, proxy: Client, model: str) -> tuple[int, bytes, int, bytes]:
    """The same embeddings request to the engine and through the proxy: (status, body) of each."""
    request = {"model": model, "input": "a sentence to embed"}
    direct, relayed = engine.post("/embeddings", request), proxy.post("/embeddings", request)
    return direct.status, direct.raw, relayed.status, relayed.raw
