"""Flow 6: Langfuse traces. A request through the proxy with tracing on (PROXY_LANGFUSE_HOST in
Compose, LANGFUSE_HOST in the chart) appears in Langfuse's public API within TRACE_LIMIT seconds
as a trace named after the endpoint, for the key's id, with a generation carrying the model and
the usage the proxy answered with.

It reads Langfuse's documented public REST API (/api/public/traces, Basic auth with the project's
keys) with httpx: the pinned server is Langfuse 3, and the langfuse SDK's current major (5) reads
traces through newer endpoints (observations v2) than a v3 server may offer.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from swarm_checks import Endpoint, Target

from integration_proxy import post_chat
from integration_stack import ExecFn

TRACE_LIMIT = 120.0


def test_a_proxied_request_appears_in_langfuse_with_its_generation(swarm_target: Target, deployed, proxy: Endpoint,
                                                                   run_in: ExecFn, model: str) -> None:
    langfuse: Endpoint = swarm_target.endpoint(deployed("langfuse-web"))
    host = run_in(proxy.service, ["sh", "-c", 'printf %s "${LANGFUSE_HOST:-}"']).output.strip()
    if not host:
        pytest.skip(f"{proxy.service} traces nothing: set PROXY_LANGFUSE_HOST=http://langfuse-web:3000 (Compose) "
                    "or proxy.langfuse.enabled (chart)")
    auth = (langfuse.username or "", langfuse.api_key or "")
    key_id = hashlib.sha256((proxy.api_key or "").encode()).hexdigest()[:12]
    since = (datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat()
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": f"Trace probe {uuid.uuid4().hex}"}]}
    answer = post_chat(proxy.openai_base_url, proxy.api_key, body)
    assert answer.status_code == 200, f"the proxy did not answer: HTTP {answer.status_code}"
    usage = answer.json()["usage"]

    def find() -> dict | None:
        listed = httpx.get(f"{langfuse.root_url}/api/public/traces", auth=auth, timeout=10, params={
            "userId": key_id, "name": "proxy /v1/chat/completions", "fromTimestamp": since, "limit": 50})
        listed.raise_for_status()
        for trace in listed.json().get("data", []):
            full = httpx.get(f"{langfuse.root_url}/api/public/traces/{trace['id']}", auth=auth, timeout=10).json()
            for observation in full.get("observations", []):
                if observation.get("type") == "GENERATION" and observation.get("model") == model:
                    return observation
        return None

    started = time.monotonic()
    generation = None
    while generation is None and time.monotonic() - started < TRACE_LIMIT:
        generation = find()
        if generation is None:
            time.sleep(2.0)
    assert generation is not None, f"no trace with a {model} generation for key {key_id} in Langfuse within {TRACE_LIMIT:g} s"
    seen = generation.get("usageDetails") or generation.get("usage") or {}
    assert seen.get("input") == usage["prompt_tokens"] and seen.get("output") == usage["completion_tokens"], (
        f"the generation's usage {seen} is not the answer's {usage}")
    print(f"trace visible in Langfuse after {time.monotonic() - started:.1f} s")
