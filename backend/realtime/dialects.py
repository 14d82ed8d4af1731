"""Every door's dialect, side by side: pure functions from a canonical event to its frames.

The canonical events are built in ``backend/service/events.py``. A dialect maps one to zero or
more frames for its door; the fan-out manager encodes each event once per dialect (or per member
for the few events listed in ``personal``) and writes the same text to every member.

The table of every event in every dialect is in docs/realtime.md.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from socketio import packet as sio_packet

from backend.realtime.codec import Packet, SharedEncodings
from backend.realtime.wire import Outgoing

Frame = dict[str, Any]

# Events that only inbox doors (/conversations, /ws/conversations/) receive.
INBOX_EVENTS = frozenset({"conversation_updated", "new_customer_message"})
# Events that inbox doors receive besides: they reach an inbox through its user's own room
# only (the member added or removed learns of it; the others by ``conversation_updated``).
INBOX_MEMBER_EVENTS = frozenset({"member_added", "member_removed"})


# Presence the seeds of ``/ws/mobile/chat/`` (000) and ``/api/v1/chat/ws/`` (003) do not have:
# their joins and leaves say it, and a frame more between them and the next message would
# break a client reading the seed's frames in turn. (``user_status`` is seed 002's.)
SEED_PRESENCE_ONLY = frozenset({"user_status"})


def inbox_only(name: str, payload: dict[str, Any]) -> bool:
    """Whether the event is for inbox doors only. ``conversation_updated`` has two forms: the
    inbox's (per-viewer unread counts, no position) and the desk's logged one for the
    conversation's members (a position, CONTRACT section 10), which every door delivers."""
    return name in INBOX_EVENTS and not (
        name == "conversation_updated" and "position" in payload)


class Viewer(Protocol):
    """What a dialect reads of the member it encodes a personal event for (``Member``)."""

    @property
    def viewer_keys(self) -> tuple[str, ...]: ...


def personal_conversation(payload: dict[str, Any], member: Viewer) -> dict[str, Any]:
    """The conversation of a ``conversation_updated`` with the member's own unread count."""
    counts: dict[str, int] = payload.get("unread_counts", {})
    unread = next((counts[k] for k in member.viewer_keys if k in counts), 0)
    return {**payload["conversation"], "unread_count": unread}


def _position(payload: dict[str, Any]) -> dict[str, Any]:
    """A logged event's ``position`` (CONTRACT §9), for frames built field by field."""
    position = payload.get("position")
    return {} if position is None else {"position": position}


def presence_name(name: str, payload: dict[str, Any]) -> str:
    """Seed 000 names a device's presence ``mobile_user_joined``/``mobile_user_left``."""
    if name in ("user_joined", "user_left") and payload.get("device_id") and not payload.get(
        "user_id"
    ):
        return f"mobile_{name}"
    return name


# -- Socket.IO namespaces -------------------------------------------------------------------


class Dialect:
    """Maps canonical events to the frames of one door and encodes them to text."""

    name = "base"
    personal: frozenset[str] = frozenset()
    #: Prepended to each frame's text on the wire.
    wire_prefix = ""

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        raise NotImplementedError

    def encode(self, name: str, payload: dict[str, Any], member: Viewer) -> list[str]:
        raise NotImplementedError

    def outgoing(self, texts: list[str]) -> Outgoing | None:
        """Encoded frames, ready for members of this dialect (None when there are none)."""
        return Outgoing(texts, self.wire_prefix) if texts else None


#: Sent messages' JSON, encoded once for the Socket.IO frames and the ack that carry each
#: (the sender's ack and the others' ``chat_message`` hold the same message: about 25,000
#: instructions an encoding).
MESSAGES = SharedEncodings()


