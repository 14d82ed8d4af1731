"""``/ws/conversations/?token=``: seed 001's inbox.

Inbound table (frame ``type`` → service call):

========================= =========================================================
``get_conversations``      ``list_conversations`` (``limit``, ``cursor``) →
                           ``conversations_list {conversations, next_cursor}``
``refresh_conversations``  the same
``get_queue``              ``desk_queue`` (staff; ``limit``, ``cursor``) →
                           ``queue_list {conversations, next_cursor}``
========================= =========================================================

On connect: ``connection_established``, then ``conversations_list`` (the first page, as
``get_conversations`` answers it). The connection is in the user's inbox rooms, so
``conversation_updated`` (with the viewer's ``unread_count``) and, for staff,
``new_customer_message`` are pushed.
"""

from __future__ import annotations

from typing import Any

from backend.doors.ids import page_request
from backend.raw.adapter import Door, Handler, Session
from backend.realtime.dialects import WS_CONVERSATIONS
from backend.service.clock import iso_now
from backend.service.desk import QUEUE_DEFAULT_LIMIT, QUEUE_MAX_LIMIT

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: An inbox's hold answers for no conversation (no position to drop held frames at or below).
NO_CONVERSATION = 0


async def get_conversations(session: Session, frame: dict[str, Any]) -> None:
    limit, cursor = page_request(frame, DEFAULT_LIMIT, MAX_LIMIT)
    conversations, next_cursor = await session.chat.list_conversations(
        session.actor, limit=limit, cursor=cursor
    )
    session.send({"type": "conversations_list", "conversations": conversations,
                  "next_cursor": next_cursor})


async def get_queue(session: Session, frame: dict[str, Any]) -> None:
    limit, cursor = page_request(frame, QUEUE_DEFAULT_LIMIT, QUEUE_MAX_LIMIT)
    conversations, next_cursor = await session.chat.desk_queue(
        session.actor, limit=limit, cursor=cursor
    )
    session.send({"type": "queue_list", "conversations": conversations,
                  "next_cursor": next_cursor})


class WsConversationsDoor(Door):
    route = "/ws/conversations/"
    dialect = WS_CONVERSATIONS
    path_param = None
    handlers: dict[str, Handler] = {
        "get_conversations": get_conversations,
        "refresh_conversations": get_conversations,
        "get_queue": get_queue,
    }

    async def welcome(self, session: Session) -> None:
        """``connection_established``, then the first page of the list as
        ``conversations_list`` (seed 001's example renders the list it is sent and never asks
        for it). The inbox rooms are joined before the page is read: an update it does not
        show reaches the client after it."""
        session.send({"type": "connection_established", "message": "Connected to conversations",
                      "user_id": session.actor.user_id, "timestamp": iso_now()})
        member = session.member
        member.hold()  # updates published while the page is read follow it
        try:
            session.hub.join_inbox(member)
            await get_conversations(session, {})
        finally:
            member.release(NO_CONVERSATION)
