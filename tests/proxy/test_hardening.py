"""The proxy against hostile or odd input (security audit, issue 14): the key and the limits are
decided from the headers before the body is read, bodies and message lists are bounded, the cache
is scoped per key, and no input gives a 500 outside OpenAI's error shape.

A scripted upstream (scripted.py, a thread of this process) stands in for the engine where a test
needs an answer the engine would never give (a `usage` that is a string) or many cheap answers."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live_parts import MODEL, Proxy, rss_peak_kib
from tests.proxy.scripted import HELLO, openai_error


def _post_raw(proxy: Proxy, headers: dict[str, str], chunks: Iterator[bytes], timeout: float = 60.0) -> tuple[int, bytes, float]:
    """POST /v1/chat/completions on a raw socket, sending the body from a thread while the answer is
    read: (status, body, seconds to the status line). A server that answers early and stops reading
    makes the sender stop (broken pipe), which is the point, not an error."""
    address = urlsplit(proxy.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=timeout)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n{head}\r\n".encode())
    answered = threading.Event()

    def send() -> None:
        try:
            for chunk in chunks:
                if answered.is_set():
                    return
                sock.sendall(chunk)
        except OSError:
            return

    started = time.perf_counter()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
        elapsed = time.perf_counter() - started
        answered.set()
        head_text, _, body = received.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head_text.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            body += piece
    finally:
        answered.set()
        sock.close()
        sender.join(timeout=10)
    status = int(head_text.split(b" ")[1]) if head_text else 0
    return status, body, elapsed


def _huge_chat_body(megabytes: int) -> tuple[int, Iterator[bytes]]:
    """A valid chat body of about `megabytes` MB (one long message), as (length, 64 KiB chunks)."""
    start, end = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": ""}]}).encode().split(b'""')
    filler = megabytes * 1_000_000
    piece = b"a" * 65536

    def chunks() -> Iterator[bytes]:
        yield start + b'"'
        left = filler
        while left > 0:
            yield piece[:left]
            left -= len(piece)
        yield b'"' + end

    return len(start) + filler + 2 + len(end), chunks()


# 1. Memory without a key: decided from the headers, bodies bounded.

def test_huge_body_without_a_key_is_refused_before_it_is_read(start_proxy) -> None:
    proxy = start_proxy()
    assert httpx.get(proxy.url + "/v1/models", timeout=30).status_code == 401  # warm: the 401 path has run once
    before = rss_peak_kib(proxy)
    length, chunks = _huge_chat_body(50)
    status, body, elapsed = _post_raw(proxy, {"Content-Type": "application/json", "Content-Length": str(length)}, chunks)
    grown_mib = (rss_peak_kib(proxy) - before) / 1024
    assert status == 401, body[:300]
    assert openai_error(body)["code"] == "invalid_api_key"
    assert elapsed < 5, f"the 401 took {elapsed:.1f} s: the body was read first"
    assert grown_mib < 16, f"the proxy's peak RSS grew by {grown_mib:.0f} MiB for a request without a key"


def test_huge_chunked_body_with_a_wrong_key_is_refused_before_it_is_read(start_proxy) -> None:
    proxy = start_proxy()
    assert httpx.get(proxy.url + "/v1/models", timeout=30).status_code == 401
    before = rss_peak_kib(proxy)
    _, chunks = _huge_chat_body(50)
    framed = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in [*chunks, b""])
    status, body, _ = _post_raw(proxy, {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                                        "Authorization": "Bearer sk-wrong"}, framed)
    grown_mib = (rss_peak_kib(proxy) - before) / 1024
    assert status == 401, body[:300]
    assert grown_mib < 16, f"the proxy's peak RSS grew by {grown_mib:.0f} MiB for a request with a wrong key"


def test_an_oversized_body_with_a_key_is_a_413(start_proxy) -> None:
    proxy = start_proxy()  # the default limit, 4 MiB
    length, chunks = _huge_chat_body(5)
    status, body, _ = _post_raw(proxy, {"Content-Type": "application/json", "Content-Length": str(length),
                                        "Authorization": f"Bearer {proxy.key}"}, chunks)
    assert status == 413, body[:300]
    assert openai_error(body)["code"] == "request_too_large"


def test_an_oversized_chunked_body_is_a_413_at_a_configured_limit(start_proxy) -> None:
    proxy = start_proxy(PROXY_MAX_BODY_BYTES="65536")
    _, chunks = _huge_chat_body(1)
    framed = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in [*chunks, b""])
    status, body, _ = _post_raw(proxy, {"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                                        "Authorization": f"Bearer {proxy.key}"}, framed)
    assert status == 413, body[:300]
    assert openai_error(body)["type"] == "invalid_request_error"


def test_too_many_messages_is_a_400(start_proxy, scripted) -> None:
    upstream, script = scripted
    proxy = start_proxy(upstream=upstream, PROXY_MAX_MESSAGES="4")
    headers = {"Authorization": f"Bearer {proxy.key}"}
    response = httpx.post(proxy.base_url + "/chat/completions", headers=headers, timeout=30,
                          json={"model": MODEL, "messages": HELLO * 5})
    assert response.status_code == 400, response.text
    assert openai_error(response.content)["param"] == "messages"
    assert script.served == 0
    assert httpx.post(proxy.base_url + "/chat/completions", headers=headers, timeout=30,
                      json={"model": MODEL, "messages": HELLO * 4}).status_code == 200


# 2. The cache is scoped per key.

def test_one_key_does_not_get_another_keys_cached_answer(start_proxy, redis_container, scripted) -> None:
    upstream, script = scripted
    other = f"sk-test-{uuid.uuid4().hex}"
    proxy = start_proxy(f",{other}", upstream=upstream, redis=redis_container)
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"colour {time.time_ns()}"}], "temperature": 0}

    def ask(key: str) -> httpx.Response:
        return httpx.post(proxy.base_url + "/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}"})

    first, again = ask(proxy.key), ask(proxy.key)
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] == "hit"
    stranger = ask(other)
    assert stranger.headers["x-cache"] == "miss", "key B got key A's cached answer"
    assert stranger.json()["id"] != first.json()["id"] and script.served == 2


def test_a_shared_cache_scope_is_an_explicit_choice(start_proxy, redis_container, scripted) -> None:
    upstream, _ = scripted
    other = f"sk-test-{uuid.uuid4().hex}"
    proxy = start_proxy(f",{other}", upstream=upstream, redis=redis_container, PROXY_CACHE_SCOPE="shared")
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"shape {time.time_ns()}"}], "temperature": 0}
    for key, expected in ((proxy.key, "miss"), (other, "hit")):
        response = httpx.post(proxy.base_url + "/chat/completions", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {key}"})
        assert response.headers["x-cache"] == expected


# 3. No 500 on valid input; every error in OpenAI's shape.

def test_a_lone_surrogate_at_temperature_zero_is_not_a_500(start_proxy, redis_container, scripted) -> None:
    upstream, _ = scripted
    proxy = start_proxy(upstream=upstream, redis=redis_container)
    raw = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "\ud800"}], "temperature": 0})
    assert "\\ud800" in raw
    for _ in range(2):  # the miss, then the hit
        response = httpx.post(proxy.base_url + "/chat/completions", content=raw, timeout=30,
                              headers={"Authorization": f"Bearer {proxy.key}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text[:300]
    assert response.headers["x-cache"] == "hit"


@pytest.mark.parametrize("usage", ["lots", [1, 2], 7, {"total_tokens": "9"}])
def test_an_odd_upstream_usage_is_relayed_not_a_500(start_proxy, scripted, usage: Any) -> None:
    upstream, script = scripted
    script.usage = usage
    proxy = start_proxy(upstream=upstream)
    headers = {"Authorization": f"Bearer {proxy.key}"}
    answer = httpx.post(proxy.base_url + "/chat/completions", json={"model": MODEL, "messages": HELLO},
                        headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["usage"] == usage
    with httpx.stream("POST", proxy.base_url + "/chat/completions", headers=headers, timeout=30,
                      json={"model": MODEL, "messages": HELLO, "stream": True}) as stream:
        assert stream.status_code == 200
        assert "data: [DONE]" in stream.read().decode()


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b"[1, 2]", b'"text"', b"null", b'{"model": 1, "messages": 2}',
                                 b'{"model": "m", "messages": [{"role": "user", "content": 5}]}'])
def test_odd_bodies_are_400s_in_openais_shape(start_proxy, raw: bytes) -> None:
    proxy = start_proxy()
    response = httpx.post(proxy.base_url + "/chat/completions", content=raw, timeout=30,
                          headers={"Authorization": f"Bearer {proxy.key}", "Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert openai_error(response.content)["type"] == "invalid_request_error"


UPSTREAM_ERRORS = {
    "text/plain 500": ((500, "text/plain", b"Internal Server Error"), 502),
    "FastAPI 404": ((404, "application/json", b'{"detail":"Not Found"}'), 404),
    "HTML 503": ((503, "text/html", b"<html><body>overloaded</body></html>"), 503),
    "JSON 500 in OpenAI shape": ((500, "application/json",
                                  b'{"error": {"message": "EngineCore died", "type": "InternalServerError"}}'), 502),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", list(UPSTREAM_ERRORS))
def test_an_upstream_error_outside_openais_shape_is_relayed_in_it(start_proxy, scripted, case: str, stream: bool) -> None:
    """The proxy is a gateway: an upstream's 500 is a 502 (never the proxy's own 500), and every
    error a client gets parses as OpenAI's, whatever the upstream sent."""
    upstream, script = scripted
    script.error, expected = UPSTREAM_ERRORS[case]
    proxy = start_proxy(upstream=upstream)
    response = httpx.post(proxy.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {proxy.key}"},
                          json={"model": MODEL, "messages": HELLO, "stream": stream})
    assert response.status_code == expected, response.text[:300]
    error = openai_error(response.content)
    assert error["message"], error
    if b"EngineCore" in script.error[2]:
        assert "EngineCore died" in error["message"], error


