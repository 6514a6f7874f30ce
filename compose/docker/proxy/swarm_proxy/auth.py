"""Which client key a request carries: decided from its headers alone, before any body is read.

The scheme of `Authorization: Bearer <key>` is matched in any case (RFC 9110: schemes are
case-insensitive). A refusal is counted and logged, one line, never with the key that was sent.
"""
from __future__ import annotations

from typing import Mapping

from swarm_proxy.config import ClientKey
from swarm_proxy.errors import unauthorized
from swarm_proxy.telemetry import REQUESTS, event


def bearer(headers: Mapping[str, str], keys: Mapping[str, ClientKey]) -> ClientKey | None:
    """The key of `Authorization: Bearer <key>`, if it is one of ours."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return keys.get(token.strip()) if scheme.lower() == "bearer" else None


def authenticate(headers: Mapping[str, str], keys: Mapping[str, ClientKey], endpoint: str) -> ClientKey:
    """The request's key; a 401 in OpenAI's shape (counted and logged) when it has none of ours."""
    client = bearer(headers, keys)
    if client is None:
        REQUESTS.labels(endpoint, "401").inc()
        event("request", endpoint=endpoint, status=401, error="invalid_api_key")  # never the key sent
        raise unauthorized()
    return client
