"""Answers nobody planned for, each still in OpenAI's error shape and never a 500: Starlette's own
routing errors (no such path, wrong method), an upstream whose /models is not a model list, and an
upstream error whose body breaks off while a stream was asked for."""
from __future__ import annotations

import json

import httpx

from tests.live_parts import MODEL
from tests.proxy.scripted import HELLO, openai_error


def test_routing_errors_are_in_openai_shape(start_proxy, scripted) -> None:
    upstream, _ = scripted
    proxy = start_proxy(upstream=upstream)
    headers = {"Authorization": f"Bearer {proxy.key}"}
    wrong_method = httpx.get(proxy.base_url + "/chat/completions", headers=headers, timeout=10)
    assert wrong_method.status_code == 405, wrong_method.text
    assert openai_error(wrong_method.content)["code"] == "method_not_allowed"
    no_such_path = httpx.post(proxy.base_url + "/responses", headers=headers, json={}, timeout=10)
    assert no_such_path.status_code == 404, no_such_path.text
    assert "detail" not in no_such_path.json(), f"FastAPI's own shape: {no_such_path.text}"
    assert openai_error(no_such_path.content)["code"] == "not_found"


def test_an_upstream_whose_models_is_not_a_list_gives_no_500(start_proxy, scripted) -> None:
    upstream, script = scripted
    script.models_body = json.dumps([{"id": MODEL}]).encode()  # a JSON list, not {"data": [...]}
    proxy = start_proxy(upstream=upstream)
    headers = {"Authorization": f"Bearer {proxy.key}"}
    chat = httpx.post(proxy.base_url + "/chat/completions", headers=headers, timeout=30,
                      json={"model": MODEL, "messages": HELLO})
    assert chat.status_code == 502, chat.text
    assert openai_error(chat.content)["code"] == "upstream_unreachable"
    listing = httpx.get(proxy.base_url + "/models", headers=headers, timeout=10)
    assert listing.status_code == 200 and listing.json()["data"] == [], listing.text
    assert httpx.get(proxy.url + "/ready", timeout=10).status_code == 503


def test_a_stream_whose_error_body_breaks_off_is_a_502(start_proxy, scripted) -> None:
    upstream, script = scripted
    script.error_cut = True
    proxy = start_proxy(upstream=upstream)
    reply = httpx.post(proxy.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {proxy.key}"},
                       json={"model": MODEL, "messages": HELLO, "stream": True})
    assert reply.status_code == 502, reply.text
    assert openai_error(reply.content)["type"] == "upstream_error"