def test_an_upstream_4xx_in_openais_shape_is_relayed_byte_for_byte(start_proxy, scripted) -> None:
    upstream, script = scripted
    body = b'{"error": {"message": "max_tokens is too large", "type": "BadRequestError", "param": "max_tokens", "code": 400}}'
    script.error = (400, "application/json", body)
    proxy = start_proxy(upstream=upstream)
    response = httpx.post(proxy.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {proxy.key}"},
                          json={"model": MODEL, "messages": HELLO})
    assert (response.status_code, response.content) == (400, body)


def test_embeddings_for_an_engine_without_them_are_anopenai_error(start_proxy) -> None:
    """The real engine serves a generative model: its /v1/embeddings is FastAPI's bare 404."""
    proxy = start_proxy()
    response = httpx.post(proxy.base_url + "/embeddings", timeout=60, headers={"Authorization": f"Bearer {proxy.key}"},
                          json={"model": MODEL, "input": "hello"})
    if response.status_code == 200:
        pytest.skip("this engine serves embeddings for its model: nothing to relay")
    assert 400 <= response.status_code < 500, response.text[:300]
    assert openai_error(response.content)["type"] == "invalid_request_error"


# 4. Headers: the scheme, the 429's type, Retry-After.

def test_the_bearer_scheme_is_case_insensitive(start_proxy, scripted) -> None:
    upstream, _ = scripted
    proxy = start_proxy(upstream=upstream)
    for scheme in ("bearer", "BEARER"):
        response = httpx.get(proxy.base_url + "/models", headers={"Authorization": f"{scheme} {proxy.key}"}, timeout=30)
        assert response.status_code == 200, f"{scheme}: {response.text[:200]}"


def test_the_token_limit_429_says_tokens(start_proxy, scripted) -> None:
    upstream, script = scripted
    script.usage = {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}
    proxy = start_proxy(":0:10", upstream=upstream)
    headers = {"Authorization": f"Bearer {proxy.key}"}
    body = {"model": MODEL, "messages": HELLO}
    assert httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers, timeout=30).status_code == 200
    refused = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers, timeout=30)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"


@pytest.mark.parametrize("limits", [":1:0", ":0:1"])
def test_retry_after_never_exceeds_the_window(start_proxy, redis_container, scripted, limits: str) -> None:
    """Redis gives a window's TTL in whole seconds, read after `now`: 60 + a few ms rounded up read 61."""
    upstream, _ = scripted
    proxy = start_proxy(limits, upstream=upstream, redis=redis_container)
    headers = {"Authorization": f"Bearer {proxy.key}"}
    body = {"model": MODEL, "messages": HELLO}
    assert httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers, timeout=30).status_code == 200
    refused = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers, timeout=30)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
