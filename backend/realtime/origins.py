"""Which browser origins may open a WebSocket (cross-site WebSocket hijacking defence)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: A page served from this machine: http(s) on ``localhost`` (or a name under it), a
#: 127.0.0.0/8 address or ``[::1]``, any port. The same pattern serves CORS's
#: ``allow_origin_regex`` (matched whole; the flag is inline, so it holds there too).
LOCAL_ORIGIN = re.compile(
    rf"(?i)https?://(localhost|[a-z0-9.-]+\.localhost|127(\.{_OCTET}){{3}}|\[::1\])"
    r"(:[0-9]{1,5})?")


def local_origin(origin: str) -> bool:
    """Whether ``origin`` is a page served from this machine (``LOCAL_ORIGIN``)."""
    return LOCAL_ORIGIN.fullmatch(origin) is not None


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
