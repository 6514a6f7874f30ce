"""Flow 4 (recovery under load), its path broken: the suite's load and verdicts against real
proxies (tests/live_parts) whose upstream refuses (the outage the proxy must answer in OpenAI's
shape: passes), answers 500, or hangs (both fail), and a fault the proxy's /ready cannot see."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

import integration_faults
from integration_faults import BackgroundLoad, Outage, observe, outage_problems, ready_problems
from swarm_checks import Endpoint
from tests.live_parts import MODEL, start_redis


def _stub(mode: str) -> ThreadingHTTPServer:
    """An upstream that lists MODEL and then, for completions, answers 500 or never answers."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if mode == "hang":
                time.sleep(30)
            self._send(500, {"detail": "Internal Server Error"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def short_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rounds whose requests time out after 3 s, so a hang shows in seconds."""
    monkeypatch.setattr(integration_faults, "ROUND", dataclasses.replace(integration_faults.ROUND, request_timeout=3.0,
                                                                         drain_seconds=3.0))
    monkeypatch.setattr(integration_faults, "REQUEST_TIMEOUT", 3.0)


def _load(base_url: str, key: str, seconds: float) -> list:
    with BackgroundLoad(base_url, MODEL, key, limit=seconds) as load:
        time.sleep(seconds)
    return load.records


def test_an_unreachable_upstream_is_answered_in_openai_shape(start_proxy) -> None:
    proxy = start_proxy(upstream="http://127.0.0.1:9/v1")
    records = _load(proxy.base_url, proxy.key, 5)
    assert records and all(r.error_kind == "http_502" for r in records)
    assert outage_problems(records) == []


def test_a_front_door_answering_500_fails_the_flow() -> None:
    """A proxy that relayed an engine's 500 as it is (the proxy before it answered 502): the stub
    stands in for that front door, since today's proxy never lets a 500 through."""
    server = _stub("500")
    try:
        problems = outage_problems(_load(f"http://127.0.0.1:{server.server_port}/v1", "sk-stub", 5))
    finally:
        server.shutdown()
    assert any(p.startswith("HTTP 500") for p in problems), problems


def test_an_upstream_500_reaches_the_client_as_an_openai_shaped_502(start_proxy) -> None:
    server = _stub("500")
    try:
        proxy = start_proxy(upstream=f"http://127.0.0.1:{server.server_port}/v1")
        records = _load(proxy.base_url, proxy.key, 5)
    finally:
        server.shutdown()
    assert records and all(r.error_kind == "http_502" for r in records), {r.error_kind for r in records}
    assert outage_problems(records) == []


def test_a_hanging_upstream_fails_the_flow(start_proxy, short_requests: None) -> None:
    server = _stub("hang")
    try:
        proxy = start_proxy(upstream=f"http://127.0.0.1:{server.server_port}/v1")
        problems = outage_problems(_load(proxy.base_url, proxy.key, 5))
    finally:
        server.shutdown()
    assert any("a request hung" in p for p in problems), problems


@pytest.fixture
def spare_redis() -> Iterator:
    container = start_redis()
    try:
        yield container
    finally:
        container.remove()


def test_an_outage_readiness_does_not_report_fails_the_flow(start_proxy, spare_redis) -> None:
    """A proxy configured without Redis: stopping "its" Redis never shows in /ready."""
    proxy = start_proxy()
    endpoint = Endpoint("proxy", "proxy", proxy.base_url, api_key=proxy.key)
    outage = Outage("redis", "stop, start", "proxy /ready lists redis",
                    cause=lambda: spare_redis.docker("stop"),
                    detected=lambda: any(p.startswith("redis") for p in ready_problems(endpoint)),
                    end=lambda: spare_redis.docker("start"), recovered=lambda: True, recover_limit=10)
    rows: list = []
    with pytest.raises(AssertionError, match=r"redis stop, start: the outage to show \(proxy /ready lists redis\): not within 4 s"):
        observe(outage, endpoint, MODEL, rows.append, detect_limit=4)
    assert rows and rows[0].detect_s is None
