"""The proxy against slow and greedy connections (swarm_proxy/server.py, intake.read_body).

Raw sockets on 127.0.0.1, as an attacker without a key would use them: a head never finished,
a socket that sends nothing, megabytes of one unfinished header, a body trickled a byte at a
time, more connections than the proxy accepts. Each must be cut off within its bound, with an
answer in OpenAI's shape where an answer can be given, and memory must stay bounded.
"""
from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx

from tests.live_parts import Proxy, rss_peak_kib
from tests.proxy.scripted import openai_error

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"


def _connect(proxy: Proxy) -> socket.socket:
    host, port = proxy.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the proxy sends until it closes the connection (or `limit` seconds pass)."""
    started, received = time.monotonic(), b""
    sock.settimeout(0.5)
    while time.monotonic() - started < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    return received, float("inf")


def _body(response: bytes) -> dict[str, Any]:
    return openai_error(response.partition(b"\r\n\r\n")[2])


def test_a_head_never_finished_is_a_408_within_the_header_timeout(start_proxy) -> None:
    proxy = start_proxy(PROXY_HEADER_TIMEOUT="2")
    with _connect(proxy) as sock:
        sock.sendall(HEAD)
        started = time.monotonic()
        for _ in range(3):  # a slowloris: a byte of a header now and then, never the blank line
            sock.sendall(b"X")
            time.sleep(0.5)
        response, closed_after = _read_until_closed(sock, 10)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert _body(response)["code"] == "request_timeout"
    assert time.monotonic() - started < 6 and closed_after < 10, "the connection stayed open past the header timeout"


def test_a_socket_that_sends_nothing_is_closed(start_proxy) -> None:
    proxy = start_proxy(PROXY_HEADER_TIMEOUT="2")
    with _connect(proxy) as sock:
        response, closed_after = _read_until_closed(sock, 10)
    assert closed_after < 5, "an idle socket was held past the header timeout"
    assert response == b""


def test_megabytes_of_one_unfinished_header_are_a_431_and_memory_stays_bounded(start_proxy) -> None:
    proxy = start_proxy()
    assert httpx.get(proxy.url + "/health", timeout=10).status_code == 200
    before = rss_peak_kib(proxy)
    answers = []
    for _ in range(20):
        with _connect(proxy) as sock:
            sock.sendall(HEAD + b"X-Junk: ")
            try:
                for _ in range(5 * 16):  # 5 MiB in 64 KiB pieces, never a line end
                    sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass  # cut off: what it got before is read below
            answers.append(_read_until_closed(sock, 10)[0])
    grown_mib = (rss_peak_kib(proxy) - before) / 1024
    # A socket still sending when the proxy closes may be reset before it reads the answer.
    assert all(a.startswith(b"HTTP/1.1 431") for a in answers if a), [a[:60] for a in answers]
    with _connect(proxy) as sock:  # one that stops sending past the cap reads the 431 for sure
        sock.sendall(HEAD + b"X-Junk: " + b"a" * 40_000)
        response, _ = _read_until_closed(sock, 10)
    assert response.startswith(b"HTTP/1.1 431"), response[:200]
    assert _body(response)["code"] == "request_header_fields_too_large"
    assert grown_mib < 16, f"the proxy's peak RSS grew by {grown_mib:.0f} MiB for 20 sockets of 5 MiB headers"
    assert httpx.get(proxy.url + "/health", timeout=10).status_code == 200


def test_a_trickled_body_is_a_408_within_the_body_timeout(start_proxy) -> None:
    proxy = start_proxy(PROXY_BODY_TIMEOUT="2")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with _connect(proxy) as sock:
        sock.sendall(HEAD + b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (proxy.key.encode(), len(body)))
        started = time.monotonic()
        try:
            for byte in body[:8]:  # a byte a second: the whole body would take a minute
                sock.sendall(bytes([byte]))
                time.sleep(1.0)
                if time.monotonic() - started > 6:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        response, _ = _read_until_closed(sock, 10)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert _body(response)["code"] == "request_timeout"


def test_past_the_connection_limit_a_request_is_a_503_in_openais_shape(start_proxy) -> None:
    proxy = start_proxy(PROXY_MAX_CONNECTIONS="4", PROXY_HEADER_TIMEOUT="30")
    idle = [_connect(proxy) for _ in range(6)]
    try:
        time.sleep(0.5)
        response = httpx.get(proxy.url + "/health", timeout=10)
        assert response.status_code == 503, response.text[:200]
        assert response.headers.get("retry-after") == "1"
        assert openai_error(response.content)["code"] == "too_many_connections"
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(proxy.url + "/health", timeout=10).status_code == 200, "the limit did not lift once the sockets closed"
