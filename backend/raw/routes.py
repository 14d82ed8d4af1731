"""The raw WebSocket routes of the seeds (CONTRACT section 5); each path also answers without
(or with) its trailing slash, as the seeds' clients write it either way."""

from __future__ import annotations

from starlette.routing import BaseRoute, WebSocketRoute

from backend.raw.adapter import Door, endpoint
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
