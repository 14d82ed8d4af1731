"""``/ws/mobile/chat/{conversation_id}/?device_id=``: seed 000.

Inbound table (frame ``type`` → service call):

=================== =================================================================
``chat_message``     ``send_message`` (content, message_type, media_url, is_urgent,
                     metadata, client_msg_id); echoed to the sender by the room
``message_status``   ``set_message_status`` (``delivered`` / ``read``)
``typing_indicator`` ``typing``
``read_receipt``     ``mark_read(message_ids)`` (or one ``message_id``)
=================== =================================================================

Close codes: 4001 missing ``device_id``, 4002 invalid or inactive, 4003 conversation not
found, 4004 not this device's conversation (or a refused browser origin).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from backend.auth.accounts import device_actor
from backend.auth.sessions import Sessions
from backend.doors.connections import credential
from backend.raw.adapter import (
    Door,
    Handler,
    Session,
    replay_since,
    send_chat_message,
)
from backend.raw.ws_chat import message_status, read_receipt, typing
from backend.realtime.dialects import WS_MOBILE
from backend.service.actors import Actor
from backend.service.clock import iso_now
from backend.service.grants import Grants
from backend.settings import Settings


def chat_message(session: Session, frame: dict[str, Any]) -> Coroutine[Any, Any, None]:
    # The frame as it is: a draft ignores keys it does not name (``type`` among them). The
    # send's coroutine itself, not one awaiting it (every message passes here).
    return send_chat_message(session, frame)


class WsMobileDoor(Door):
    route = "/ws/mobile/chat/"
    dialect = WS_MOBILE
    handlers: dict[str, Handler] = {
        "chat_message": chat_message,
        "message_status": message_status,
        "typing_indicator": typing,
        "read_receipt": read_receipt,
    }

    async def authenticate(self, credentials: dict[str, Any], settings: Settings,
                           sessions: Sessions, grants: Grants) -> Actor:
        return await device_actor(credential(credentials, "device_id"))

    async def welcome(self, session: Session) -> None:
        """``connection_established`` once the socket is in the room: the route sends no
        history, so what the client sends or hears of after that frame must reach it live.
        Sent before the join, a message committed and delivered on this node while the
        join still read where the room starts (the log's position, for the conversation's
        first member here) was lost to the socket. Live frames wait behind it (the hold)."""
        cid = session.conversation_id
        assert cid is not None
        session.member.hold()
        await session.hub.join_conversation(session.member, cid)
        session.send({"type": "connection_established", "conversation_id": cid,
                      "device_id": session.actor.device_id, "timestamp": iso_now()})
        session.hub.release(session.member, cid, await replay_since(session))
