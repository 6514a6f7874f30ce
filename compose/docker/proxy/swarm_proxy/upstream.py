"""Upstreams: routing by model name, the models they serve, and sending with retries.

The upstream call is most of what a request costs the proxy. A plain-HTTP upstream reached
without an egress proxy or credentials in its URL (vLLM, Ray, anything on the swarm's network) is sent to through http1.py,
a kept-alive connection per request and the request in one send; one over TLS or through an egress
proxy (OpenAI), and every model list, through aiohttp. httpx had cost about 2.5 ms of CPU a
request (its pool and anyio layers), aiohttp 0.22-0.26 ms, http1.py 0.07 ms. The rest of the proxy
sees `TRANSPORT_ERRORS` and `Reply` only (status, headers, read, chunks, unread, close), not the
library.

Retries (exponential backoff with jitter) happen only where the connection could not be made
(http1's ConnectFailed, aiohttp's ClientConnectorError, ConnectionTimeoutError): nothing was sent.
A connection that breaks once the request went out (ConnectionBroken, ServerDisconnectedError, a
reset, a payload error) is not
retried: the upstream may have received the request and be generating, and a retry would run it
again (the audit saw three copies). A timeout is a 504, a refused or broken connection a 502, in
OpenAI's shape. Pooled connections are dropped after KEEPALIVE_S idle, below the 5 s after which
uvicorn (vLLM's server) closes them, so that a request is not sent on a connection the upstream
is closing.

An egress proxy from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, by urllib's rules as
aiohttp reads them) is chosen for each upstream once, at start. aiohttp's `trust_env` would choose
it again on every request, reading the environment and ~/.netrc in a worker thread each time: that
halved the proxy's rate. ~/.netrc is read only for the egress proxy's credentials, never for the
upstreams' (OpenAI's key is OPENAI_API_KEY).
"""
from __future__ import annotations

import asyncio
import fnmatch
import random
import time
from typing import Any, AsyncIterator, Union

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from swarm_proxy import http1
from swarm_proxy.config import OPENAI, Route, Settings
from swarm_proxy.errors import ProxyError, model_not_found, upstream_timeout, upstream_unreachable
from swarm_proxy.telemetry import UPSTREAM_ERRORS, UPSTREAM_RETRIES

MODELS_TTL = 10.0
KEEPALIVE_S = 4.0
# What an upstream call may raise besides ProxyError: the connection's failures and timeouts.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, http1.ConnectFailed,
                                                      http1.ConnectionBroken, asyncio.TimeoutError)
NEVER_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, http1.ConnectFailed)


class AiohttpReply:
    """aiohttp's response as the proxy reads a reply (http1.Reply's methods)."""

    __slots__ = ("_response", "status", "headers")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response, self.status, self.headers = response, response.status, response.headers

    async def read(self) -> bytes:
        return await self._response.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    def unread(self) -> bytes:
        """What arrived before the connection broke and was not read yet. aiohttp's reader raises
        the break before it hands out bytes already received (StreamReader.readany checks its
        exception first), so whole events an upstream sent just before it died would be lost; this
        drains them through the reader's own StreamReader._read_nowait (private: aiohttp is pinned,
        and tests/proxy/test_upstream_faults.py fails when the salvage stops working)."""
        try:
            return self._response.content._read_nowait(-1)
        except Exception:  # noqa: BLE001 - nothing to salvage
            return b""

    def close(self) -> None:
        self._response.close()


