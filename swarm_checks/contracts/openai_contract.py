"""What an OpenAI-compatible answer must be, whoever serves it (vLLM, the proxy, OpenAI itself).

Each check takes the request that was sent and the answer's JSON and raises `ContractViolation`
naming the rule it broke. The openai SDK's own types are the first judge: an answer they reject,
or parse with a field changed or dropped, breaks clients written against OpenAI's API. The rules
after it are the promises of OpenAI's API reference that no type can express (usage adds up, a
stop sequence never shows, `n` choices come back, `json_object` output parses).

The suite (suites/contracts) and the framework's tests (tests/contracts, against deliberately
broken endpoints) use these same functions: one definition of the contract.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import jsonschema
import pydantic
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion

# OpenAI's documented finish reasons (function_call is the deprecated spelling of tool_calls).
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


class ContractViolation(AssertionError):
    """An answer broke a rule of the contract; `rule` names it (stable, for tests to match)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"contract rule {rule!r}: {message}")
        self.rule = rule


def violation(rule: str, message: str) -> ContractViolation:
    return ContractViolation(rule, message)


def require(condition: bool, rule: str, message: str) -> None:
    if not condition:
        raise ContractViolation(rule, message)


def parse_lossless(model: type[pydantic.BaseModel], body: Any, what: str) -> Any:
    """Parse with the SDK's type; what it dumps again must equal what was sent (nothing lost,
    nothing coerced: a float where an int belongs, a string id that became a number)."""
    if not isinstance(body, Mapping):
        raise violation("sdk-parse", f"{what} is not a JSON object: {str(body)[:200]}")
    try:
        parsed = model.model_validate(body)
    except pydantic.ValidationError as error:
        raise violation("sdk-parse", f"the openai SDK's {model.__name__} rejects the {what}: {error}") from None
    again = parsed.model_dump(mode="json", exclude_unset=True)
    if again != body:
        raise violation("sdk-lossless", f"the openai SDK's {model.__name__} does not keep the {what} as sent: "
                                        f"{first_difference(body, again)}")
    return parsed


def first_difference(sent: Any, parsed: Any, path: str = "$") -> str:
    """Where two JSON documents first differ, as a short path."""
    if type(sent) is not type(parsed):
        return f"{path}: {sent!r} became {parsed!r}"
    if isinstance(sent, dict):
        for key in sorted(set(sent) | set(parsed)):
            if key not in parsed:
                return f"{path}.{key} was dropped"
            if key not in sent:
                return f"{path}.{key} was added"
            if sent[key] != parsed[key]:
                return first_difference(sent[key], parsed[key], f"{path}.{key}")
    if isinstance(sent, list):
        if len(sent) != len(parsed):
            return f"{path}: {len(sent)} items became {len(parsed)}"
        for index, (a, b) in enumerate(zip(sent, parsed)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
    return f"{path}: {sent!r} became {parsed!r}"


def stop_strings(request: Mapping[str, Any]) -> list[str]:
    stop = request.get("stop")
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]


def token_budget(request: Mapping[str, Any], chat: bool = True) -> int | None:
    """The most completion tokens one choice may take: for chat max_completion_tokens, else
    max_tokens; /v1/completions knows max_tokens only."""
    budget = request.get("max_completion_tokens", request.get("max_tokens")) if chat else request.get("max_tokens")
    return int(budget) if isinstance(budget, int) else None


def check_usage(usage: Mapping[str, Any] | None, request: Mapping[str, Any], choices: int, where: str,
                chat: bool = True) -> None:
    """usage adds up and stays within the budget of every choice asked for."""
    require(isinstance(usage, Mapping), "usage-present", f"{where}: no usage object")
    assert isinstance(usage, Mapping)
    prompt, completion, total = usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")
    require(all(isinstance(v, int) and v >= 0 for v in (prompt, completion, total)), "usage-types",
            f"{where}: usage counts must be non-negative integers, got {dict(usage)}")
    require(total == prompt + completion, "usage-total",
            f"{where}: total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}")
    require(prompt >= 1, "usage-prompt", f"{where}: prompt_tokens is {prompt}: a prompt has at least one token")
    budget = token_budget(request, chat)
    if budget is not None:
        require(completion <= budget * choices, "usage-max-tokens",
                f"{where}: completion_tokens {completion} > max_tokens {budget} x {choices} choice(s)")


def check_text(text: str, request: Mapping[str, Any], finish_reason: str | None, where: str) -> None:
    """A stop sequence never shows in the output; structured output parses when it finished."""
    for stop in stop_strings(request):
        require(stop not in text, "stop-sequence", f"{where}: the output contains the stop sequence {stop!r}: {text!r}")
    response_format = request.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    # finish_reason "stop" also means "a stop sequence cut it": only without one must it parse.
    if kind in ("json_object", "json_schema") and finish_reason == "stop" and not stop_strings(request):
        try:
            document = json.loads(text)
        except ValueError:
            raise violation("json-output", f"{where}: response_format {kind} finished, but the output is not "
                                           f"JSON: {text!r}") from None
        if kind == "json_object":
            require(isinstance(document, dict), "json-output", f"{where}: json_object output is not an object: {text!r}")
        else:
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            try:
                jsonschema.validate(document, schema)
            except jsonschema.ValidationError as error:
                raise violation("json-schema-output", f"{where}: the output does not match the schema: "
                                                      f"{error.message}: {text!r}") from None


def check_indexes(indexes: Iterable[int], expected: int, where: str) -> None:
    got = sorted(indexes)
    require(got == list(range(expected)), "choice-indexes",
            f"{where}: choice indexes {got}, expected 0..{expected - 1} once each")


