"""Upstreams: routing by model name, the models they serve, and sending with retries.

Retries (exponential backoff with jitter) happen only where the connection could not be made
(httpx's ConnectError, ConnectTimeout): nothing was sent. A connection that breaks once the
request went out (RemoteProtocolError, a reset, a read error) is not retried: the upstream may
have received the request and be generating, and a retry would run it again (the audit saw three
copies). A timeout is a 504, a refused or broken connection a 502, in OpenAI's shape.
"""
from __future__ import annotations

import asyncio
import fnmatch
import random
import time
from typing import Any

import httpx

from swarm_proxy.config import OPENAI, Route, Settings
from swarm_proxy.errors import ProxyError, model_not_found, upstream_timeout, upstream_unreachable
from swarm_proxy.telemetry import UPSTREAM_ERRORS, UPSTREAM_RETRIES

MODELS_TTL = 10.0


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        )
        self._models: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def headers(self, upstream: str) -> dict[str, str]:
        if upstream == OPENAI and self.settings.openai_api_key:
            return {"Authorization": f"Bearer {self.settings.openai_api_key}"}
        return {}

    def route(self, model: str) -> Route | None:
        for route in self.settings.routes:
            if fnmatch.fnmatchcase(model, route.pattern):
                return route
        return None

    def distinct(self) -> list[str]:
        return list(dict.fromkeys(route.upstream for route in self.settings.routes))

    async def models(self, upstream: str, fresh: bool = False) -> list[dict[str, Any]]:
        """The upstream's /models (cached a few seconds); raises httpx errors."""
        cached = self._models.get(upstream)
        if cached and not fresh and time.monotonic() - cached[0] < MODELS_TTL:
            return cached[1]
        response = await self.http.get(f"{self.settings.base_url(upstream)}/models", headers=self.headers(upstream), timeout=5.0)
        response.raise_for_status()
        listing = response.json()  # ValueError when not JSON
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            raise ValueError("the upstream's /models is not an OpenAI model list")
        data = [item for item in data if isinstance(item, dict)]
        self._models[upstream] = (time.monotonic(), data)
        return data

    async def resolve(self, model: str) -> Route:
        """The route for a model; 404 when nothing routes it or a local upstream does not serve it."""
        route = self.route(model)
        if route is None:
            raise model_not_found(model)
        if route.upstream == OPENAI:
            return route  # OpenAI answers 404 itself for a model it does not have
        try:
            served = {item.get("id") for item in await self.models(route.upstream)}
            if model not in served:
                served = {item.get("id") for item in await self.models(route.upstream, fresh=True)}
        except httpx.TimeoutException:
            raise upstream_timeout() from None
        except httpx.HTTPError as error:
            raise upstream_unreachable(type(error).__name__) from None
        except ValueError:  # an upstream whose /models is not a model list cannot be routed to
            raise upstream_unreachable("its /models is not an OpenAI model list") from None
        if model not in served:
            raise model_not_found(model)
        return route

    async def open(self, route: Route, path: str, body: bytes) -> httpx.Response:
        """Send the request and return once the upstream's headers arrived (body not read)."""
        request = self.http.build_request(
            "POST", f"{self.settings.base_url(route.upstream)}/{path}", content=body,
            headers={"Content-Type": "application/json", **self.headers(route.upstream)},
        )
        attempt = 0
        while True:
            try:
                return await self.http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:  # never sent: safe to retry
                if attempt >= self.settings.retries:
                    UPSTREAM_ERRORS.labels("unreachable").inc()
                    raise upstream_unreachable(type(error).__name__) from None
            except httpx.TimeoutException:
                UPSTREAM_ERRORS.labels("timeout").inc()
                raise upstream_timeout() from None
            except httpx.HTTPError as error:
                UPSTREAM_ERRORS.labels("unreachable").inc()
                raise upstream_unreachable(type(error).__name__) from None
            UPSTREAM_RETRIES.inc()
            await asyncio.sleep(random.uniform(0, 0.1 * 2 ** attempt))
            attempt += 1

    async def aclose(self) -> None:
        await self.http.aclose()


def as_proxy_error(error: Exception) -> ProxyError:
    if isinstance(error, ProxyError):
        return error
    if isinstance(error, httpx.TimeoutException):
        return upstream_timeout()
    return upstream_unreachable(type(error).__name__)