Reply = Union[http1.Reply, AiohttpReply]


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Made inside the running loop (the app's lifespan), as aiohttp requires.
        self.http = aiohttp.ClientSession(
            # connect: a free pooled connection, DNS and the TCP (and TLS) connect, as httpx's connect
            # timeout bounded them; sock_read: each read, as httpx's read timeout.
            timeout=aiohttp.ClientTimeout(total=None, connect=settings.connect_timeout,
                                          sock_connect=settings.connect_timeout, sock_read=settings.upstream_timeout),
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=KEEPALIVE_S),
            # No cookies: one upstream's Set-Cookie must not travel with the next client's request.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._egress = {upstream: egress_proxy(settings.base_url(upstream)) for upstream in self.distinct()}
        self._pools: dict[str, http1.Pool] = {}
        for upstream in self.distinct():
            url = URL(settings.base_url(upstream))
            if url.scheme == "http" and url.host and not url.user and not self._egress[upstream]:
                self._pools[upstream] = http1.Pool(url.host, url.port or 80, settings.connect_timeout,
                                                   settings.upstream_timeout, KEEPALIVE_S)
        self._models: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._urls: dict[tuple[str, str], URL] = {}
        self._heads: dict[tuple[str, str], bytes] = {}

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
        """The upstream's /models (cached a few seconds); raises TRANSPORT_ERRORS, or ValueError
        when the answer is not an OpenAI model list."""
        cached = self._models.get(upstream)
        if cached and not fresh and time.monotonic() - cached[0] < MODELS_TTL:
            return cached[1]
        async with self.http.get(f"{self.settings.base_url(upstream)}/models", headers=self.headers(upstream),
                                 timeout=aiohttp.ClientTimeout(total=5.0), allow_redirects=False,
                                 **self._egress.get(upstream, {})) as response:
            response.raise_for_status()
            listing = await response.json(content_type=None)  # ValueError when not JSON
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
        except asyncio.TimeoutError:
            raise upstream_timeout() from None
        except aiohttp.ClientError as error:
            raise upstream_unreachable(type(error).__name__) from None
        except ValueError:  # an upstream whose /models is not a model list cannot be routed to
            raise upstream_unreachable("its /models is not an OpenAI model list") from None
        if model not in served:
            raise model_not_found(model)
        return route

    def _head(self, upstream: str, path: str) -> bytes:
        """The request's head for http1.py up to the body's length, made once per upstream and path."""
        head = self._heads.get((upstream, path))
        if head is None:
            url = URL(f"{self.settings.base_url(upstream)}/{path}")
            lines = [f"POST {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}",
                     "Content-Type: application/json", *(f"{k}: {v}" for k, v in self.headers(upstream).items())]
            head = self._heads[(upstream, path)] = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        return head

    async def _send(self, route: Route, path: str, body: bytes) -> Reply:
        pool = self._pools.get(route.upstream)
        if pool is not None:
            return await pool.request(b"%s%d\r\n\r\n%s" % (self._head(route.upstream, path), len(body), body))
        url = self._urls.get((route.upstream, path))
        if url is None:  # parsed once per upstream and path, not per request
            url = self._urls[(route.upstream, path)] = URL(f"{self.settings.base_url(route.upstream)}/{path}")
        headers = {"Content-Type": "application/json", **self.headers(route.upstream)}
        # A redirect is relayed, not followed (httpx did not follow either): a 301 would turn the POST
        # into a GET without its body.
        return AiohttpReply(await self.http.post(url, data=body, headers=headers, allow_redirects=False,
                                                 **self._egress.get(route.upstream, {})))

    async def open(self, route: Route, path: str, body: bytes) -> Reply:
        """Send the request and return once the upstream's headers arrived (body not read). The
        caller closes the reply: once read to its end that returns the connection to the pool,
        before that it closes the connection (the upstream sees the client go)."""
        attempt = 0
        while True:
            try:
                return await self._send(route, path, body)
            except NEVER_SENT as error:  # never sent: safe to retry
                if attempt >= self.settings.retries:
                    UPSTREAM_ERRORS.labels("unreachable").inc()
                    raise upstream_unreachable(type(error).__name__) from None
            except asyncio.TimeoutError:
                UPSTREAM_ERRORS.labels("timeout").inc()
                raise upstream_timeout() from None
            except (aiohttp.ClientError, http1.ConnectionBroken) as error:
                UPSTREAM_ERRORS.labels("unreachable").inc()
                raise upstream_unreachable(type(error).__name__) from None
            UPSTREAM_RETRIES.inc()
            await asyncio.sleep(random.uniform(0, 0.1 * 2 ** attempt))
            attempt += 1

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        await self.http.close()


def egress_proxy(base_url: str) -> dict[str, Any]:
    """aiohttp's `proxy` for requests to `base_url`, as its trust_env would choose it: the
    environment's proxy for the URL's scheme (urllib's rules: lower case first), unless NO_PROXY
    exempts the host; credentials from the proxy URL or ~/.netrc ride in the URL (aiohttp sends
    them as Proxy-Authorization; its `proxy_auth` parameter is deprecated). None: {}."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return {}
    if auth is not None:
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return {"proxy": proxy}


def as_proxy_error(error: BaseException) -> ProxyError:
    if isinstance(error, ProxyError):
        return error
    if isinstance(error, asyncio.TimeoutError):
        return upstream_timeout()
    return upstream_unreachable(type(error).__name__)