def with_shared_message(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its ``message`` dict as JSON encoded once for every packet carrying
    that very dict (``MESSAGES``); the dict itself is not changed."""
    message = data.get("message")
    if type(message) is not dict:
        return data
    return {**data, "message": MESSAGES.fragment(message)}


class SocketIODialect(Dialect):
    """Frames are ``(event, data)``, encoded as socket.io EVENT packets of ``namespace``."""

    wire_prefix = "4"  # an Engine.IO MESSAGE packet carries each Socket.IO packet

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.name = f"sio{namespace}"

    def encode(self, name: str, payload: dict[str, Any], member: Viewer) -> list[str]:
        out = []
        for event, data in self.frames(name, payload, member):
            if event == "chat_message":
                data = with_shared_message(data)
            out.append(Packet.encoded(sio_packet.EVENT, [event, data], self.namespace))
        return out


class ChatNamespaceDialect(SocketIODialect):
    """``/chat``: the canonical events as they are."""

    def __init__(self) -> None:
        super().__init__("/chat")

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if inbox_only(name, payload):
            return []
        return [(name, payload)]


class MobileNamespaceDialect(SocketIODialect):
    """``/mobile``: seed 000's vocabulary."""

    def __init__(self) -> None:
        super().__init__("/mobile")

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if inbox_only(name, payload):
            return []
        return [(presence_name(name, payload), payload)]


class ConversationsNamespaceDialect(SocketIODialect):
    """``/conversations``: inbox events only, with the viewer's unread count."""

    personal = frozenset({"conversation_updated"})

    def __init__(self) -> None:
        super().__init__("/conversations")

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if name == "conversation_updated":
            conversation = personal_conversation(payload, member)
            return [(name, {"conversation_id": conversation["id"],
                            "conversation": conversation})]
        if name == "new_customer_message" or name in INBOX_MEMBER_EVENTS:
            return [(name, payload)]
        return []


# -- Raw WebSocket routes -------------------------------------------------------------------


class RawDialect(Dialect):
    """Frames are JSON objects sent as text."""

    def encode(self, name: str, payload: dict[str, Any], member: Viewer) -> list[str]:
        return [orjson.dumps(frame).decode() for frame in self.frames(name, payload, member)]

    def error(self, message: str, code: str = "error") -> Frame:
        """An error frame in this dialect's shape; the connection stays open."""
        return {"type": "error", "message": message, "error": message, "code": code}


class WsChatDialect(RawDialect):
    """``/ws/chat/{id}/``: the union of seeds 001, 002 and 004 (CONTRACT section 5)."""

    name = "ws-chat"

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if inbox_only(name, payload):
            return []
        if name == "chat_message":
            message = payload["message"]
            return [{
                "type": "chat_message",
                "conversation_id": payload["conversation_id"],
                "message": message,
                "message_id": message["id"],
                "sender_id": message["sender_id"],
                "sender_name": message["sender_name"],
                "sender_avatar": message["sender_avatar"],
                "content": message["content"],
                "created_at": message["created_at"],
                **_position(payload),
            }]
        if name == "read_receipt":
            common = {"conversation_id": payload["conversation_id"],
                      "user_id": payload["user_id"], "device_id": payload["device_id"],
                      **_position(payload)}
            read: list[Frame] = [{"type": "messages_read", **common,
                                  "message_ids": payload["message_ids"],
                                  "read_at": payload["timestamp"]}]
            read += [{"type": "read_receipt", **common, "message_id": message_id,
                      "timestamp": payload["timestamp"]} for message_id in payload["message_ids"]]
            return read
        return [{"type": name, **payload}]


class WsMobileDialect(RawDialect):
    """``/ws/mobile/chat/{id}/``: seed 000."""

    name = "ws-mobile"

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if inbox_only(name, payload) or name in SEED_PRESENCE_ONLY:
            return []
        return [{"type": presence_name(name, payload), **payload}]


class WsConversationsDialect(RawDialect):
    """``/ws/conversations/``: seed 001's inbox."""

    name = "ws-conversations"
    personal = frozenset({"conversation_updated"})

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if name == "conversation_updated":
            conversation = personal_conversation(payload, member)
            return [{"type": name, "conversation_id": conversation["id"],
                     "conversation": conversation}]
        if name == "new_customer_message" or name in INBOX_MEMBER_EVENTS:
            return [{"type": name, **payload}]
        return []


def _file_fields(attached: dict[str, Any]) -> dict[str, Any]:
    """Seed 003's names of a file message's attachment."""
    return {"file_url": attached.get("url"), "file_name": attached.get("name"),
            "file_size": attached.get("size"), "file_type": attached.get("type")}


class WsSessionDialect(RawDialect):
    """``/api/v1/chat/ws/{session_id}``: seed 003's ``message_type`` frames with ``metadata``."""

    name = "ws-session"

    def frames(self, name: str, payload: dict[str, Any], member: Viewer) -> list[Any]:
        if inbox_only(name, payload) or name in SEED_PRESENCE_ONLY:
            return []
        session = payload["conversation_id"]
        if name == "chat_message":
            message = payload["message"]
            attached = message["file"]
            return [{
                "message_type": "message",
                "chat_session_id": session,
                "user_id": message["sender_id"],
                "content": message["content"],
                "timestamp": message["created_at"],
                "metadata": {
                    **message["metadata"],
                    "message_id": message["id"],
                    "reply_to_id": message["reply_to_id"],
                    "mentions": message["mentions"],
                    "kind": message["message_type"],
                    "file": message["file"],
                    "sender_type": message["sender_type"],
                    "sender_name": message["sender_name"],
                    "client_msg_id": message["client_msg_id"],
                },
                "message": message,
                **(_file_fields(attached) if attached else {}),
                **_position(payload),
            }]
        rest = {k: v for k, v in payload.items()
                if k not in ("conversation_id", "user_id", "timestamp", "position")}
        if name in ("user_joined", "user_left"):
            rest = {"total_users": payload.get("total_users"), "device_id": payload.get(
                "device_id")}
        return [{
            "message_type": name,
            "chat_session_id": session,
            # Who did it, as a message from them names its sender: a device by its id.
            "user_id": payload.get("user_id") or payload.get("device_id"),
            "timestamp": payload.get("timestamp"),
            "metadata": rest,
            **_position(payload),
        }]

    def error(self, message: str, code: str = "error") -> Frame:
        """Seed 003 reads ``metadata``; ``code`` is also where every other raw route has it."""
        return {"message_type": "error", "type": "error", "content": message,
                "message": message, "error": message, "code": code, "metadata": {"code": code}}


CHAT = ChatNamespaceDialect()
MOBILE = MobileNamespaceDialect()
CONVERSATIONS = ConversationsNamespaceDialect()
WS_CHAT = WsChatDialect()
WS_MOBILE = WsMobileDialect()
WS_CONVERSATIONS = WsConversationsDialect()
WS_SESSION = WsSessionDialect()
