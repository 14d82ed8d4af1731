"""The dialects are pure functions from a canonical event to each door's frames."""

import json

from backend.realtime import dialects
from backend.realtime.members import Member
from backend.service.actors import Actor
from models import MobileSession, Role, SenderType, UserFacts

MESSAGE = {
    "id": 9, "conversation_id": 3, "sender_id": 5, "sender_name": "Ann Lee", "sender_avatar": "",
    "content": "hello", "created_at": "2026-01-01T00:00:00Z", "metadata": {"k": 1},
    "reply_to_id": None, "mentions": [], "message_type": "text", "file": None,
    "sender_type": "user", "client_msg_id": None,
}


def _member(dialect: dialects.Dialect, *, role: Role = Role.USER, user_id: int = 5) -> Member:
    user = UserFacts(user_id, "a@example.com", "a", "", "", "", role)
    return Member("m1", Actor(SenderType.USER, user=user), dialect, "test")


def _frames(dialect: dialects.RawDialect, name: str, payload: dict, member: Member) -> list:
    return [json.loads(text) for text in dialect.encode(name, payload, member)]


def test_ws_chat_message_is_the_union_of_seeds_001_002_and_004() -> None:
    frame, = _frames(dialects.WS_CHAT, "chat_message",
                     {"conversation_id": 3, "message": MESSAGE}, _member(dialects.WS_CHAT))
    assert frame["type"] == "chat_message" and frame["message"]["id"] == 9
    assert (frame["message_id"], frame["sender_id"], frame["sender_name"], frame["content"]) == (
        9, 5, "Ann Lee", "hello")


def test_ws_chat_read_is_told_as_messages_read_and_one_receipt_per_message() -> None:
    payload = {"conversation_id": 3, "user_id": 5, "device_id": None, "message_ids": [1, 2],
               "timestamp": "2026-01-01T00:00:00Z"}
    frames = _frames(dialects.WS_CHAT, "read_receipt", payload, _member(dialects.WS_CHAT))
    assert [f["type"] for f in frames] == ["messages_read", "read_receipt", "read_receipt"]
    assert frames[0]["message_ids"] == [1, 2] and frames[0]["read_at"] == payload["timestamp"]
    assert [f["message_id"] for f in frames[1:]] == [1, 2]


def test_seed_003_frames_use_message_type_and_metadata() -> None:
    member = _member(dialects.WS_SESSION)
    frame, = _frames(dialects.WS_SESSION, "chat_message",
                     {"conversation_id": 3, "message": MESSAGE}, member)
    assert frame["message_type"] == "message" and frame["chat_session_id"] == 3
    assert frame["user_id"] == 5 and frame["metadata"]["message_id"] == 9
    joined, = _frames(dialects.WS_SESSION, "user_joined",
                      {"conversation_id": 3, "user_id": 5, "device_id": None, "total_users": 2,
                       "timestamp": "t"}, member)
    assert joined["message_type"] == "user_joined" and joined["metadata"]["total_users"] == 2
    # A device is named as its messages name their sender: by its id.
    typing, = _frames(dialects.WS_SESSION, "typing_indicator",
                      {"conversation_id": 3, "user_id": None, "device_id": "dev-123456",
                       "is_typing": True, "timestamp": "t"}, member)
    assert typing["user_id"] == "dev-123456" and typing["metadata"]["is_typing"] is True


def test_device_presence_is_named_as_seed_000_names_it() -> None:
    device = Member("m2", Actor(SenderType.MOBILE, device=MobileSession(device_id="dev-123456")),
                    dialects.WS_MOBILE, "test")
    payload = {"conversation_id": 3, "user_id": None, "device_id": "dev-123456",
               "total_users": 1, "timestamp": "t"}
    frame, = _frames(dialects.WS_MOBILE, "user_joined", payload, device)
    assert frame["type"] == "mobile_user_joined" and frame["device_id"] == "dev-123456"
    user_payload = {**payload, "user_id": 5, "device_id": None}
    frame, = _frames(dialects.WS_MOBILE, "user_joined", user_payload, device)
    assert frame["type"] == "user_joined"


def test_seeds_000_and_003_get_no_user_status() -> None:
    """Their seeds tell presence by joins and leaves only; seed 002's route keeps it."""
    status = {"conversation_id": 3, "user_id": 5, "status": "online", "timestamp": "t"}
    for dialect in (dialects.WS_MOBILE, dialects.WS_SESSION):
        assert _frames(dialect, "user_status", status, _member(dialect)) == []
    frame, = _frames(dialects.WS_CHAT, "user_status", status, _member(dialects.WS_CHAT))
    assert frame["type"] == "user_status" and frame["status"] == "online"


def test_inbox_updates_carry_each_viewers_own_unread_count() -> None:
    payload = {"conversation_id": 3, "conversation": {"id": 3, "unread_count": 0},
               "unread_counts": {"user:5": 4, "staff": 7}}
    mine, = _frames(dialects.WS_CONVERSATIONS, "conversation_updated", payload,
                    _member(dialects.WS_CONVERSATIONS))
    assert mine["conversation"]["unread_count"] == 4
    agent, = _frames(dialects.WS_CONVERSATIONS, "conversation_updated", payload,
                     _member(dialects.WS_CONVERSATIONS, role=Role.AGENT, user_id=8))
    assert agent["conversation"]["unread_count"] == 7
    assert dialects.WS_CHAT.encode("conversation_updated", payload,
                                   _member(dialects.WS_CHAT)) == []


def test_socketio_frames_are_encoded_packets_of_their_namespace() -> None:
    member = _member(dialects.CHAT)
    packet, = dialects.CHAT.encode("chat_message", {"conversation_id": 3, "message": MESSAGE},
                                   member)
    assert packet.startswith('2/chat,["chat_message",')
    assert json.loads(packet[len("2/chat,"):])[1]["message"]["id"] == 9
    # The node's codec (orjson): compact, UTF-8 as it is.
    packet, = dialects.CHAT.encode("chat_message", {"conversation_id": 3, "text": "é"}, member)
    assert packet == '2/chat,["chat_message",{"conversation_id":3,"text":"é"}]'

