"""Which browser origins may open a WebSocket (cross-site WebSocket hijacking defence)."""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """No ``Origin`` (a non-browser client), the server's own origin, or a listed one."""
    if not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == (host or "").lower()
