"""``/conversations``: a user's inbox (seed 001's dashboard list).

``get_conversations {limit?, cursor?}`` and ``refresh_conversations`` answer with an ack
``{conversations, next_cursor}`` and a ``conversations_list`` event; the socket sits in the
user's inbox rooms, so ``conversation_updated`` (with the viewer's ``unread_count``) and, for
staff, ``new_customer_message`` are pushed.
"""

from __future__ import annotations

from typing import Any

from backend.auth.accounts import user_from_token
from backend.realtime.dialects import CONVERSATIONS
from backend.service.actors import Actor
from backend.service.errors import invalid
from namespaces.base import Namespace, Payload, Socket, as_object, credential

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ConversationsNamespace(Namespace):
    dialect = CONVERSATIONS
    inbox = True
    joins_at_connect = False

    async def authenticate(self, credentials: dict[str, Any], environ: dict[str, Any]) -> Actor:
        user = await user_from_token(self.settings, credential(credentials, "token"))
        return Actor.of_user(user)

    async def on_get_conversations(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data, optional=True)
        limit = data.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise invalid(f"limit must be an integer from 1 to {MAX_LIMIT}")
        cursor = data.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise invalid("cursor must be a string")
        return await self._list(socket, limit, cursor or None)

    async def on_refresh_conversations(self, socket: Socket, data: Any) -> Payload:
        as_object(data, optional=True)
        return await self._list(socket, DEFAULT_LIMIT, None)

    async def _list(self, socket: Socket, limit: int, cursor: str | None) -> Payload:
        conversations, next_cursor = await self.chat.list_conversations(
            socket.actor, limit=limit, cursor=cursor
        )
        page = {"conversations": conversations, "next_cursor": next_cursor}
        await self.send_to(socket, "conversations_list", page)
        return page
