"""The contract checkers on canned answers (no engine): what they accept, what they refuse and
with which rule, the bounded shrinking, the assets' promises, the generated requests' bounds,
and the --contract-examples option."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_checks.contracts import (
    FINISH_REASONS, Budget, ContractViolation, Features, assets, check_chat_completion, check_chat_stream, check_error,
    parse_examples, parse_sse, proxy, run_property, strategies,
)
from swarm_checks.contracts.properties import BoundedCheck

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": None,
                 "finish_reason": "length"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def chunk(index: int = 0, content: str = "a", finish: str | None = None, **extra: Any) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": {"content": content}, "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = chunk(content="He") + chunk(content="llo", finish="length") + b"data: [DONE]\n\n"


def rule_of(run: Any) -> str:
    with pytest.raises(ContractViolation) as caught:
        run()
    return caught.value.rule


def test_a_valid_answer_and_stream_pass() -> None:
    assert check_chat_completion(REQUEST, ANSWER).choices[0].message.content == "Hello"
    assert check_chat_stream(REQUEST, STREAM).texts == {0: "Hello"}
    # CRLF line ends and comments are valid SSE.
    assert len(parse_sse(b": keep-alive\r\n" + STREAM.replace(b"\n", b"\r\n"))) == 2


@pytest.mark.parametrize("change, rule", [
    (lambda a: a["choices"][0].update(logprobs={"content": []}), "logprobs-unasked"),
    (lambda a: a.update(model="other"), "model"),
    (lambda a: a.update(object="text_completion"), "sdk-parse"),
    (lambda a: a["choices"][0]["message"].update(role="user"), "sdk-parse"),
    (lambda a: a["choices"][0].update(finish_reason="done"), "sdk-parse"),
    (lambda a: a.update(created="1"), "sdk-lossless"),
    (lambda a: a["choices"][0].update(index=1), "choice-indexes"),
    (lambda a: a.pop("usage"), "usage-present"),
    (lambda a: a["usage"].update(prompt_tokens=0, total_tokens=4), "usage-prompt"),
])
def test_each_answer_rule_refuses_its_break(change: Any, rule: str) -> None:
    answer = copy.deepcopy(ANSWER)
    change(answer)
    assert rule_of(lambda: check_chat_completion(REQUEST, answer)) == rule


def test_logprob_rules() -> None:
    request = {**REQUEST, "logprobs": True, "top_logprobs": 2}
    entry = {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [
        {"token": "a", "logprob": -0.5, "bytes": [97]}, {"token": "b", "logprob": -1.0, "bytes": [98]}]}
    answer = copy.deepcopy(ANSWER)
    answer["choices"][0]["logprobs"] = {"content": [copy.deepcopy(entry)]}
    check_chat_completion(request, answer)
    answer["choices"][0]["logprobs"]["content"][0]["logprob"] = 0.5
    assert rule_of(lambda: check_chat_completion(request, answer)) == "logprob-range"
    answer["choices"][0]["logprobs"] = {"content": [{**entry, "top_logprobs": entry["top_logprobs"][:1]}]}
    assert rule_of(lambda: check_chat_completion(request, answer)) == "top-logprobs-count"
    answer["choices"][0]["logprobs"] = None
    assert rule_of(lambda: check_chat_completion(request, answer)) == "logprobs-present"


@pytest.mark.parametrize("raw, rule", [
    (STREAM.replace(b"data: [DONE]\n\n", b""), "sse-done"),
    (b"data: [DONE]\n\n" + STREAM, "sse-done-last"),
    (chunk(content="He", finish="length") + b"data: [DONE]", "sse-terminated"),
    (b"data: {not json\n\n" + STREAM, "sse-json"),
    (b'data: {"error": {"message": "boom"}}\n\n' + STREAM, "sse-error-event"),
    (chunk(content="He", finish="length") + chunk(content="x") + b"data: [DONE]\n\n", "content-after-finish"),
    (chunk(content="He") + b"data: [DONE]\n\n", "one-finish-reason"),
    (chunk(content="He", finish="length", usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
     + b"data: [DONE]\n\n", "usage-unasked"),
    (STREAM.replace(b'"model": "m"', b'"model": "n"', 1), "chunk-model"),
    (b"\xff" + STREAM, "sse-utf8"),
])
def test_each_stream_rule_refuses_its_break(raw: bytes, rule: str) -> None:
    assert rule_of(lambda: check_chat_stream(REQUEST, raw)) == rule


def test_the_usage_chunk_rules() -> None:
    request = {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    last = b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                   "choices": [], "usage": usage}).encode() + b"\n\n"
    good = STREAM.replace(b"data: [DONE]", last + b"data: [DONE]")
    assert check_chat_stream(request, good).usage == usage
    assert rule_of(lambda: check_chat_stream(request, STREAM)) == "usage-chunk-last"
    not_empty = good.replace(b'"choices": [], "usage"', b'"choices": [{"index": 0, "delta": {}}], "usage"')
    assert rule_of(lambda: check_chat_stream(request, not_empty)) == "usage-chunk-empty"


@pytest.mark.parametrize("status, body, rule", [
    (500, b'{"error": {"message": "x", "type": "t", "param": null, "code": null}}', "no-server-error"),
    (200, b"{}", "error-status"),
    (400, b"not json", "error-json"),
    (404, b'{"detail": "Not Found"}', "error-shape"),
    (400, b'{"error": {"message": "", "type": "t", "param": null, "code": null}}', "error-message"),
    (400, b'{"error": {"message": "m", "param": null, "code": null}}', "error-type"),
    (400, b'{"error": {"message": "m", "type": "t", "code": null}}', "error-param"),
    (400, b'{"error": {"message": "m", "type": "t", "param": null, "code": []}}', "error-code"),
])
def test_each_error_rule_refuses_its_break(status: int, body: bytes, rule: str) -> None:
    assert rule_of(lambda: check_error(status, body)) == rule


def test_error_codes_may_be_strings_numbers_or_null() -> None:
    for code in ('"model_not_found"', "404", "null"):
        check_error(404, b'{"error": {"message": "m", "type": "t", "param": "model", "code": %s}}' % code.encode())


def test_shrinking_stops_after_its_budget() -> None:
    """After the first failure at most `budget` new examples are tried; the reported example is
    one that really failed."""
    tried: list[int] = []

    def check(value: int) -> None:
        tried.append(value)
        assert value < 1000

    with pytest.raises(AssertionError) as caught:
        run_property("numbers", st.integers(0, 10**9), check, Budget(examples=50, seed=1, shrink_requests=4))
    first = next(i for i, value in enumerate(tried) if value >= 1000)
    assert len(set(tried[first + 1:]) - {tried[first]}) <= 4 + 1
    notes = "\n".join(caught.value.__notes__)
    assert "hypothesis seed 1" in notes and "example: " in notes


def test_bounded_check_counts_calls() -> None:
    bounded = BoundedCheck(lambda value: None, 3)
    for value in range(5):
        bounded(value)
    assert bounded.calls == 5 and bounded.first_failure is None


FEATURES = Features(model="m", max_model_len=2048, max_tokens=16)


@settings(max_examples=200, database=None, deadline=None)
@given(strategies.chat_requests(FEATURES))
def test_generated_chat_requests_fit_the_context(request: dict[str, Any]) -> None:
    """A byte-level tokenizer makes at most a token of a byte: the messages fit the context with
    the answer's budget and the template's overhead."""
    size = sum(len(json.dumps(m["content"], ensure_ascii=False).encode()) for m in request["messages"])
    assert size + FEATURES.max_tokens + 200 <= FEATURES.max_model_len
    assert request["messages"][-1]["role"] == "user"
    assert 1 <= request.get("max_tokens", request.get("max_completion_tokens")) <= FEATURES.max_tokens
    assert "logprobs" not in request or FEATURES.logprobs is None


@settings(max_examples=300, database=None, deadline=None)
@given(strategies.completion_requests(FEATURES))
def test_generated_completion_prompts_are_never_empty_to_a_tokenizer(request: dict[str, Any]) -> None:
    """A CI run drew the prompt "\u0006": no token to SmolLM2's tokenizer, so vLLM refused the
    "valid" request with a 400 (the decoder prompt cannot be empty) and the contract failed."""
    prompts = request["prompt"] if isinstance(request["prompt"], list) else [request["prompt"]]
    assert all(any(char.isalnum() for char in prompt) for prompt in prompts), prompts


@settings(max_examples=100, database=None, deadline=None)
@given(strategies.invalid_chat_requests(Features(model="m", logprobs="no")))
def test_invalid_requests_never_ask_for_logprobs_when_they_are_unavailable(request: Any) -> None:
    assert isinstance(request, bytes) or "top_logprobs" not in request
    if isinstance(request, dict) and not str(request.get("model", "m")).startswith(strategies.UNKNOWN_MODEL_PREFIX):
        assert request.get("model") in (None, "m")


def test_assets_promises() -> None:
    assert assets.image_version("postgres:17.2-bookworm") == "17.2"
    assert assets.image_version("vllm/vllm-openai:v0.11.0") == "0.11.0"
    assert assets.image_version("registry:5000/ray-head") is None
    assert assets.version_matches("7.0", "7.0.15") and not assets.version_matches("7.4.2", "7.4.20")
    rendered = {"services": {
        "redis": {"image": "redis:7.4.2-alpine", "command": ["redis-server", "--maxmemory-policy", "noeviction",
                                                            "--appendonly", "yes"]},
        "postgres": {"image": "vllm-swarm/postgres:17-trixie",
                     "environment": {"POSTGRES_USER": "swarm", "POSTGRES_DB": "langfuse", "LANGFLOW_DB": "langflow"}}}}
    redis = assets.redis_promise(assets.service_assets(rendered, "redis"))  # type: ignore[arg-type]
    assert (redis.maxmemory_policy, redis.appendonly, redis.version) == ("noeviction", "yes", "7.4.2")
    pg = assets.postgres_promise(assets.service_assets(rendered, "postgres"))  # type: ignore[arg-type]
    assert pg.major == "17" and pg.databases == {"langfuse": "swarm", "langflow": "swarm"}
    assert assets.service_assets(rendered, "nope") is None


def test_schemathesis_bodies_are_bounded_but_invalid_values_kept() -> None:
    assert proxy._bounded({"model": "x"}, "m", True, 8) == {"model": "m", "max_tokens": 8}
    assert proxy._bounded({"model": "m", "max_tokens": 1500}, "m", False, 8)["max_tokens"] == 8
    assert proxy._bounded({"model": "m", "max_tokens": -3}, "m", False, 8)["max_tokens"] == -3
    assert proxy._bounded({"model": "m", "max_tokens": "x"}, "m", False, 8)["max_tokens"] == "x"
    assert proxy._bounded({"model": "other", "max_tokens": 1500}, "m", False, 8)["max_tokens"] == 1500
    assert proxy._bounded({"model": "m", "max_completion_tokens": 424}, "m", False, 8)["max_completion_tokens"] == 8
    assert proxy._bounded({"model": "m", "max_completion_tokens": "x"}, "m", False, 8)["max_completion_tokens"] == "x"


def test_streams_of_prompts_vllm_refuses_only_once_streaming_are_left_out() -> None:
    """A prompt of control characters only ("\x06") is no token to SmolLM2's tokenizer: streamed,
    vLLM answers 200 and an error event; such a draw would fail the stream rules at random."""
    from swarm_checks.contracts.known_defects import streams_an_error_for_an_empty_prompt as left_out
    assert left_out({"stream": True, "prompt": ["hi", ""]})
    assert left_out({"stream": True, "prompt": "\x06"}) and left_out({"stream": True, "prompt": ["a", "\x14\x16"]})
    assert not left_out({"stream": True, "prompt": "hi \x06"}) and not left_out({"prompt": "\x06"})
    assert proxy._bounded(b"\x00", "m", True, 8) == b"\x00"
    assert not proxy.utf8(b"\x80") and proxy.utf8(b"{}") and proxy.utf8({"a": 1})


@pytest.mark.parametrize("value, examples", [(None, 5), ("", 5), ("12", 12), (3, 3)])
def test_contract_examples_parse(value: Any, examples: int) -> None:
    assert parse_examples(value) == examples


@pytest.mark.parametrize("value", ["0", "-1", "many", "2.5"])
def test_contract_examples_refuse_nonsense(value: str) -> None:
    with pytest.raises(ValueError, match="--contract-examples"):
        parse_examples(value)


def test_the_option_is_registered_with_its_environment_variable(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_show(swarm_settings):\n    print('EXAMPLES', swarm_settings.contract_examples)\n")
    assert "--contract-examples" in "\n".join(pytester.runpytest("--help").outlines)
    monkeypatch.setenv("SWARM_CONTRACT_EXAMPLES", "9")
    pytester.runpytest("-s").stdout.fnmatch_lines(["*EXAMPLES 9*"])
    pytester.runpytest("-s", "--contract-examples=4").stdout.fnmatch_lines(["*EXAMPLES 4*"])


def test_finish_reasons_outside_openais_set_are_refused() -> None:
    """Restated beside the SDK's types, which refuse them first (rule sdk-parse)."""
    from swarm_checks.contracts.openai_contract import check_finish_reason

    for reason in sorted(FINISH_REASONS):
        check_finish_reason(reason, "here")
    assert rule_of(lambda: check_finish_reason("done", "here")) == "finish-reason"
