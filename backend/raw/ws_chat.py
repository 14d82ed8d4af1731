"""``/ws/chat/{conversation_id}/``: seeds 001, 002 and 004 on one route (CONTRACT section 5).

Inbound table (frame ``type`` → service call):

=================== ===================================================================
``chat_message``     ``send_message`` (content, parent_message_id, reply_to_id, media,
                     metadata, is_urgent, client_msg_id); echoed to the sender by the room
``typing``           ``typing`` (seed 001)
``typing_indicator`` ``typing`` (seeds 002, 004)
``mark_read``        ``mark_read``: ``up_to_message_id`` / ``message_ids``, or everything
``message_read``     ``mark_read(message_ids)`` (seed 004)
``read_receipt``     ``mark_read`` of ``message_id`` or ``message_ids`` (seed 002)
``message_reaction`` ``toggle_reaction``
``message_edit``     ``edit_message``
``message_delete``   ``delete_message``
``message_status``   ``set_message_status``
=================== ===================================================================

Outbound frames are the WS_CHAT dialect's (backend/realtime/dialects.py).

The welcome's history page leaves out whom the user blocked: the connect reads the user's
blocks with the token's user, in one statement (``reads_blocks``).
"""

from __future__ import annotations

import functools
from collections.abc import Coroutine
from typing import Any

import orjson

from backend.doors.ids import as_id, as_ids
from backend.raw.adapter import (
    Door,
    Handler,
    Session,
    read_resumption,
    send_chat_message,
)
from backend.realtime.codec import SharedEncodings
from backend.realtime.dialects import WS_CHAT
from backend.service.clock import iso_now

RECENT_MESSAGES = 50


def chat_message(session: Session, frame: dict[str, Any]) -> Coroutine[Any, Any, None]:
    # The frame as it is: a draft ignores keys it does not name (``type`` among them). The
    # send's coroutine itself, not one awaiting it (every message passes here).
    return send_chat_message(session, frame)


async def typing(session: Session, frame: dict[str, Any]) -> None:
    assert session.conversation_id is not None
    await session.chat.typing(session.actor, session.conversation_id,
                              frame.get("is_typing", True))


async def mark_read(session: Session, frame: dict[str, Any]) -> None:
    assert session.conversation_id is not None
    ids = frame.get("message_ids")
    up_to = frame.get("up_to_message_id")
    await session.chat.mark_read(
        session.actor, session.conversation_id,
        up_to_message_id=None if up_to is None else as_id(up_to, "up_to_message_id"),
        message_ids=None if ids is None else as_ids(ids),
    )


async def message_read(session: Session, frame: dict[str, Any]) -> None:
    assert session.conversation_id is not None
    await session.chat.mark_read(session.actor, session.conversation_id,
                                 message_ids=as_ids(frame.get("message_ids")))


async def read_receipt(session: Session, frame: dict[str, Any]) -> None:
    assert session.conversation_id is not None
    if "message_ids" in frame:
        ids = as_ids(frame["message_ids"])
    else:
        ids = [as_id(frame.get("message_id"))]
    await session.chat.mark_read(session.actor, session.conversation_id, message_ids=ids)


async def message_reaction(session: Session, frame: dict[str, Any]) -> None:
    await session.chat.toggle_reaction(session.actor, as_id(frame.get("message_id")),
                                       frame.get("emoji"),
                                       conversation_id=session.conversation_id)


async def message_edit(session: Session, frame: dict[str, Any]) -> None:
    await session.chat.edit_message(session.actor, as_id(frame.get("message_id")),
                                    frame.get("content"),
                                    conversation_id=session.conversation_id)


async def message_delete(session: Session, frame: dict[str, Any]) -> None:
    await session.chat.delete_message(session.actor, as_id(frame.get("message_id")),
                                      conversation_id=session.conversation_id)


async def message_status(session: Session, frame: dict[str, Any]) -> None:
    await session.chat.set_message_status(session.actor, as_id(frame.get("message_id")),
                                          frame.get("status"),
                                          conversation_id=session.conversation_id)


class WsChatDoor(Door):
    route = "/ws/chat/"
    dialect = WS_CHAT
    reads_blocks = True  # the welcome's history page
    handlers: dict[str, Handler] = {
        "chat_message": chat_message,
        "typing": typing,
        "typing_indicator": typing,
        "mark_read": mark_read,
        "message_read": message_read,
        "read_receipt": read_receipt,
        "message_reaction": message_reaction,
        "message_edit": message_edit,
        "message_delete": message_delete,
        "message_status": message_status,
    }

    async def welcome(self, session: Session) -> None:
        """``connection_established``, then ``recent_messages``, then the events missed after
        ``?since=`` (CONTRACT §9), then presence and live frames. Live frames wait while the
        history is read; a message both in the history and replayed or live is sent once: the
        replay's messages are left out of the history page, and live ones in it are dropped.

        The page is read before the replay: what the page keeps is then older than all that
        the replay sends (at or before the resume point), and a message committed between
        the two reads is in the replay, after the page, in its place."""
        cid = session.conversation_id
        assert cid is not None
        member = session.member
        session.send({"type": "connection_established", "message": "Connected to chat",
                      "conversation_id": cid, "user_id": session.actor.user_id,
                      "timestamp": iso_now()})
        member.hold()
        await session.hub.join_conversation(member, cid)
        recent = await session.chat.recent(session.actor, cid, RECENT_MESSAGES)
        resumption = await read_resumption(session)
        messages: Any = recent.messages if recent.json is None else orjson.Fragment(recent.json)
        replayed = resumption.messages if resumption is not None else frozenset()
        if replayed and any(m["id"] in replayed for m in recent.messages):
            # The readers of one page resuming from one point share the page without them.
            messages = _pages.once(recent.messages, replayed, functools.partial(
                _without, replayed))
        session.send({"type": "recent_messages", "conversation_id": cid,
                      "messages": messages, "has_more": recent.has_more})
        floor = resumption.send(session) if resumption is not None else None
        if floor is None:
            # The page shows the events up to its position: none of them again (a node
            # catching up after another's loss would write them).
            floor = recent.position
        seen = {m["id"] for m in recent.messages}

        def in_history(text: str) -> bool:
            frame = orjson.loads(text)
            return frame.get("type") == "chat_message" and frame.get("message_id") in seen

        session.hub.release(member, cid, floor, in_history)


_pages = SharedEncodings()


def _without(replayed: frozenset[int], messages: list[dict[str, Any]]) -> orjson.Fragment:
    """A history page as JSON, the messages a resume replays left out."""
    return orjson.Fragment(orjson.dumps([m for m in messages if m["id"] not in replayed]))
