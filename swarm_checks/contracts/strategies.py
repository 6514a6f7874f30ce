"""Hypothesis strategies over OpenAI's documented request space, valid and invalid.

Valid requests stay inside what one engine can answer quickly (a token budget of a few tokens,
prompts that fit the model's context with room for the answer) but cover the parameters a client
may send: system prompts, multi-turn, unicode and long messages, content parts, sampling
parameters, stop sequences, seeds, `n`, penalties, logprobs, response formats, streaming with
usage. What an engine cannot do (a feature the deployment lacks) is left out through `Features`,
whose reasons the suite reports. Invalid requests change one field of a valid request to a
wrong type or an out-of-range value, or break the body itself.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

WORDS = ("the swarm serves models on many machines and every answer counts tokens while a "
         "client streams text back to the user who asked for it").split()
# Non-numeric, so that lax validators (pydantic parses "5" and "nan" as numbers) must refuse them.
NOT_A_NUMBER = st.one_of(
    st.text(string.ascii_letters, min_size=1, max_size=8).map(lambda s: "x" + s),
    st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=1))
NOT_AN_INT = st.one_of(NOT_A_NUMBER, st.floats(0.1, 100.0).filter(lambda f: not f.is_integer()))
UNKNOWN_MODEL_PREFIX = "swarm-no-such-model-"


@dataclass(frozen=True)
class Features:
    """What the endpoint under test serves, learnt from it (see properties.discover_features).
    A `None` reason means supported; a string says why the feature is left out."""

    model: str
    max_model_len: int = 2048
    max_tokens: int = 16  # the token budget of generated requests: keeps each answer short
    max_n: int = 3
    greedy_n: str | None = None  # why n > 1 is refused at temperature 0 (vLLM: "n must be 1 when using greedy sampling")
    json_schema: str | None = None
    logprobs: str | None = None

    @property
    def prompt_bytes(self) -> int:
        """UTF-8 bytes all messages may take: a byte-level tokenizer makes at most one token of a
        byte, and the chat template adds its own (about 150 tokens for five messages)."""
        return max(64, self.max_model_len - self.max_tokens - 200)


def _text(max_size: int) -> st.SearchStrategy[str]:
    """Unicode (no surrogates: JSON cannot carry them), never empty."""
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=max_size)


def _sentence(max_words: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(WORDS), min_size=1, max_size=max_words).map(" ".join)


def contents(features: Features, long: bool) -> st.SearchStrategy[str]:
    """A message's text: unicode, a sentence, or (for the last message) a long text."""
    short = st.one_of(_text(30), _sentence(12))
    if not long:
        return short
    # Every message before it takes at most 30 chars x 4 bytes or 12 words, about 120 bytes each.
    words = max(8, (features.prompt_bytes - 5 * 120) // 7)
    return st.one_of(short, _sentence(words).map(lambda s: s + "."))


def messages(features: Features) -> st.SearchStrategy[list[dict[str, Any]]]:
    """An optional system prompt, 0-2 earlier user/assistant turns, then the user's message."""
    def message(role: str, text: str, parts: bool) -> dict[str, Any]:
        content: Any = [{"type": "text", "text": text}] if parts else text
        return {"role": role, "content": content}

    turn = st.tuples(contents(features, False), contents(features, False))
    return st.builds(
        lambda system, turns, last, parts: (
            ([message("system", system, False)] if system else [])
            + [m for user, assistant in turns for m in (message("user", user, False), message("assistant", assistant, False))]
            + [message("user", last, parts)]),
        st.none() | contents(features, False), st.lists(turn, max_size=2), contents(features, True), st.booleans())


def _stops() -> st.SearchStrategy[Any]:
    stop = st.text(string.ascii_letters + string.digits + " .,!?\n", min_size=1, max_size=4)
    return st.one_of(stop, st.lists(stop, min_size=1, max_size=4, unique=True))


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _optional(draw: st.DrawFn, request: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    """Add `key` to the request or leave it out: leaving a parameter out is a request too."""
    if draw(st.booleans()):
        request[key] = draw(strategy)


def _sampling(draw: st.DrawFn, features: Features, request: dict[str, Any], chat: bool) -> None:
    # Chat takes max_completion_tokens (OpenAI's newer name) too; /v1/completions only max_tokens.
    budget_key = draw(st.sampled_from(["max_tokens", "max_tokens", "max_completion_tokens"])) if chat else "max_tokens"
    request[budget_key] = draw(st.integers(1, features.max_tokens))
    _optional(draw, request, "n", st.integers(1, features.max_n))
    temperature = st.one_of(st.sampled_from([0.0, 1.0]), _floats(0.0, 2.0))
    if features.greedy_n and request.get("n", 1) > 1:
        temperature = _floats(0.01, 2.0)  # the engine refuses several greedy choices (Features.greedy_n)
    _optional(draw, request, "temperature", temperature)
    _optional(draw, request, "top_p", st.floats(0.0, 1.0, exclude_min=True))
    _optional(draw, request, "stop", _stops())
    _optional(draw, request, "seed", st.integers(0, 2**31 - 1))
    _optional(draw, request, "presence_penalty", _floats(-2.0, 2.0))
    _optional(draw, request, "frequency_penalty", _floats(-2.0, 2.0))


@st.composite
def chat_requests(draw: st.DrawFn, features: Features, stream: bool = False) -> dict[str, Any]:
    """A valid /v1/chat/completions body."""
    request: dict[str, Any] = {"model": features.model, "messages": draw(messages(features))}
    _sampling(draw, features, request, chat=True)
    if features.logprobs is None and draw(st.booleans()):
        request["logprobs"] = True
        _optional(draw, request, "top_logprobs", st.integers(0, 20))
    formats = [{"type": "text"}, {"type": "json_object"}]
    if features.json_schema is None:
        formats.append({"type": "json_schema", "json_schema": {"name": "answer", "schema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}})
    _optional(draw, request, "response_format", st.sampled_from(formats))
    if stream:
        request["stream"] = True
        _optional(draw, request, "stream_options", st.builds(lambda usage: {"include_usage": usage}, st.booleans()))
    return request


@st.composite
def completion_requests(draw: st.DrawFn, features: Features) -> dict[str, Any]:
    """A valid /v1/completions body, streaming or not; a prompt or a list of prompts. A prompt
    has a letter or a digit: one of control characters alone ("\u0006") is no token to
    SmolLM2's tokenizer, and vLLM rightly refuses an empty prompt (a CI run drew one and failed)."""
    prompt = st.one_of(_text(30).filter(lambda text: any(char.isalnum() for char in text)), _sentence(40))
    request: dict[str, Any] = {"model": features.model,
                               "prompt": draw(st.one_of(prompt, st.lists(prompt, min_size=1, max_size=2)))}
    _sampling(draw, features, request, chat=False)
    if features.logprobs is None:
        _optional(draw, request, "logprobs", st.integers(0, 5))
    if draw(st.booleans()):
        request["stream"] = True
        _optional(draw, request, "stream_options", st.builds(lambda usage: {"include_usage": usage}, st.booleans()))
    return request


def _out_of_range(features: Features) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "max_tokens": st.one_of(st.integers(-10, 0), st.integers(features.max_model_len + 1, 10**7), NOT_AN_INT),
        "temperature": st.one_of(_floats(-100.0, -0.01), _floats(2.01, 100.0), NOT_A_NUMBER),
        "top_p": st.one_of(_floats(-10.0, 0.0), _floats(1.01, 10.0), NOT_A_NUMBER),
        "n": st.one_of(st.integers(-5, 0), NOT_AN_INT),
        "presence_penalty": st.one_of(_floats(-100.0, -2.01), _floats(2.01, 100.0), NOT_A_NUMBER),
        "frequency_penalty": st.one_of(_floats(-100.0, -2.01), _floats(2.01, 100.0), NOT_A_NUMBER),
        "seed": st.one_of(st.integers(2**64, 2**70), NOT_AN_INT),
        "stop": st.one_of(st.integers(), st.dictionaries(st.just("a"), st.integers(), min_size=1)),
        "stream": st.one_of(st.lists(st.booleans(), min_size=1, max_size=2), st.just({"a": 1})),
        "response_format": st.one_of(st.just({"type": "no-such-format"}), st.just("json")),
        "model": st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8).map(UNKNOWN_MODEL_PREFIX.__add__),
    }


@st.composite
def invalid_chat_requests(draw: st.DrawFn, features: Features) -> dict[str, Any] | bytes:
    """A chat request the API must refuse with a 4xx: one field wrong, or the body itself."""
    base: dict[str, Any] = {"model": features.model, "messages": [{"role": "user", "content": "Say hi."}],
                            "max_tokens": 2}
    fields = _out_of_range(features)
    fields["messages"] = st.one_of(st.just([]), _text(10), st.lists(st.integers(), min_size=1, max_size=2),
                                   st.just([{"content": "a message without a role"}]))
    if features.logprobs is None:
        fields["top_logprobs"] = st.integers(21, 1000)
    kind = draw(st.sampled_from(sorted(fields) + ["body", "context"]))
    if kind == "body":
        return draw(st.sampled_from([b"{", b"[1, 2]", b"null", b'"a string"', b'{"model": "x", "messages": [']))
    if kind == "context":
        # A prompt longer than the context: about one token per word.
        base["messages"] = [{"role": "user", "content": "word " * (features.max_model_len + 64)}]
        return base
    base[kind] = draw(fields[kind])
    if kind == "top_logprobs":
        base["logprobs"] = True
    return base


@st.composite
def invalid_completion_requests(draw: st.DrawFn, features: Features) -> dict[str, Any] | bytes:
    """A /v1/completions request the API must refuse: one field wrong, or no prompt."""
    base: dict[str, Any] = {"model": features.model, "prompt": "Say hi.", "max_tokens": 2}
    fields = _out_of_range(features)
    fields.pop("response_format")
    fields["prompt"] = st.one_of(st.just(""), st.just({"a": 1}), st.just([[]]), st.just(["hi", ""]))
    kind = draw(st.sampled_from(sorted(fields) + ["missing-prompt"]))
    if kind == "missing-prompt":
        del base["prompt"]
        return base
    base[kind] = draw(fields[kind])
    return base


def tokenizable_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """Text a byte-level BPE tokenizer must give back unchanged: assigned, non-private,
    non-control characters plus tab and newline. (SmolLM2's tokenizer drops some C0 control
    characters and unassigned code points: measured, and no client relies on them.)"""
    alphabet = st.characters(exclude_categories=("Cs", "Cn", "Co", "Cc"), include_characters="\t\n")
    return st.text(alphabet, min_size=1, max_size=max_size)
