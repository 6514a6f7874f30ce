"""Configuration from the environment (the Compose file and the chart set it from a Secret).

PROXY_API_KEYS        comma list of client keys; each `key` or `key:rpm:tpm` (0 = unlimited)
PROXY_DEFAULT_RPM     requests per minute for keys without their own (default 600)
PROXY_DEFAULT_TPM     tokens per minute for keys without their own (default 200000). Admission
                      reserves an estimate of the request's tokens (prompt characters / 4, at
                      least 1, plus max_tokens or max_completion_tokens, times n) and refuses
                      with the token 429 when it does not fit; the real usage settles it after
                      the answer (refund or extra charge; a failed request is refunded). One
                      answer is charged at most 10000000 tokens, whatever `usage` says. Without
                      usage, an answer is charged the prompt estimate (a stream: plus one token
                      per event).
PROXY_EARLY_ADMISSION  with REDIS_URL: a key far from its limits is counted once its body is read,
                      and a stream of it goes upstream while Redis counts and books it, instead
                      of after (default true; ratelimit.py)
PROXY_RESERVE_MAX_TOKENS  the answer's share of a reservation when the request has no max_tokens
                      (default 1024; a reservation is never more than the key's whole TPM)
PROXY_ROUTES          comma list of `pattern=upstream`, fnmatch patterns, first match wins;
                      upstream is a base URL (http://llm:8000/v1) or `openai`
OPENAI_API_KEY        sent to the `openai` upstream; OPENAI_BASE_URL overrides its address
REDIS_URL             shared rate limits and the response cache (optional)
PROXY_CACHE           cache non-streaming temperature-0 answers in Redis (default true); only a
                      200 that is a JSON object with `choices`/`data` and no `error` is stored
PROXY_CACHE_TTL       seconds a cached answer lives (default 300)
PROXY_CACHE_MAX_BYTES  what the cache may hold in Redis, all replicas together (default 67108864 =
                      64 MiB; 0 = no cache); when it is full, answers are not stored (nothing is
                      evicted, no other key is touched: Redis holds Langfuse's queues too)
PROXY_CACHE_MAX_ENTRY_BYTES  largest answer stored (default 1048576 = 1 MiB; larger ones are relayed, not cached)
PROXY_CACHE_SCOPE     `key` (default): an answer is cached for the key that asked, so no key learns
                      what another asked; `shared`: one cache for all keys (they trust each other)
PROXY_MAX_BODY_BYTES  largest request body read (default 4194304 = 4 MiB; larger is a 413)
PROXY_MAX_MESSAGES    most `messages` in a chat request (default 2048, OpenAI's; 0 = no cap)
PROXY_BODY_TIMEOUT    seconds a request body may take to arrive once its headers have (default 30; then a 408)
PROXY_HEADER_TIMEOUT  seconds a request's headers may take (default 10; then a 408 and the connection closed)
PROXY_MAX_HEADER_BYTES  largest request head (default 32768; larger is a 431 and the connection closed)
PROXY_MAX_CONNECTIONS connections and requests in progress at once (default 1024; beyond it a 503)
PROXY_RETRIES         retries of an upstream connection that could not be made (default 2); a
                      request sent on a connection that broke afterwards is never sent again
PROXY_UPSTREAM_TIMEOUT, PROXY_CONNECT_TIMEOUT   seconds (default 300 and 5)
LANGFUSE_HOST, LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY   optional request tracing (no prompts)

Not configurable: requests are validated with strict types for the fields the proxy decides on
(model, stream, stream_options.include_usage, max_tokens, max_completion_tokens, n, temperature):
a wrong type (`"stream": "false"`) is a 400. Streams are sent upstream with
stream_options.include_usage true, so that usage arrives; the final usage chunk is dropped
unless the client asked for it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

OPENAI = "openai"
CACHE_SCOPES = ("key", "shared")


@dataclass(frozen=True)
class ClientKey:
    """A client's key and its limits; `key_id` is what logs and limit keys use instead of the key."""

    key: str = field(repr=False)
    rpm: int
    tpm: int

    @cached_property  # logged and counted several times per request: hashed once
    def key_id(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Route:
    pattern: str
    upstream: str  # a base URL, or OPENAI


@dataclass(frozen=True)
class Settings:
    keys: Mapping[str, ClientKey]
    routes: tuple[Route, ...]
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = "https://api.openai.com/v1"
    redis_url: str = field(default="", repr=False)
    cache_enabled: bool = True
    cache_ttl: int = 300
    cache_scope: str = "key"  # or "shared"
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_max_entry_bytes: int = 1024 * 1024
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 2048
    body_timeout: float = 30.0
    reserve_max_tokens: int = 1024
    early_admission: bool = True
    retries: int = 2
    upstream_timeout: float = 300.0
    connect_timeout: float = 5.0
    langfuse_host: str = ""
    langfuse_public_key: str = field(default="", repr=False)
    langfuse_secret_key: str = field(default="", repr=False)

    def base_url(self, upstream: str) -> str:
        return (self.openai_base_url if upstream == OPENAI else upstream).rstrip("/")

    @property
    def tracing(self) -> bool:
        return bool(self.langfuse_host and self.langfuse_public_key and self.langfuse_secret_key)


TRUE = ("1", "true", "yes", "on")


def env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole-number variable; a wrong value stops the proxy with one line naming it."""
    try:
        return int(environ.get(name, "") or default)
    except ValueError:
        raise SystemExit(f"proxy: {name} must be an integer, got {environ.get(name)!r}") from None


def parse_keys(text: str, default_rpm: int, default_tpm: int) -> dict[str, ClientKey]:
    keys: dict[str, ClientKey] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, *limits = item.split(":")
        if len(limits) not in (0, 2) or not all(value.isdigit() for value in limits):
            raise SystemExit("proxy: PROXY_API_KEYS entries are `key` or `key:rpm:tpm` with whole numbers")
        rpm, tpm = (int(limits[0]), int(limits[1])) if limits else (default_rpm, default_tpm)
        keys[key] = ClientKey(key=key, rpm=rpm, tpm=tpm)
    return keys


def parse_routes(text: str) -> tuple[Route, ...]:
    routes = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        pattern, sep, upstream = item.partition("=")
        if not sep or not upstream.strip():
            raise SystemExit(f"proxy: PROXY_ROUTES entry {item!r} is not `pattern=upstream`")
        routes.append(Route(pattern.strip(), upstream.strip()))
    return tuple(routes)


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    keys = parse_keys(env.get("PROXY_API_KEYS", ""), env_int(env, "PROXY_DEFAULT_RPM", 600), env_int(env, "PROXY_DEFAULT_TPM", 200_000))
    if not keys:
        raise SystemExit("proxy: PROXY_API_KEYS is empty: set at least one client key")
    cache_scope = env.get("PROXY_CACHE_SCOPE", "key").strip().lower() or "key"
    if cache_scope not in CACHE_SCOPES:
        raise SystemExit(f"proxy: PROXY_CACHE_SCOPE must be one of {', '.join(CACHE_SCOPES)}, got {cache_scope!r}")
    cache_max_bytes = env_int(env, "PROXY_CACHE_MAX_BYTES", 64 * 1024 * 1024)
    cache_max_entry_bytes = env_int(env, "PROXY_CACHE_MAX_ENTRY_BYTES", 1024 * 1024)
    if cache_max_bytes < 0 or cache_max_entry_bytes < 1:
        raise SystemExit("proxy: PROXY_CACHE_MAX_BYTES must be 0 or more, PROXY_CACHE_MAX_ENTRY_BYTES 1 or more")
    max_body_bytes = env_int(env, "PROXY_MAX_BODY_BYTES", 4 * 1024 * 1024)
    if max_body_bytes < 1:
        raise SystemExit("proxy: PROXY_MAX_BODY_BYTES must be a positive number of bytes")
    return Settings(
        keys=keys,
        routes=parse_routes(env.get("PROXY_ROUTES", "gpt-4*=openai,*=http://llm:8000/v1")),
        openai_api_key=env.get("OPENAI_API_KEY", ""),
        openai_base_url=env.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
        redis_url=env.get("REDIS_URL", ""),
        cache_enabled=env.get("PROXY_CACHE", "true").lower() in TRUE,
        early_admission=(env.get("PROXY_EARLY_ADMISSION") or "true").lower() in TRUE,  # empty: the default
        cache_ttl=env_int(env, "PROXY_CACHE_TTL", 300),
        cache_scope=cache_scope,
        cache_max_bytes=cache_max_bytes,
        cache_max_entry_bytes=cache_max_entry_bytes,
        max_body_bytes=max_body_bytes,
        max_messages=env_int(env, "PROXY_MAX_MESSAGES", 2048),
        body_timeout=float(env_int(env, "PROXY_BODY_TIMEOUT", 30)),
        reserve_max_tokens=max(1, env_int(env, "PROXY_RESERVE_MAX_TOKENS", 1024)),
        retries=env_int(env, "PROXY_RETRIES", 2),
        upstream_timeout=float(env.get("PROXY_UPSTREAM_TIMEOUT", "300")),
        connect_timeout=float(env.get("PROXY_CONNECT_TIMEOUT", "5")),
        langfuse_host=env.get("LANGFUSE_HOST", ""),
        langfuse_public_key=env.get("LANGFUSE_PUBLIC_KEY", ""),
        langfuse_secret_key=env.get("LANGFUSE_SECRET_KEY", ""),
    )
