"""The agents' web dashboard: ``GET /`` (the page) and ``/dashboard/static/`` (its assets).

Everything the page loads comes from this server: its script, its stylesheet and the vendored
Socket.IO browser client (see ``static/VENDORED.md``). Every response carries a strict
Content-Security-Policy: scripts, styles, images and connections from this origin only (plus
the WebSocket to this host), no inline code, no framing, no plugins, no foreign form targets.
See docs/dashboard.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/dashboard/static"

#: Explicit types: ``mimetypes`` reads the machine's /etc/mime.types, which varies.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}

#: A Host header we are willing to echo into the policy (name or address, optional port).
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def content_security_policy(host: str | None) -> str:
    """The page's policy. ``'self'`` covers same-origin WebSockets in CSP 3; the explicit
    ``ws://host`` / ``wss://host`` sources are for browsers that predate that rule."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join((
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        f"connect-src {connect}",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ))


def security_headers(request_host: str | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(request_host),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


async def index(request: Request) -> Response:
    """The dashboard page. Not cached, so a deploy's new asset names are picked up at once."""
    headers = security_headers(request.headers.get("host"))
    headers["Cache-Control"] = "no-cache"
    return FileResponse(STATIC_DIR / "index.html", media_type=CONTENT_TYPES[".html"],
                        headers=headers)


class DashboardStatic(StaticFiles):
    """StaticFiles with exact content types and the dashboard's security headers."""

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = CONTENT_TYPES.get(Path(full_path).suffix.lower())
        if media_type is not None and response.status_code != 304:
            response.headers["Content-Type"] = media_type
        host = Headers(scope=scope).get("host")
        for name, value in security_headers(host).items():
            response.headers[name] = value
        response.headers["Cache-Control"] = "no-cache"
        return response


def dashboard_routes() -> list[BaseRoute]:
    """``GET /`` exactly (no catch-all: it shadows nothing) and the static assets."""
    return [
        Route("/", index, methods=["GET", "HEAD"], name="dashboard"),
        Mount(STATIC_PREFIX, app=DashboardStatic(directory=STATIC_DIR), name="dashboard-static"),
    ]
