"""What the proxy decides and charges (audit findings, issue 14): decisions from the validated
request with strict types, the prompt charged on every stream, the usage chunk asked for upstream
and hidden from a client that did not ask, tokens reserved at admission (Redis and in-process),
absurd usage clamped, and only real answers cached. The scripted upstream (scripted.py) stands
in for the engine; the last test uses the real one."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.live_parts import MODEL, Proxy
from tests.proxy.scripted import HELLO, openai_error


def _post(proxy: Proxy, body: dict[str, Any], timeout: float = 30) -> httpx.Response:
    return httpx.post(proxy.base_url + "/chat/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {proxy.key}"})


def _events(proxy: Proxy, body: dict[str, Any]) -> list[Any]:
    """The data of a stream's events, parsed ("[DONE]" as it is)."""
    with httpx.stream("POST", proxy.base_url + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {proxy.key}"}) as stream:
        assert stream.status_code == 200, stream.read()[:300]
        lines = [line[5:].strip() for line in stream.iter_lines() if line.startswith("data:")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


# 1. Decisions from the validated request, with strict types.

WRONG_TYPES = {  # case: (fields of the body, the error's param)
    "stream 'false'": ({"stream": "false"}, "stream"),
    "stream 1": ({"stream": 1}, "stream"),
    "max_tokens '5'": ({"max_tokens": "5"}, "max_tokens"),
    "max_tokens 5.0": ({"max_tokens": 5.0}, "max_tokens"),
    "temperature '0'": ({"temperature": "0"}, "temperature"),
    "temperature true": ({"temperature": True}, "temperature"),
    "n '2'": ({"n": "2"}, "n"),
    "include_usage 'yes'": ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_a_wrong_type_for_a_field_the_proxy_decides_on_is_a_400(start_proxy, scripted, case: str) -> None:
    """`"stream": "false"` passed a lax validation (it is False there) but took the streaming path
    (the raw "false" is truthy) and was charged 0 tokens."""
    upstream, script = scripted
    proxy = start_proxy(upstream=upstream)
    fields, param = WRONG_TYPES[case]
    response = _post(proxy, {"model": MODEL, "messages": HELLO, **fields})
    assert response.status_code == 400, response.text[:300]
    error = openai_error(response.content)
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert script.served == 0


@pytest.mark.parametrize("stream", [False, None], ids=["false", "null"])
def test_stream_false_or_null_is_a_plain_answer(start_proxy, scripted, stream: bool | None) -> None:
    upstream, _ = scripted
    proxy = start_proxy(upstream=upstream)
    response = _post(proxy, {"model": MODEL, "messages": HELLO, "stream": stream})
    assert response.status_code == 200 and response.json()["object"] == "chat.completion", response.text[:300]


# 2. The prompt is always charged; usage asked for upstream, hidden unless the client asked.

def test_a_stream_without_usage_is_charged_its_prompt(start_proxy, scripted) -> None:
    """An upstream that sends no usage chunk: a 1000-word prompt cost 2 tokens (one per event)."""
    upstream, script = scripted
    script.stream_usage = False
    proxy = start_proxy(upstream=upstream)
    prompt = [{"role": "user", "content": "word " * 1000}]  # 5000 characters: about 1250 tokens
    events = _events(proxy, {"model": MODEL, "messages": prompt, "stream": True})
    assert events[-1] == "[DONE]"
    charged = proxy.metric("proxy_tokens_total")
    assert 1000 <= charged <= 1300, f"a 5000-character prompt was charged {charged} tokens"


def test_streams_ask_the_upstream_for_usage_and_hide_it_unless_asked(start_proxy, scripted) -> None:
    upstream, script = scripted
    script.usage = {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}
    proxy = start_proxy(upstream=upstream)
    unasked = _events(proxy, {"model": MODEL, "messages": HELLO, "stream": True})
    assert script.requests[-1].get("stream_options", {}).get("include_usage") is True, script.requests[-1]
    chunks = [event for event in unasked if event != "[DONE]"]
    assert chunks and all(chunk.get("usage") is None and chunk["choices"] for chunk in chunks), chunks
    assert unasked[-1] == "[DONE]"
    assert proxy.metric("proxy_tokens_total") == 32, "the stream is charged the usage the upstream sent"
    asked = _events(proxy, {"model": MODEL, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}})
    assert asked[-2] == {"choices": [], "usage": script.usage} and asked[-1] == "[DONE]"
    assert proxy.metric("proxy_tokens_total") == 64


# 3. Tokens reserved at admission, settled afterwards; absurd usage clamped.

@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_parallel_requests_cannot_overspend_the_token_budget(start_proxy, redis_container, scripted, shared: bool) -> None:
    """20 parallel requests each checked the same remaining budget and spent 900 tokens of 100."""
    upstream, script = scripted
    script.usage = {"prompt_tokens": 5, "completion_tokens": 40, "total_tokens": 45}
    script.delay = 1.5  # every request is admitted before the first answer is charged
    proxy = start_proxy(":0:100", upstream=upstream, redis=redis_container if shared else None)
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 40}
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: _post(proxy, body, timeout=60), range(20)))
    statuses = sorted(answer.status_code for answer in answers)
    served = statuses.count(200)
    assert 1 <= served <= 2 and set(statuses) == {200, 429}, statuses
    assert served * 45 <= 100, f"{served * 45} tokens spent of a budget of 100"
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"]["type"] == "tokens" and 1 <= int(refused.headers["retry-after"]) <= 60


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_a_reservation_is_settled_to_the_real_usage(start_proxy, redis_container, scripted, shared: bool) -> None:
    """A guard of the reservation: what was booked beyond the real usage comes back."""
    upstream, script = scripted
    script.usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    proxy = start_proxy(":0:100", upstream=upstream, redis=redis_container if shared else None)
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 85}  # books 88 of 100: fits once the last is settled
    for _ in range(3):
        answer = _post(proxy, body)
        assert answer.status_code == 200, answer.text[:300]
    assert int(_post(proxy, {**body, "max_tokens": 1}).headers["x-ratelimit-remaining-tokens"]) >= 80