def check_finish_reason(reason: Any, where: str) -> None:
    require(reason in FINISH_REASONS, "finish-reason", f"{where}: finish_reason {reason!r} is not one of "
                                                       f"{sorted(FINISH_REASONS)}")


def check_chat_logprobs(choice: Mapping[str, Any], request: Mapping[str, Any], where: str) -> None:
    """logprobs only when asked for; then one entry per token, each <= 0, top_logprobs as many as asked."""
    logprobs = choice.get("logprobs")
    if not request.get("logprobs"):
        require(logprobs is None, "logprobs-unasked", f"{where}: logprobs sent although not asked for")
        return
    content = (logprobs or {}).get("content")
    require(isinstance(content, list) and (content or not (choice.get("message") or {}).get("content")),
            "logprobs-present", f"{where}: logprobs asked for, got {str(logprobs)[:200]}")
    wanted = request.get("top_logprobs") or 0
    for position, entry in enumerate(content or []):
        require(entry.get("logprob", 1) <= 0, "logprob-range", f"{where}: token {position} has logprob > 0: {entry}")
        require(len(entry.get("top_logprobs") or []) == wanted, "top-logprobs-count",
                f"{where}: token {position} has {len(entry.get('top_logprobs') or [])} top_logprobs, asked {wanted}")


def check_chat_completion(request: Mapping[str, Any], body: Any) -> ChatCompletion:
    """A non-streaming /v1/chat/completions answer against the request that produced it."""
    parsed: ChatCompletion = parse_lossless(ChatCompletion, body, "chat completion")
    if request.get("model"):
        require(body.get("model") == request["model"], "model", f"answered for model {body.get('model')!r}, "
                                                                f"asked {request['model']!r}")
    n = int(request.get("n") or 1)
    check_indexes((c["index"] for c in body["choices"]), n, "choices")
    for choice in body["choices"]:
        where = f"choice {choice['index']}"
        check_finish_reason(choice.get("finish_reason"), where)
        message = choice.get("message") or {}
        check_text(message.get("content") or "", request, choice.get("finish_reason"), where)
        check_chat_logprobs(choice, request, where)
    check_usage(body.get("usage"), request, n, "usage")
    return parsed


def prompt_count(request: Mapping[str, Any]) -> int:
    prompt = request.get("prompt")
    return len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1


def check_completion(request: Mapping[str, Any], body: Any) -> Completion:
    """A non-streaming /v1/completions answer: n choices per prompt, indexed 0..n*prompts-1."""
    parsed: Completion = parse_lossless(Completion, body, "completion")
    if request.get("model"):
        require(body.get("model") == request["model"], "model", f"answered for model {body.get('model')!r}")
    expected = int(request.get("n") or 1) * prompt_count(request)
    check_indexes((c["index"] for c in body["choices"]), expected, "choices")
    for choice in body["choices"]:
        where = f"choice {choice['index']}"
        check_finish_reason(choice.get("finish_reason"), where)
        check_text(choice.get("text") or "", request, choice.get("finish_reason"), where)
        if request.get("logprobs") is None:
            require(choice.get("logprobs") is None, "logprobs-unasked", f"{where}: logprobs sent although not asked")
    check_usage(body.get("usage"), request, expected, "usage", chat=False)
    return parsed


def check_models(body: Any, expected: str | None = None) -> list[str]:
    """GET /v1/models: a list object of models the SDK parses; the configured model among them."""
    require(isinstance(body, Mapping) and body.get("object") == "list" and isinstance(body.get("data"), list),
            "models-list", f"/v1/models is not a list object: {str(body)[:200]}")
    ids = [parse_lossless(Model, item, "model entry").id for item in body["data"]]
    require(len(ids) == len(set(ids)), "models-unique", f"a model is listed twice: {ids}")
    if expected:
        require(expected in ids, "models-configured", f"the configured model {expected!r} is not listed: {ids}")
    return ids


def check_error(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """A refused request: a 4xx (never a 5xx) with OpenAI's error object. `code` may be a string
    (OpenAI), a number (vLLM sends the HTTP status) or null: the SDK keeps any of them as-is."""
    require(status < 500, "no-server-error", f"HTTP {status} (a server error) for a request the server must refuse "
                                             f"with a 4xx: {body[:300]!r}")
    require(400 <= status < 500, "error-status", f"HTTP {status}, expected a 4xx refusal: {body[:300]!r}")
    try:
        document = json.loads(body)
    except ValueError:
        raise violation("error-json", f"HTTP {status} with a body that is not JSON: {body[:300]!r}") from None
    error = document.get("error") if isinstance(document, Mapping) else None
    require(isinstance(error, Mapping), "error-shape",
            f"HTTP {status} without OpenAI's {{\"error\": {{...}}}} object: {body[:300]!r}")
    assert isinstance(error, Mapping)
    require(isinstance(error.get("message"), str) and bool(error["message"].strip()), "error-message",
            f"error.message must be a non-empty string: {dict(error)}")
    require(isinstance(error.get("type"), str) and bool(error["type"]), "error-type",
            f"error.type must be a string: {dict(error)}")
    require("param" in error and (error["param"] is None or isinstance(error["param"], str)), "error-param",
            f"error.param must be present, a string or null: {dict(error)}")
    require("code" in error and (error["code"] is None or isinstance(error["code"], (str, int))), "error-code",
            f"error.code must be present, a string, a number or null: {dict(error)}")
    return error
