"""``/chat``: one user's sockets in conversations (CONTRACT section 4).

Client events and their acks (each also answers ``{ok: false, error}`` when refused):
``join`` → ``{conversation, messages, has_more}``; ``leave``; ``chat_message`` →
``{message, duplicate}``; ``typing_indicator``; ``read_receipt``; ``message_status``;
``message_reaction``; ``message_edit``; ``message_delete``; a group's membership (no join
needed): ``add_members`` → ``{participants}``, ``remove_member``, ``leave_conversation``.
Server events are the canonical events of the conversations the socket joined; see
docs/socketio.md.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import orjson

from backend.auth.accounts import actor_from_token
from backend.doors.connections import credential
from backend.doors.ids import (
    as_ids,
    id_field,
    id_list,
    optional_after_id,
    optional_id,
    resume_point,
)
from backend.realtime.codec import SharedEncodings
from backend.realtime.dialects import CHAT, MESSAGES, SocketIODialect
from backend.realtime.hub import Realtime
from backend.realtime.server import after_ack
from backend.service.actors import Actor
from backend.service.members import MAX_ADD_PER_CALL
from namespaces.base import Namespace, Payload, Socket, as_object

#: Messages in a ``join`` ack: the latest, or the first ones after ``after_message_id``.
JOIN_PAGE = 50


class ChatNamespace(Namespace):
    dialect: ClassVar[SocketIODialect] = CHAT

    def __init__(self, realtime: Realtime, app: Any) -> None:
        super().__init__(realtime, app)
        #: The resumes' replays, encoded once for the readers who get the same one.
        self.encodings = SharedEncodings()

    async def authenticate(self, credentials: dict[str, Any], environ: dict[str, Any]) -> Actor:
        return await actor_from_token(self.settings, self.app.state.sessions,
                                      credential(credentials, "token"))

    # -- membership -------------------------------------------------------------------------

    async def on_join(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = id_field(data, "conversation_id")
        after = optional_after_id(data, "after_message_id")
        actor = socket.actor
        if data.get("since") is not None:
            return await self._resume(socket, conversation_id, data["since"])
        # Access first: joining the room tells the others who arrived.
        await self.chat.grants.viewable(actor, conversation_id)
        member = socket.member
        # Join before reading history, holding live frames back: what is committed in between
        # is in the page (then dropped from the held frames, by position) or comes after it.
        member.hold()
        position: int | None = None
        shown: frozenset[int] = frozenset()
        try:
            await self.realtime.join_conversation(member, conversation_id)
            await self.joined_check(socket, conversation_id)
            # The log's position before the history and the conversation are read: they
            # show every change up to it, and a later resume from it misses nothing.
            at = await self.chat.log_position(conversation_id)
            messages, has_more = await self.chat.history(
                actor, conversation_id, limit=JOIN_PAGE, after_id=after, latest=after is None,
                shared=True,
            )
            conversation = await self.chat.get_conversation(actor, conversation_id)
            position, shown = at, frozenset(m["id"] for m in messages)
        finally:
            # The events up to ``position`` are in the answer: neither the held frames nor a
            # node catching up after another's loss write them to this socket again; nor a
            # held message the page shows (committed after the position was read).
            after_ack(lambda: self.realtime.release(member, conversation_id, position,
                                                    functools.partial(_shown, shown)))
        return {"conversation": conversation, "messages": messages, "has_more": has_more,
                "position": position, "epoch": await self.chat.log_epoch()}

    async def _resume(self, socket: Socket, conversation_id: int, since: Any) -> Payload:
        """``join`` with ``since: {position, epoch}``: the events missed after that position
        in the ack (CONTRACT §9); live events that arrive meanwhile follow the ack, minus
        those it holds, so each reaches the socket once and in order."""
        position, epoch = resume_point(since)
        actor, member = socket.actor, socket.member
        conversation = await self.chat.get_conversation(actor, conversation_id)
        member.hold()
        floor: int | None = None
        try:
            await self.realtime.join_conversation(member, conversation_id)
            await self.joined_check(socket, conversation_id)
            result = await self.chat.events_since(actor, conversation_id, position, epoch)
            floor = result["position"] if not result["has_more"] else None
            # The same list for every reader of the point whom no event skips: encoded once.
            result["events"] = self.encodings.fragment(result["events"])
        finally:
            # A partial page (has_more): the client asks again from its position, and live
            # events are let through as they are (it dedupes by position).
            after_ack(lambda: self.realtime.release(member, conversation_id, floor))
        return {"conversation": conversation, **result}

    async def on_leave(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = id_field(data, "conversation_id")
        await self.realtime.leave_conversation(socket.member, conversation_id)
        return {"conversation_id": conversation_id}

    # -- group membership (CONTRACT section 10) ----------------------------------------------

    async def on_add_members(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = id_field(data, "conversation_id")
        user_ids = as_ids(data.get("user_ids"), "user_ids", most=MAX_ADD_PER_CALL)
        participants = await self.chat.add_members(socket.actor, conversation_id, user_ids,
                                                   data.get("role", "member"))
        return {"conversation_id": conversation_id, "participants": participants}

    async def on_remove_member(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = id_field(data, "conversation_id")
        result = await self.chat.remove_member(socket.actor, conversation_id,
                                               id_field(data, "user_id"))
        return {key: result[key] for key in ("conversation_id", "user_id")}

    async def on_leave_conversation(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        result = await self.chat.leave_conversation(socket.actor,
                                                    id_field(data, "conversation_id"))
        return {key: result[key] for key in ("conversation_id", "user_id")}

    # -- messages ---------------------------------------------------------------------------

    async def on_chat_message(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = self.joined_conversation(socket, data)
        message, created = await self.chat.send_message(
            socket.actor, conversation_id, data, rate=socket.bucket, origin=socket.member.id
        )
        # Its JSON as the room's frames of it were encoded (once for both).
        return {"message": MESSAGES.fragment(message), "duplicate": not created}

    async def on_typing_indicator(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = self.joined_conversation(socket, data)
        is_typing = data.get("is_typing")
        await self.chat.typing(socket.actor, conversation_id, is_typing)
        return {"conversation_id": conversation_id, "is_typing": is_typing}

    async def on_read_receipt(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        conversation_id = self.joined_conversation(socket, data)
        result = await self.chat.mark_read(
            socket.actor,
            conversation_id,
            up_to_message_id=optional_id(data, "up_to_message_id"),
            message_ids=id_list(data, "message_ids"),
        )
        return {key: result[key] for key in
                ("conversation_id", "message_ids", "marked_count", "read_at")}

    async def on_message_status(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        message_id = id_field(data, "message_id")
        conversation_id = await self.message_conversation(socket, data, message_id)
        result = await self.chat.set_message_status(
            socket.actor, message_id, data.get("status"), conversation_id=conversation_id
        )
        return {"conversation_id": conversation_id, **result}

    async def on_message_reaction(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        message_id = id_field(data, "message_id")
        conversation_id = await self.message_conversation(socket, data, message_id)
        result = await self.chat.toggle_reaction(
            socket.actor, message_id, data.get("emoji"), conversation_id=conversation_id
        )
        return {"conversation_id": conversation_id, **result}

    async def on_message_edit(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        message_id = id_field(data, "message_id")
        conversation_id = await self.message_conversation(socket, data, message_id)
        message = await self.chat.edit_message(
            socket.actor, message_id, data.get("content"), conversation_id=conversation_id
        )
        return {"message": message}

    async def on_message_delete(self, socket: Socket, data: Any) -> Payload:
        data = as_object(data)
        message_id = id_field(data, "message_id")
        conversation_id = await self.message_conversation(socket, data, message_id)
        message = await self.chat.delete_message(
            socket.actor, message_id, conversation_id=conversation_id
        )
        return {"message": message}


#: How a held ``chat_message`` packet of this namespace begins.
_CHAT_MESSAGE = '2/chat,["chat_message",'


def _shown(shown: frozenset[int], text: str) -> bool:
    """Whether ``text`` is a held ``chat_message`` whose message the join's page shows."""
    if not shown or not text.startswith(_CHAT_MESSAGE):
        return False
    payload = orjson.loads(text[len('2/chat,'):])[1]
    return isinstance(payload, dict) and payload.get("message", {}).get("id") in shown
