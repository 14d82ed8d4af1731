"""The raw WebSocket routes of the seeds (CONTRACT section 5); each path also answers without
(or with) its trailing slash, as the seeds' clients write it either way.

The routes are Starlette routes of the app, and ``RawRoutes`` (in front of Socket.IO and
Starlette, see ``Realtime.asgi``) hands their upgrades straight to their doors.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.compat.starlette import enter_route
from backend.raw.adapter import Door, Endpoint, endpoint
from backend.raw.ws_chat import WsChatDoor
from backend.raw.ws_conversations import WsConversationsDoor
from backend.raw.ws_mobile import WsMobileDoor
from backend.raw.ws_session import WsSessionDoor

DOORS: list[tuple[str, Door]] = [
    ("/ws/chat/{conversation_id}/", WsChatDoor()),
    ("/ws/mobile/chat/{conversation_id}/", WsMobileDoor()),
    ("/ws/conversations/", WsConversationsDoor()),
    ("/api/v1/chat/ws/{session_id}", WsSessionDoor()),
]


def websocket_routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for path, door in DOORS:
        run = endpoint(door)
        other = path[:-1] if path.endswith("/") else f"{path}/"
        routes.append(WebSocketRoute(path, run))
        routes.append(WebSocketRoute(other, run))
    return routes


class RawRoutes:
    """ASGI app: a WebSocket upgrade on a raw route goes straight to its door; everything
    else to ``fallback``.

    Starlette routes them to the same place (its other routes take HTTP only), but through
    its middleware, router and route wrappers: a dozen coroutine frames and closures, 3.2 KB
    measured (backend/compat/starlette.py), allocated for as long as each connection lives.
    The doors handle their own errors (backend/raw/adapter.py), so Starlette's exception
    handlers had nothing to do for them."""

    __slots__ = ("app", "fallback", "marks", "routes")

    def __init__(self, app: Any, fallback: ASGIApp) -> None:
        #: The Starlette app: the raw routes are its own, and doors read its state.
        self.app = app
        self.fallback = fallback
        self.routes = [route for route in app.routes
                       if isinstance(route, WebSocketRoute) and isinstance(route.app, Endpoint)]
        #: What the path of an upgrade to any of them holds (each route's path up to its
        #: first parameter): a path with none of these (Socket.IO's) matches no route, and is
        #: not tried against each.
        self.marks = tuple({route.path.partition("{")[0] for route in self.routes})

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: it returns the chosen app's, so that no frame of its own stays
        # under every connection (Socket.IO's included) for the connection's life.
        if scope["type"] == "websocket" and any(mark in scope["path"] for mark in self.marks):
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    # What Starlette's app and router would have set on the way.
                    enter_route(scope, self.app, route, child_scope)
                    return route.app(scope, receive, send)
        return self.fallback(scope, receive, send)
