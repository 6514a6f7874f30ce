"""How the test process reaches one service: the value every target hands out and every probe,
suite and load run takes.

It sits on the lowest floor (it imports nothing of the package) so that targets, probes and
suites can all depend on it without depending on each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Endpoint:
    """One service's address and credentials. Secrets never show in its repr."""

    service: str
    kind: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    @property
    def root_url(self) -> str:
        """The base URL without an OpenAI-style /v1 suffix (where /health, /metrics live)."""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def metrics_url(self) -> str:
        """Where the service serves Prometheus metrics: `extra["metrics_url"]` when a port of its
        own serves them (the Ray head's metrics agent), else /metrics on the root (vLLM, the proxy)."""
        return self.extra.get("metrics_url") or self.root_url + "/metrics"

    @property
    def openai_base_url(self) -> str:
        """The base URL an OpenAI client takes: the root with /v1."""
        return self.root_url + "/v1"
