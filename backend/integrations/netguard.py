"""Outbound HTTP to addresses that users and admins choose (webhook URLs, Web Push
endpoints), kept off the node's own networks (SSRF).

The host is resolved once here; every address it resolves to must be public (no private,
loopback, link-local, multicast, reserved or unspecified address, IPv4 or IPv6, an
IPv4-mapped IPv6 address judged as its IPv4 one), and the request then connects to that very
address, with the original ``Host`` header and TLS server name: a DNS answer that changes
between the check and the connect (rebinding) cannot move it. Redirects are never followed.
``WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`` lifts the address rule (one-host set-ups, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The longest wait for a host name's addresses.
RESOLVE_SECONDS = 5.0


class RefusedAddress(Exception):
    """The URL is not one the node may call; the message says why."""


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
            raise RefusedAddress(f"cannot resolve {host}: no answer in time") from None
        except OSError as exc:
            raise RefusedAddress(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise RefusedAddress(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if forbidden(address):
                raise RefusedAddress(
                    f"{host} resolves to {address}, a private, loopback, link-local or "
                    f"reserved address")
    return addresses[0]


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse (RefusedAddress) a URL the node would not call: at registration time."""
    _, host, port = check_url(url)
    await resolve(host, port, allow_private=allow_private)


async def guarded_post(client: httpx.AsyncClient, url: str, *, content: bytes,
                       headers: dict[str, str], allow_private: bool) -> httpx.Response:
    """POST ``content`` to ``url`` through the checked address (see the module's
    docstring). The client must not follow redirects."""
    scheme, host, port = check_url(url)
    address = await resolve(host, port, allow_private=allow_private)
    target = httpx.URL(url)
    request = client.build_request(
        "POST", target.copy_with(host=str(address)), content=content,
        headers={**headers, "Host": target.netloc.decode("ascii")},
        # TLS: the certificate is checked against the name, not the address.
        extensions={"sni_hostname": host} if scheme == "https" else {})
    return await client.send(request, follow_redirects=False)
