"""One HTTP exchange with an API under contract: what was sent, what came back, byte for byte,
and the `curl` line that sends it again.

The checkers judge raw bytes (an SSE stream's framing is lost once a client library has parsed
it), so requests go through httpx, not through the openai SDK; the SDK's types then parse the
answer (openai_contract.py). A 429 is retried after its Retry-After, as the openai SDK does: a
deployment that shares its rate limits with other suites must not fail a contract for it.
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import httpx

# Generous: the CI engine decodes about 25 tokens/s on one core of a busy 2-core machine.
TIMEOUT = httpx.Timeout(180.0, connect=30.0)
MAX_429_RETRIES = 3
KEY_VARIABLE = "SWARM_API_KEY"


@dataclass(frozen=True)
class Exchange:
    """One request and its answer. The API key never shows in repr or in the curl line."""

    method: str
    url: str
    body: Any  # the JSON document sent, or raw bytes for a deliberately malformed body
    status: int
    headers: Mapping[str, str]
    raw: bytes = field(repr=False)
    api_key: str | None = field(default=None, repr=False)

    def json(self) -> Any:
        """The answer parsed as JSON (raises ValueError when it is not JSON)."""
        return json.loads(self.raw)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def curl(self) -> str:
        """A shell line that sends the same request (the key read from $SWARM_API_KEY)."""
        return curl_line(self.method, self.url, self.body, with_key=self.api_key is not None)

    def describe(self, limit: int = 600) -> str:
        """Status and the start of the answer, for a failure message."""
        text = self.text
        return f"HTTP {self.status}: {text[:limit]}{' ...' if len(text) > limit else ''}"


def curl_line(method: str, url: str, body: Any = None, *, with_key: bool = False) -> str:
    """`curl` reproducing a request; -N so that a stream prints as it arrives."""
    parts = ["curl", "-sS", "-N", "-X", method, shlex.quote(url)]
    if with_key:
        parts += ["-H", f'"Authorization: Bearer ${KEY_VARIABLE}"']
    if body is not None:
        data = body.decode("utf-8", "replace") if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False)
        parts += ["-H", shlex.quote("Content-Type: application/json"), "--data-binary", shlex.quote(data)]
    return " ".join(parts)


class Client:
    """A small synchronous client for one base URL (an OpenAI /v1 root, or a service root)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Exchange:
        """Send and read the whole answer (a stream too: its bytes are kept as they came)."""
        url = self.base_url + path
        if isinstance(body, bytes):
            content, kind = body, {"Content-Type": "application/json"}
        elif body is not None:
            content, kind = json.dumps(body).encode(), {"Content-Type": "application/json"}
        else:
            content, kind = None, {}
        sent = self._headers({**kind, **(headers or {})})
        for attempt in range(MAX_429_RETRIES + 1):
            with self._http.stream(method, url, content=content, headers=sent) as answer:
                raw = b"".join(answer.iter_bytes())
                status, answer_headers = answer.status_code, dict(answer.headers)
            if status != 429 or attempt == MAX_429_RETRIES:
                break
            time.sleep(min(65.0, float(answer_headers.get("retry-after", "1") or 1)))
        return Exchange(method, url, body, status, answer_headers, raw, self.api_key)

    def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Exchange:
        return self.request("POST", path, body, headers)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Exchange:
        return self.request("GET", path, None, headers)
