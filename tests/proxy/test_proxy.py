"""The proxy against real parts: the CPU LLM engine as upstream, Redis for shared limits and the
cache, the openai SDK as client. Each test starts its own proxy process with a fresh key."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.live_parts import MODEL, Proxy, start_redis

HELLO = [{"role": "user", "content": "Say hello."}]


def client(proxy: Proxy, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=proxy.base_url, api_key=key or proxy.key, timeout=120, max_retries=0)


def test_non_streaming_chat_with_rate_limit_headers(start_proxy) -> None:
    proxy = start_proxy(":100:100000")
    raw = client(proxy).chat.completions.with_raw_response.create(model=MODEL, messages=HELLO, max_tokens=8)
    completion = raw.parse()
    assert (completion.choices[0].message.content or "").strip()
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000"


def test_streaming_chat_arrives_in_chunks(start_proxy) -> None:
    proxy = start_proxy()
    stream = client(proxy).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=16, stream=True)
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) >= 2 and "".join(pieces).strip()


def _arrivals(url: str, body: dict, key: str | None = None) -> list[float]:
    started = time.perf_counter()
    arrivals = []
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.stream("POST", url, json=body, timeout=120, headers=headers) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and '"content"' in line:
                arrivals.append(time.perf_counter() - started)
    return arrivals


def test_streaming_is_not_buffered(start_proxy) -> None:
    """Chunks must arrive spread out as the engine makes them (120 tokens take over a second on this
    engine): a buffering proxy delivers them all at once at the end, within a millisecond."""
    proxy = start_proxy()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count from 1 to 100, separated by commas."}],
            "max_tokens": 120, "stream": True, "temperature": 0}
    through = _arrivals(proxy.base_url + "/chat/completions", body, proxy.key)
    assert len(through) >= 10, f"only {len(through)} chunks: the answer is too short to tell"
    spread = through[-1] - through[0]
    assert spread >= 0.1, f"{len(through)} chunks arrived within {spread * 1e3:.1f} ms: the proxy buffers the stream"


def test_a_stream_is_charged_its_real_usage_even_when_the_client_did_not_ask(start_proxy) -> None:
    """The proxy asks the engine for the usage chunk (stream_options.include_usage) and hides it
    from a client that did not ask: the same deterministic stream costs the same either way.
    Before, a stream without usage was charged one token per event and its prompt never."""
    proxy = start_proxy()
    api = client(proxy)
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Name three colours, please."}],
               "max_tokens": 8, "temperature": 0}
    asked = list(api.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    assert asked[-1].usage is not None and asked[-1].choices == []
    real = asked[-1].usage.total_tokens
    assert proxy.metric("proxy_tokens_total") == real
    unasked = list(api.chat.completions.create(**request, stream=True))
    assert unasked and all(chunk.usage is None and chunk.choices for chunk in unasked), "a usage chunk nobody asked for"
    assert proxy.metric("proxy_tokens_total") == 2 * real


def test_text_completions_are_routed(start_proxy) -> None:
    proxy = start_proxy()
    completion = client(proxy).completions.create(model=MODEL, prompt="The sky is", max_tokens=4)
    assert completion.choices[0].text


def test_429_with_retry_after_once_the_request_limit_is_spent(start_proxy) -> None:
    proxy = start_proxy(":2:0")
    api = client(proxy)
    for _ in range(2):
        api.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as refused:
        api.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    response = refused.value.response
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.json()["error"]["type"] == "requests"


def test_429_once_the_token_limit_is_spent(start_proxy) -> None:
    proxy = start_proxy(":0:10")
    api = client(proxy)
    first = api.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20)
    assert first.usage is not None and first.usage.total_tokens >= 10, "the first answer should spend the budget"
    with pytest.raises(openai.RateLimitError) as refused:
        api.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    assert refused.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "tokens" in refused.value.response.json()["error"]["message"]


def test_one_limit_is_shared_by_two_proxies_through_redis(start_proxy, redis_container) -> None:
    first = start_proxy(":3:0", redis=redis_container)
    second = start_proxy(":3:0", redis=redis_container, PROXY_API_KEYS=first.key + ":3:0")
    second.key = first.key
    for proxy in (first, first, second):
        client(proxy).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    with pytest.raises(openai.RateLimitError):
        client(second).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)


def test_cache_hit_and_miss_for_temperature_zero_only(start_proxy, redis_container) -> None:
    proxy = start_proxy(redis=redis_container)
    api = client(proxy)
    prompt = [{"role": "user", "content": f"Name a colour. ({time.time_ns()})"}]
    miss = api.chat.completions.with_raw_response.create(model=MODEL, messages=prompt, max_tokens=6, temperature=0)
    hit = api.chat.completions.with_raw_response.create(model=MODEL, messages=prompt, max_tokens=6, temperature=0)
    assert miss.headers["x-cache"] == "miss" and hit.headers["x-cache"] == "hit"
    assert hit.parse().model_dump() == miss.parse().model_dump()
    warm = api.chat.completions.with_raw_response.create(model=MODEL, messages=prompt, max_tokens=6, temperature=0.7)
    assert "x-cache" not in warm.headers
    assert proxy.metric('proxy_cache_total{result="hit"}') == 1


def test_redis_stopped_mid_run_degrades_without_errors(start_proxy) -> None:
    redis = start_redis()
    try:
        proxy = start_proxy(":50:0", redis=redis)
        api = client(proxy)
        prompt = [{"role": "user", "content": "Say yes."}]
        api.chat.completions.create(model=MODEL, messages=prompt, max_tokens=2, temperature=0)
        assert httpx.get(proxy.url + "/ready", timeout=10).status_code == 200
        redis.docker("stop")
        for _ in range(3):
            raw = api.chat.completions.with_raw_response.create(model=MODEL, messages=prompt, max_tokens=2, temperature=0)
            assert raw.http_response.status_code == 200
            assert "x-cache" not in raw.headers or raw.headers["x-cache"] == "miss"
        assert proxy.metric('proxy_redis_degraded{component="limits"}') == 1
        assert proxy.metric('proxy_redis_degraded{component="cache"}') == 1
        assert httpx.get(proxy.url + "/ready", timeout=10).status_code == 503
        log = proxy.log_text()
        assert log.count("rate limits fall back to in-process windows") == 1, "the fallback is logged once"
        assert log.count("the response cache is bypassed") == 1
    finally:
        redis.remove()


def test_upstream_refusing_connections_is_a_502(start_proxy) -> None:
    proxy = start_proxy(upstream="http://127.0.0.1:9/v1")
    with pytest.raises(openai.APIStatusError) as failed:
        client(proxy).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    assert failed.value.status_code == 502
    assert failed.value.response.json()["error"]["code"] == "upstream_unreachable"


def test_malformed_json_is_a_400(start_proxy) -> None:
    proxy = start_proxy()
    response = httpx.post(proxy.base_url + "/chat/completions", content=b'{"model": "x", "messages": [',
                          headers={"Authorization": f"Bearer {proxy.key}", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_or_wrong_key_is_a_401(start_proxy) -> None:
    proxy = start_proxy()
    missing = httpx.post(proxy.base_url + "/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(proxy, key="sk-wrong").chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)


def test_unknown_model_is_a_404(start_proxy) -> None:
    proxy = start_proxy()
    with pytest.raises(openai.NotFoundError) as missing:
        client(proxy).chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=1)
    assert missing.value.response.json()["error"]["code"] == "model_not_found"


def test_models_lists_the_upstream_models(start_proxy) -> None:
    proxy = start_proxy()
    assert MODEL in [model.id for model in client(proxy).models.list()]


def test_client_disconnect_mid_stream_cancels_the_upstream_request(start_proxy) -> None:
    proxy = start_proxy()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to 500."}], "max_tokens": 400, "stream": True}
    with httpx.stream("POST", proxy.base_url + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {proxy.key}"}) as response:
        received = 0
        for line in response.iter_lines():
            if line.startswith("data:"):
                received += 1
            if received >= 3:
                break  # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 10
    while proxy.metric("proxy_upstream_cancelled_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proxy.metric("proxy_upstream_cancelled_total") == 1
    events = [json.loads(line) for line in proxy.log_text().splitlines() if line.startswith("{")]
    streamed = [e for e in events if e.get("event") == "request" and e.get("stream")]
    assert streamed and streamed[-1]["completed"] is False and streamed[-1]["events"] < 100


def test_logs_carry_neither_keys_nor_prompts(start_proxy) -> None:
    proxy = start_proxy()
    secret_prompt = f"zebra-{time.time_ns()}"
    client(proxy).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": secret_prompt}], max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        client(proxy, key="sk-wrong-key-in-log").models.list()
    log = proxy.log_text()
    assert '"event":"request"' in log
    assert proxy.key not in log and "sk-wrong-key-in-log" not in log and secret_prompt not in log


def test_metrics_and_openapi(start_proxy) -> None:
    proxy = start_proxy()
    client(proxy).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    assert proxy.metric('proxy_requests_total{endpoint="/v1/chat/completions",status="200"}') == 1
    paths = httpx.get(proxy.url + "/openapi.json", timeout=10).json()["paths"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health", "/ready",
            "/metrics"} <= set(paths)


def test_schemathesis_finds_no_server_error(start_proxy, tmp_path: Path) -> None:
    proxy = start_proxy()
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", proxy.url + "/openapi.json",
               "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {proxy.key}",
               "--max-examples", "25", "--seed", "1", "--request-timeout", "60"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    tested = [line for line in result.stdout.splitlines() if "/v1/chat/completions" in line]
    assert tested, f"schemathesis did not exercise the chat endpoint:\n{result.stdout[-2000:]}"
