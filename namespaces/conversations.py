"""``/conversations``: a user's inbox (seed 001's dashboard list).

``get_conversations {limit?, cursor?}`` and ``refresh_conversations`` answer with an ack
``{conversations, next_cursor}`` and a ``conversations_list`` event; the socket sits in the
user's inbox rooms, so ``conversation_updated`` (with the viewer's ``unread_count``) and, for
staff, ``new_customer_message`` are pushed.

Staff also read the support desk's queue here: ``get_queue {limit?, cursor?}`` answers with an
ack ``{conversations, next_cursor}`` (open support conversations with no agent, highest
priority then oldest first) and a ``queue_list`` event.
"""

from __future__ import annotations

from typing import Any

from backend.auth.accounts import actor_from_token
from backend.doors.connections import credential
from backend.doors.ids import page_request
from backend.realtime.dialects import CONVERSATIONS
from backend.service.actors import Actor
from backend.service.desk import QUEUE_DEFAULT_LIMIT, QUEUE_MAX_LIMIT
from namespaces.base import Namespace, Payload, Socket, as_object

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ConversationsNamespace(Namespace):
    dialect = CONVERSATIONS
    inbox = True
    joins_at_connect = False

    async def authenticate(self, credentials: dict[str, Any], environ: dict[str, Any]) -> Actor:
        return await actor_from_token(self.settings, self.app.state.sessions,
                                      credential(credentials, "token"))

    async def on_get_conversations(self, socket: Socket, data: Any) -> Payload:
        limit, cursor = page_request(as_object(data, optional=True), DEFAULT_LIMIT, MAX_LIMIT)
        return await self._list(socket, limit, cursor)

    async def on_refresh_conversations(self, socket: Socket, data: Any) -> Payload:
        as_object(data, optional=True)
        return await self._list(socket, DEFAULT_LIMIT, None)

    async def on_get_queue(self, socket: Socket, data: Any) -> Payload:
        limit, cursor = page_request(as_object(data, optional=True), QUEUE_DEFAULT_LIMIT,
                                     QUEUE_MAX_LIMIT)
        conversations, next_cursor = await self.chat.desk_queue(socket.actor, limit=limit,
                                                                cursor=cursor)
        page = {"conversations": conversations, "next_cursor": next_cursor}
        await self.send_to(socket, "queue_list", page)
        return page

    async def _list(self, socket: Socket, limit: int, cursor: str | None) -> Payload:
        conversations, next_cursor = await self.chat.list_conversations(
            socket.actor, limit=limit, cursor=cursor
        )
        page = {"conversations": conversations, "next_cursor": next_cursor}
        await self.send_to(socket, "conversations_list", page)
        return page
