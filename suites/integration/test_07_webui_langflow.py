"""Flow 7: Open WebUI and Langflow. A chat through Open WebUI's API (sign in, then its
OpenAI-compatible /api/chat/completions) reaches the LLM through the proxy: the proxy's metrics
count it. Langflow's tables exist in its PostgreSQL database.

Open WebUI goes through the proxy only when it is configured so: WEBUI_LLM_BASE_URL at the
proxy's in-stack address and WEBUI_LLM_API_KEY a proxy key (the Compose default points it at
`llm` directly); otherwise the chat test skips saying that.
"""
from __future__ import annotations

import uuid

import httpx
import pytest

from swarm_checks import Endpoint, Target

from integration_stack import ExecFn, metric, psql

CHAT_OK = {"endpoint": "/v1/chat/completions", "status": "200"}


def test_a_chat_through_open_webui_reaches_the_llm_through_the_proxy(swarm_target: Target, deployed, run_in: ExecFn,
                                                                     proxy: Endpoint, proxy_in_stack: str, model: str) -> None:
    webui: Endpoint = swarm_target.endpoint(deployed("open-webui"))
    service = deployed("open-webui")
    base = run_in(service, ["sh", "-c", 'printf %s "${OPENAI_API_BASE_URL:-}"']).output.strip().rstrip("/")
    if base != proxy_in_stack:
        pytest.skip(f"Open WebUI talks to {base or '(unset)'}, not the proxy ({proxy_in_stack}): set "
                    f"WEBUI_LLM_BASE_URL={proxy_in_stack} and WEBUI_LLM_API_KEY to a proxy key")
    email, password = f"swarm-{uuid.uuid4().hex[:8]}@swarm.local", uuid.uuid4().hex
    signed = httpx.post(f"{webui.root_url}/api/v1/auths/signup", timeout=30,
                        json={"name": "swarm integration", "email": email, "password": password})
    assert signed.status_code == 200, f"Open WebUI refused the sign-up: HTTP {signed.status_code} {signed.text[:200]}"
    token = signed.json()["token"]
    before = metric(httpx.get(proxy.root_url + "/metrics", timeout=10).text, "proxy_requests_total", **CHAT_OK)
    answer = httpx.post(f"{webui.root_url}/api/chat/completions", headers={"Authorization": f"Bearer {token}"}, timeout=120,
                        json={"model": model, "stream": False, "messages": [{"role": "user", "content": "Say hello."}]})
    assert answer.status_code == 200, f"Open WebUI's chat failed: HTTP {answer.status_code} {answer.text[:200]}"
    assert (answer.json()["choices"][0]["message"]["content"] or "").strip(), "Open WebUI relayed an empty answer"
    after = metric(httpx.get(proxy.root_url + "/metrics", timeout=10).text, "proxy_requests_total", **CHAT_OK)
    assert after > before, "the proxy's metrics did not count Open WebUI's chat: it did not go through the proxy"


def test_langflow_tables_exist_in_postgres(swarm_target: Target, deployed, run_in: ExecFn) -> None:
    deployed("langflow")
    postgres = deployed("postgres")
    database = swarm_target.endpoint(postgres).extra.get("langflow_db") or "langflow"
    tables = set(psql(run_in, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", service=postgres,
                      database=database).split())
    expected = {"flow", "user", "alembic_version"}
    assert expected <= tables, f"Langflow's tables {sorted(expected - tables)} are missing from database {database}"
