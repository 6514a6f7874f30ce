"""The proxy and an upstream that fails it or is left (issue 14, item 7 and the lower list): a
client that leaves before its answer starts cancels the upstream request (and gets its token
reservation back), a request the upstream received is never sent twice, and a stream cut in the
middle of an event ends with whole events only, the error event on a boundary of its own. The
scripted upstream (scripted.py) records when the proxy closes a request it holds."""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live_parts import MODEL, Proxy, rss_peak_kib
from tests.proxy.scripted import HELLO, openai_error


def _post(proxy: Proxy, body: dict, timeout: float = 30) -> httpx.Response:
    return httpx.post(proxy.base_url + "/chat/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {proxy.key}"})


LEAVING = ["plain", "stream, before its headers", "stream, after its headers"]


@pytest.mark.parametrize("case", LEAVING)
def test_a_client_that_leaves_cancels_the_upstream_request(start_proxy, scripted, case: str) -> None:
    """The upstream ran on to the 300 s read timeout for a client long gone, its tokens booked."""
    upstream, script = scripted
    script.hold, script.headers_first = 30.0, case.endswith("after its headers")
    proxy = start_proxy(":0:100", upstream=upstream)
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 80, "stream": case != "plain"}  # books 83 of 100
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s and closes its connection
        with httpx.stream("POST", proxy.base_url + "/chat/completions", json=body,
                          timeout=httpx.Timeout(30, read=1.0), headers={"Authorization": f"Bearer {proxy.key}"}) as response:
            response.read()
    left = time.monotonic()
    while not script.closed and time.monotonic() - left < 10:
        time.sleep(0.05)
    assert script.closed, "the upstream request was still open 10 s after its client had left"
    assert script.closed[0] - left < 3, f"the upstream request was closed {script.closed[0] - left:.1f} s after the client left"
    script.hold = 0.0
    again = _post(proxy, body)
    assert again.status_code == 200, f"the abandoned request's reservation was not given back: {again.text[:300]}"


