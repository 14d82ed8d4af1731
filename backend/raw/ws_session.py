"""``/api/v1/chat/ws/{session_id}?token=``: seed 003's ``message_type`` dialect.

Inbound table (frame ``message_type`` → service call):

=========== ==========================================================================
``text``     ``send_message`` (content, reply_to_id, mentions, metadata, client_msg_id)
``file``     ``send_message`` with ``file {url, name, size, type}`` from ``file_url``,
             ``file_name``, ``file_size``, ``file_type``; or with ``upload_id`` (an upload
             of the sender's, docs/files.md)
``image``    the same, as an image (``media_url`` = ``file_url``)
``typing``   ``typing``: ``content`` ``"true"`` / ``"false"``
=========== ==========================================================================

Every refused connection closes with 1008 (bad token, not a participant, no such session,
refused origin); a server fault closes with 1011, a node shutting down with 1001 (the refusal
table's seed 003 column, backend/doors/refusals.py).
"""

from __future__ import annotations

from typing import Any

from backend.doors.refusals import Refusal
from backend.raw.adapter import Door, Handler, Session, replay_since, send_chat_message
from backend.realtime.dialects import WS_SESSION
from backend.service.errors import invalid

_COMMON = ("content", "reply_to_id", "parent_message_id", "mentions", "metadata",
           "client_msg_id", "is_urgent", "upload_id")


def _common(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: frame[k] for k in _COMMON if k in frame and frame[k] is not None}


async def text(session: Session, frame: dict[str, Any]) -> None:
    await send_chat_message(session, {**_common(frame), "message_type": "text"})


async def file(session: Session, frame: dict[str, Any]) -> None:
    data = _common(frame)
    if "upload_id" in data:  # a file uploaded here: the message shows it with signed links
        await send_chat_message(session, {**data, "message_type": frame["message_type"]})
        return
    url = frame.get("file_url")
    attachment = {"url": url, "name": frame.get("file_name") or "",
                  "size": frame.get("file_size") or 0, "type": frame.get("file_type") or ""}
    kind = frame["message_type"]
    data.update(message_type=kind, file=attachment)
    if kind == "image" and isinstance(url, str):
        data["media_url"] = url
    await send_chat_message(session, data)


async def typing(session: Session, frame: dict[str, Any]) -> None:
    assert session.conversation_id is not None
    value = frame.get("content", frame.get("is_typing"))
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise invalid("typing content must be 'true' or 'false'")
    await session.chat.typing(session.actor, session.conversation_id, value)


class WsSessionDoor(Door):
    route = "/api/v1/chat/ws/"
    dialect = WS_SESSION
    type_key = "message_type"
    path_param = "session_id"
    handlers: dict[str, Handler] = {
        "text": text,
        "file": file,
        "image": file,
        "typing": typing,
    }

    def close_code(self, refusal: Refusal) -> int:
        return refusal.seed_003

    async def welcome(self, session: Session) -> None:
        assert session.conversation_id is not None
        session.member.hold()
        await session.hub.join_conversation(session.member, session.conversation_id)
        session.hub.release(session.member, session.conversation_id,
                            await replay_since(session))
