"""Which browser origins may open a WebSocket (cross-site WebSocket hijacking defence)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

#: A page served from this machine: http(s) on ``localhost`` (or a name under it), a
#: 127.0.0.0/8 address or ``[::1]``, any port (CORS's ``allow_origin_regex``).
LOCAL_ORIGIN = re.compile(
    r"https?://(localhost|[a-z0-9.-]+\.localhost|127(\.[0-9]{1,3}){3}|\[::1\])(:[0-9]{1,5})?",
    re.IGNORECASE)


def local_origin(origin: str) -> bool:
    """Whether ``origin`` is a page served from this machine (``LOCAL_ORIGIN``)."""
    if LOCAL_ORIGIN.fullmatch(origin) is None:
        return False
    host = urlsplit(origin).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...],
                   local: bool = False) -> bool:
    """No ``Origin`` (a non-browser client), the server's own origin, a listed one, or (with
    ``local``: development) a page served from this machine."""
    if not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if local and local_origin(origin):
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == (host or "").lower()