@pytest.mark.parametrize("case", ["plain", "stream", "pipelined"])
def test_a_client_that_leaves_before_its_request_is_watched_cancels_it(start_proxy, scripted, case: str) -> None:
    """A client that sends its request and closes at once is gone while the proxy still resolves
    its model (a model the proxy has not seen served: it asks the upstream for its model list,
    which takes 3 s here), before anything watches the request: that signal was lost, and the
    upstream ran for nobody until its hold ended, the tokens booked. Pipelined behind it, a second
    request took the signal meant for the first."""
    upstream, script = scripted
    proxy = start_proxy(":0:100", upstream=upstream)
    script.hold, script.models_delay, listed = 30.0, 3.0, script.listed
    script.models_body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"},
                                                               {"id": "just-loaded", "object": "model"}]}).encode()
    body = json.dumps({"model": "just-loaded", "messages": HELLO, "max_tokens": 80, "stream": case == "stream"}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
               b"authorization: Bearer " + proxy.key.encode() + b"\r\ncontent-length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)  # books 83 of 100
    address = urlsplit(proxy.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as client:
        client.sendall(request * (2 if case == "pipelined" else 1))
        asked = time.monotonic()
        while script.listed == listed and time.monotonic() - asked < 10:  # the body is read: it resolves the model
            time.sleep(0.01)
    left = time.monotonic()
    assert script.listed > listed, "the proxy did not resolve the model with the upstream: the case was not tried"
    time.sleep(4)  # a request the proxy was going to send has reached the upstream by now
    while script.requests and not script.closed and time.monotonic() - left < 10:
        time.sleep(0.05)
    assert not script.requests or script.closed, "the upstream request was still open 10 s after its client had left"
    assert script.models_answered and left < script.models_answered[-1], "the client left after the model was resolved"
    script.hold = script.models_delay = 0.0
    again = _post(proxy, {"model": MODEL, "messages": HELLO, "max_tokens": 80})
    assert again.status_code == 200, f"the abandoned request's reservation was not given back: {again.text[:300]}"


def test_an_upstream_that_hangs_is_a_504_and_the_proxy_lets_go_of_it(start_proxy, scripted) -> None:
    """An upstream that takes the request and never answers (the scripted one holds it; pausing the
    engine's container did the same, but `docker pause` itself failed a CI run on a busy machine)."""
    upstream, script = scripted
    script.hold = 30.0
    proxy = start_proxy(upstream=upstream, PROXY_UPSTREAM_TIMEOUT="2")
    started = time.monotonic()
    response = _post(proxy, {"model": MODEL, "messages": HELLO, "max_tokens": 1})
    waited = time.monotonic() - started
    assert response.status_code == 504 and openai_error(response.content)["code"] == "upstream_timeout", response.text[:300]
    assert waited < 20, f"the 504 came after {waited:.1f} s; the upstream timeout is 2 s"
    deadline = time.monotonic() + 10
    while not script.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert script.closed, "the proxy kept the timed-out upstream request open"


def test_a_request_the_upstream_received_is_not_sent_again(start_proxy, scripted) -> None:
    """A connection dropped after the POST was sent was retried: the upstream got every copy."""
    upstream, script = scripted
    script.drop = True
    proxy = start_proxy(upstream=upstream, PROXY_RETRIES="2")
    response = _post(proxy, {"model": MODEL, "messages": HELLO})
    assert response.status_code == 502 and openai_error(response.content)["code"] == "upstream_unreachable"
    assert len(script.requests) == 1, f"the upstream received {len(script.requests)} copies of one request"


def test_a_refused_connection_is_still_retried(start_proxy) -> None:
    """The guard of the one above: a connection never made sent nothing, so it is retried. (The
    `openai` route is not listed first, so the refused connection is the POST's own.)"""
    proxy = start_proxy(PROXY_RETRIES="2", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    response = _post(proxy, {"model": "gpt-4-refused", "messages": HELLO})
    assert response.status_code == 502 and openai_error(response.content)["code"] == "upstream_unreachable"
    assert proxy.metric("proxy_upstream_retries_total") == 2


EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
HALF = b'data: {"choices": [{"index": 0, "del'


@pytest.mark.parametrize("declared", [len(EVENT + HALF) + 100, None], ids=["connection broken", "closed cleanly"])
def test_a_stream_cut_mid_event_ends_with_whole_events(start_proxy, scripted, declared: int | None) -> None:
    """The error event was glued onto half a line (`data: {"choices": [{"index": 0, "deldata: {"error"...`)."""
    upstream, script = scripted
    script.raw_stream = (EVENT + HALF, declared)
    proxy = start_proxy(upstream=upstream)
    with httpx.stream("POST", proxy.base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {proxy.key}"},
                      json={"model": MODEL, "messages": HELLO, "stream": True}) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert text.endswith("\n\n"), f"the stream ends mid-event: {text[-80:]!r}"
    events = [event for event in text.split("\n\n") if event]
    for event in events:
        assert event.startswith("data: "), f"not a whole event: {event!r}"
        json.loads(event[len("data: "):])  # each is whole JSON: nothing glued on half a line
    assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "hi"
    assert json.loads(events[-1][6:])["error"]["code"] == "upstream_stream_error", events[-1]


def test_an_upstream_redirect_is_relayed_not_followed(start_proxy, scripted) -> None:
    """An HTTP client that follows redirects turns a 301 to a POST into a GET without its body, and
    sends the prompt again on a 307 (wherever Location points): the upstream must get it once."""
    upstream, script = scripted
    script.error = (307, "application/json", b'{"error": {"message": "moved", "type": "invalid_request_error"}}')
    script.location = upstream + "/chat/completions"
    proxy = start_proxy(upstream=upstream)
    response = httpx.post(proxy.base_url + "/chat/completions", json={"model": MODEL, "messages": HELLO}, timeout=30,
                          headers={"Authorization": f"Bearer {proxy.key}"})
    assert len(script.requests) == 1, f"the upstream received the request {len(script.requests)} times"
    assert response.status_code != 500 and response.headers["content-type"].startswith("application/json")


def test_the_environments_egress_proxy_carries_upstream_calls_unless_no_proxy_exempts_the_host(start_proxy, scripted) -> None:
    """HTTP_PROXY / HTTPS_PROXY / NO_PROXY are honoured (an egress proxy towards OpenAI), chosen
    once at start rather than per request. The scripted upstream stands in for the egress proxy: a
    forward proxy receives the request line with the absolute URL, and answers for a host that
    does not resolve here."""
    egress, script = scripted
    target = "http://upstream.invalid:9/v1"  # .invalid never resolves: only the egress proxy can reach it
    via = egress.removesuffix("/v1")  # both spellings set: an inherited lower-case one would win
    proxy = start_proxy(upstream=target, HTTP_PROXY=via, http_proxy=via, NO_PROXY="", no_proxy="")
    response = _post(proxy, {"model": MODEL, "messages": HELLO})
    assert response.status_code == 200, response.text[:300]
    assert f"{target}/chat/completions" in script.targets, f"the call did not go through HTTP_PROXY: {script.targets}"
    exempt = start_proxy(upstream=target, HTTP_PROXY=via, http_proxy=via, NO_PROXY="upstream.invalid",
                         no_proxy="upstream.invalid")
    sent = len(script.targets)
    response = _post(exempt, {"model": MODEL, "messages": HELLO})
    assert response.status_code == 502 and openai_error(response.content)["code"] == "upstream_unreachable", response.text[:300]
    assert len(script.targets) == sent, "a host NO_PROXY names was still sent through the egress proxy"


def test_a_client_that_reads_slowly_holds_the_upstream_back_not_the_proxys_memory(start_proxy, scripted) -> None:
    """A stream is relayed as fast as its client reads. One that reads nothing for a while must
    leave the upstream's bytes in TCP's buffers (the proxy stops reading it), not in the proxy:
    48 MiB sent at once by the upstream, read by nobody for 3 s, then read to the end."""
    upstream, script = scripted
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"x" * 4000 + b'"}}]}\n\n'
    count = 48 * 1024 * 1024 // len(event)
    script.raw_stream = (event * count, None)  # sent in one write, ended by closing the connection
    proxy = start_proxy(upstream=upstream)
    assert httpx.get(proxy.url + "/health", timeout=10).status_code == 200
    before = rss_peak_kib(proxy)
    body = json.dumps({"model": MODEL, "messages": HELLO, "stream": True}).encode()
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (proxy.key.encode(), len(body), body))
        time.sleep(3)  # reads nothing while the upstream has sent everything it will
        held_mib = (rss_peak_kib(proxy) - before) / 1024
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
            if chunk.endswith(b"0\r\n\r\n"):
                break
    assert held_mib < 24, f"the proxy's peak RSS grew by {held_mib:.0f} MiB while its client read nothing"
    assert received > count * len(event), f"the stream arrived incomplete: {received} bytes of {count * len(event)}"