def test_an_absurd_usage_is_clamped_not_an_overflow(start_proxy, redis_container, scripted) -> None:
    """total_tokens 10**30 overflowed Redis's 64-bit counter: the limits fell back to in-process."""
    upstream, script = scripted
    script.usage = {"prompt_tokens": 1, "completion_tokens": 10**30, "total_tokens": 10**30}
    proxy = start_proxy(":0:1000", upstream=upstream, redis=redis_container)
    assert _post(proxy, {"model": MODEL, "messages": HELLO}).status_code == 200
    refused = _post(proxy, {"model": MODEL, "messages": HELLO})
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens", refused.text[:300]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert proxy.metric('proxy_redis_degraded{component="limits"}') == 0
    assert "fall back to in-process" not in proxy.log_text()


# 4. Only real answers are cached.

NOT_ANSWERS = {
    "text/plain": (200, "text/plain", b"upstream hiccup"),
    "truncated JSON": (200, "application/json", b'{"id": "cmpl-1", "choices": [{"ind'),
    "JSON error object": (200, "application/json", b'{"error": {"message": "overloaded", "type": "server_error"}}'),
}


@pytest.mark.parametrize("case", list(NOT_ANSWERS))
def test_an_upstream_200_that_is_not_an_answer_is_not_cached(start_proxy, redis_container, scripted, case: str) -> None:
    upstream, script = scripted
    script.error = NOT_ANSWERS[case]
    proxy = start_proxy(upstream=upstream, redis=redis_container)
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"{case} {proxy.key}"}], "temperature": 0}
    assert _post(proxy, body).headers["x-cache"] == "miss"
    again = _post(proxy, body)
    assert again.headers["x-cache"] == "miss", f"an upstream's {case} 200 was cached"
    script.error = None
    assert [_post(proxy, body).headers["x-cache"] for _ in range(2)] == ["miss", "hit"]
