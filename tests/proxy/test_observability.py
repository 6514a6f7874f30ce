"""What the proxy shows and logs (issue 14, lower list): `/ready` tells a caller without a key
whether the proxy is ready, never the internal upstream addresses, and checks the upstreams at
most every few seconds however often it is asked; the proxy's own 401, 404 and 429 are logged,
one line each, without a key and with a client-chosen model name cut to a bounded length."""
from __future__ import annotations

import json
from typing import Any

import httpx

from tests.live_parts import MODEL, Proxy
from tests.proxy.scripted import HELLO


def _requests_logged(proxy: Proxy) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in proxy.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


def test_ready_without_a_key_names_no_upstream_address(start_proxy) -> None:
    proxy = start_proxy(upstream="http://127.0.0.1:9/v1")
    anonymous = httpx.get(proxy.url + "/ready", timeout=10)
    assert anonymous.status_code == 503
    problems = anonymous.json()["problems"]
    assert problems and all(p.startswith("upstream") for p in problems), problems
    assert "127.0.0.1:9" not in anonymous.text, f"an unauthenticated /ready shows an upstream's address: {anonymous.text}"
    operator = httpx.get(proxy.url + "/ready", timeout=10, headers={"Authorization": f"Bearer {proxy.key}"})
    assert operator.status_code == 503 and "127.0.0.1:9" in operator.text, "a caller with a key gets the detail"


def test_ready_checks_the_upstreams_at_most_every_few_seconds(start_proxy, scripted) -> None:
    upstream, script = scripted
    proxy = start_proxy(upstream=upstream)
    for _ in range(20):
        assert httpx.get(proxy.url + "/ready", timeout=10).status_code == 200
    assert script.listed <= 2, f"20 calls of /ready sent {script.listed} requests to the upstream"


def test_the_proxys_own_refusals_are_logged_one_line_each(start_proxy, scripted) -> None:
    upstream, _ = scripted
    proxy = start_proxy(":2:0", upstream=upstream, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    chat = proxy.base_url + "/chat/completions"
    assert httpx.post(chat, json={"model": MODEL, "messages": HELLO}, timeout=30).status_code == 401
    assert httpx.post(chat, json={"model": MODEL, "messages": HELLO}, timeout=30,
                      headers={"Authorization": "Bearer sk-wrong-secret-in-log"}).status_code == 401
    headers = {"Authorization": f"Bearer {proxy.key}"}
    long_unknown, long_routed = "m" * 200_000, "gpt-4" + "x" * 200_000
    assert httpx.post(chat, json={"model": long_unknown, "messages": HELLO}, headers=headers, timeout=30).status_code == 404
    assert httpx.post(chat, json={"model": long_routed, "messages": HELLO}, headers=headers, timeout=30).status_code == 502
    assert httpx.post(chat, json={"model": MODEL, "messages": HELLO}, headers=headers, timeout=30).status_code == 429
    logged = _requests_logged(proxy)
    statuses = [line.get("status") for line in logged]
    assert (statuses.count(401), statuses.count(404), statuses.count(429)) == (2, 1, 1), statuses
    text = proxy.log_text()
    assert proxy.key not in text and "sk-wrong-secret-in-log" not in text
    longest = max(len(line) for line in text.splitlines())
    assert longest < 2000, f"a log line of {longest} characters: a client-chosen model name is logged in full"
    assert all(len(str(line.get("model", ""))) <= 128 for line in logged)
