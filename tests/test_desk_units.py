"""Unit tests of the support desk's pure parts: the two forms of ``conversation_updated`` in
every dialect, the checks of what clients send, and the queue's cursor."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from backend.realtime import dialects
from backend.realtime.members import Member
from backend.service import desk, events
from backend.service.actors import Actor
from backend.service.errors import ChatError
from models import Conversation, ConversationStatus, Role, SenderType, User, UserFacts

CONVERSATION = {"id": 3, "kind": "support", "status": "support_active",
                "assigned_agent_id": 8, "unread_count": 2}
MEMBER_DOORS = [dialects.CHAT, dialects.MOBILE, dialects.WS_CHAT, dialects.WS_MOBILE,
                dialects.WS_SESSION]


def _member(dialect: dialects.Dialect) -> Member:
    user = UserFacts(5, "a@example.com", "a", "", "", "", Role.USER)
    return Member("m1", Actor(SenderType.USER, user=user), dialect, "test")


def _logged() -> events.Event:
    agent = User(id=8, email="b@example.com", username="b", role=Role.AGENT)
    changed = events.conversation_changed(
        CONVERSATION, {"assigned_agent_id": {"from": None, "to": 8}}, Actor.of_user(agent))
    return changed.at(12)


def test_the_logged_form_leaves_out_the_unread_count_and_carries_its_position() -> None:
    event = _logged()
    assert event.name == "conversation_updated" and event.name in events.LOGGED
    assert event.rooms == ("conversation:3",)
    assert event.payload["position"] == 12 and event.payload["user_id"] == 8
    assert "unread_count" not in event.payload["conversation"]
    assert event.payload["changes"] == {"assigned_agent_id": {"from": None, "to": 8}}


@pytest.mark.parametrize("dialect", MEMBER_DOORS, ids=lambda d: d.name)
def test_member_doors_deliver_the_logged_form_and_not_the_inbox_form(
        dialect: dialects.Dialect) -> None:
    event = _logged()
    member = _member(dialect)
    texts = dialect.encode(event.name, event.payload, member)
    assert len(texts) == 1 and '"position":12' in texts[0] and "conversation_updated" in texts[0]
    inbox_form = events.conversation_updated(CONVERSATION, {"user:5": 1}, ("user:5",))
    assert dialect.encode(inbox_form.name, inbox_form.payload, member) == []


def test_seed_003_puts_the_change_in_metadata() -> None:
    event = _logged()
    frame, = (json.loads(t) for t in dialects.WS_SESSION.encode(
        event.name, event.payload, _member(dialects.WS_SESSION)))
    assert frame["message_type"] == "conversation_updated" and frame["position"] == 12
    assert frame["chat_session_id"] == 3 and frame["user_id"] == 8
    assert frame["metadata"]["changes"]["assigned_agent_id"]["to"] == 8
    assert frame["metadata"]["conversation"]["status"] == "support_active"


def test_inbox_only() -> None:
    assert dialects.inbox_only("new_customer_message", {"position": 3})
    assert dialects.inbox_only("conversation_updated", {"unread_counts": {}})
    assert not dialects.inbox_only("conversation_updated", {"position": 3})
    assert not dialects.inbox_only("chat_message", {})


@pytest.mark.parametrize("value", ["support_active", "marketing_active", "active", "closed"])
def test_statuses(value: str) -> None:
    assert desk.status_of(value) == ConversationStatus(value)
    assert len(value) <= 16  # the column's max_length


@pytest.mark.parametrize("value", ["open", "", None, 1, ["active"]])
def test_bad_statuses(value: Any) -> None:
    with pytest.raises(ChatError) as refused:
        desk.status_of(value)
    assert refused.value.status == 422 and "support_active" in refused.value.message


@pytest.mark.parametrize("value", [-1, 11, True, "3", 2.0, None])
def test_bad_priorities(value: Any) -> None:
    with pytest.raises(ChatError) as refused:
        desk.checked_priority(value)
    assert refused.value.status == 422


@pytest.mark.parametrize("value", ["", "   ", "x" * 256, "a\x00b", 5])
def test_bad_titles(value: Any) -> None:
    with pytest.raises(ChatError) as refused:
        desk.checked_title(value)
    assert refused.value.status == 422


def test_titles_and_priorities() -> None:
    assert desk.checked_title("  Card blocked ") == "Card blocked"
    assert desk.checked_title("x" * 255) == "x" * 255
    assert [desk.checked_priority(p) for p in (0, 10)] == [0, 10]


def test_queue_cursor_round_trip_and_garbage() -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    cursor = desk._encode_queue_cursor(Conversation(id=41, priority=7, created_at=stamp))
    assert desk._decode_queue_cursor(cursor) == (7, stamp, 41)
    for garbage in ("%%%", "eA", "MXwyfDM", "OTl8MjAyNi0wMS0wMnwx"):
        with pytest.raises(ChatError):
            desk._decode_queue_cursor(garbage)
