"""Outbound HTTP to addresses that users and admins choose (webhook URLs, Web Push
endpoints), kept off the node's own networks (SSRF).

The host is resolved when a connection is opened, inside the HTTP client's network backend;
every address it resolves to must be public (no private, loopback, link-local, multicast,
reserved or unspecified address, IPv4 or IPv6, an IPv4-mapped IPv6 address judged as its
IPv4 one), and the socket is then opened to that very address: a DNS answer that changes
between the check and the connect (rebinding) cannot move it. The request keeps its URL, so
its ``Host`` header and TLS server name (and certificate check) are the host name's, and a
kept-alive connection serves only the host name it was opened for. Redirects are never
followed.
``WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`` lifts the address rule (one-host set-ups, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The longest wait for a host name's addresses.
RESOLVE_SECONDS = 5.0


class RefusedAddress(Exception):
    """The URL is not one the node may call; the message says why."""


class UnresolvedHost(RefusedAddress):
    """The host's addresses could not be had, now (no such name, no answer in time): not
    a verdict on the address. Registration accepts it (the rule holds at every call); a
    call tries again later."""


def check_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute http(s) URL, or RefusedAddress."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedAddress(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedAddress("the URL must be http or https")
    if not parts.hostname:
        raise RefusedAddress("the URL has no host")
    if parts.username or parts.password:
        raise RefusedAddress("the URL must not carry credentials")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def forbidden(address: IPAddress) -> bool:
    """Whether ``address`` is on a network the node must not call."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified
            or not address.is_global)


async def resolve(host: str, port: int, *, allow_private: bool) -> IPAddress:
    """The address to connect to for ``host``: every address it resolves to is checked
    (one private answer refuses the host), and the first is used."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS)
        except TimeoutError:
            raise UnresolvedHost(f"cannot resolve {host}: no answer in time") from None
        except OSError as exc:
            raise UnresolvedHost(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise UnresolvedHost(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if forbidden(address):
                raise RefusedAddress(
                    f"{host} resolves to {address}, a private, loopback, link-local or "
                    f"reserved address")
    return addresses[0]


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse (RefusedAddress) a URL the node would not call: at registration time. A host
    whose addresses cannot be had now is accepted: every call checks them again."""
    _, host, port = check_url(url)
    try:
        await resolve(host, port, allow_private=allow_private)
    except UnresolvedHost:
        return


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address rule at every connect: the host is
    resolved and checked here, and the socket is opened to that checked address (TLS still
    verifies the host name: httpcore hands it over as the server name)."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    # The signatures are httpcore's interface (hence its ``timeout`` parameter).
    async def connect_tcp(self, host: str, port: int,
                          timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        address = await resolve(host, port, allow_private=self.allow_private)
        return await self.inner.connect_tcp(str(address), port, timeout, local_address,
                                            socket_options)

    async def connect_unix_socket(self, path: str,
                                  timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport on a connection pool of ``GuardedBackend`` (what httpx's own
    transport does, with the backend it does not let one choose). Connections are pooled
    per host name, so each is reused only for the name it was checked and verified for."""

    def __init__(self, *, allow_private: bool) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=100,
            keepalive_expiry=30.0, network_backend=GuardedBackend(allow_private=allow_private))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        try:
            response = await self.pool.handle_async_request(core)
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc) or type(exc).__name__) from None
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise httpx.TransportError(str(exc) or type(exc).__name__) from None
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self.pool.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body read from httpcore."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self.stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self.stream:
                yield part
        except (httpcore.NetworkError, httpcore.ProtocolError,
                httpcore.TimeoutException) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        close = getattr(self.stream, "aclose", None)
        if close is not None:
            await close()


def guarded_client(*, allow_private: bool, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for addresses that users and admins choose: the address rule at every
    connect, and no redirect followed."""
    return httpx.AsyncClient(transport=GuardedTransport(allow_private=allow_private),
                             timeout=timeout, follow_redirects=False)


async def guarded_post(client: httpx.AsyncClient, url: str, *, content: bytes,
                       headers: dict[str, str]) -> httpx.Response:
    """POST ``content`` to ``url`` with a ``guarded_client``: the URL's form is checked
    here, its address at the connect."""
    check_url(url)
    return await client.post(url, content=content, headers=headers, follow_redirects=False)
