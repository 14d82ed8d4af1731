"""``/ws/conversations/?token=``: seed 001's inbox.

Inbound table (frame ``type`` → service call):

========================= =========================================================
``get_conversations``      ``list_conversations`` (``limit``, ``cursor``) →
                           ``conversations_list {conversations, next_cursor}``
``refresh_conversations``  the same
========================= =========================================================

The connection is in the user's inbox rooms, so ``conversation_updated`` (with the viewer's
``unread_count``) and, for staff, ``new_customer_message`` are pushed.
"""

from __future__ import annotations

from typing import Any

from backend.raw.adapter import Door, Handler, Session
from backend.realtime.dialects import WS_CONVERSATIONS
from backend.service.clock import iso_now
from backend.service.errors import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


async def get_conversations(session: Session, frame: dict[str, Any]) -> None:
    limit = frame.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be an integer from 1 to {MAX_LIMIT}")
    cursor = frame.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise invalid("cursor must be a string")
    conversations, next_cursor = await session.chat.list_conversations(
        session.actor, limit=limit, cursor=cursor
    )
    session.send({"type": "conversations_list", "conversations": conversations,
                  "next_cursor": next_cursor})


class WsConversationsDoor(Door):
    route = "/ws/conversations/"
    dialect = WS_CONVERSATIONS
    path_param = None
    handlers: dict[str, Handler] = {
        "get_conversations": get_conversations,
        "refresh_conversations": get_conversations,
    }

    async def welcome(self, session: Session) -> None:
        session.send({"type": "connection_established", "message": "Connected to conversations",
                      "user_id": session.actor.user_id, "timestamp": iso_now()})
        session.hub.join_inbox(session.member)
