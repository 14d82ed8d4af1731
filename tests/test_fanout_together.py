"""Events of one moment delivered together (``FanoutManager.deliver_together``): a joiner's
``user_joined`` and ``user_status`` reach each member of the room in one write, in order."""

from __future__ import annotations

from typing import Any

from backend.realtime.dialects import WS_CHAT
from backend.realtime.fanout import FanoutManager
from backend.realtime.members import Member
from backend.realtime.wire import Outgoing
from backend.service.actors import SYSTEM

ROOM = "conversation:1"


class Recorded(Member):
    """A member that keeps each write's texts (one list per write)."""

    __slots__ = ("writes",)

    def __init__(self, member_id: str) -> None:
        super().__init__(member_id, SYSTEM, WS_CHAT, "/ws/chat/")
        self.writes: list[list[str]] = []

    def write(self, out: Outgoing) -> None:
        if self._held is not None:
            self._held.append(out)
            return
        self.writes.append(list(out.texts))


class Sender(Recorded):
    """A member that is not echoed what it sent (as a Socket.IO socket)."""

    echo_own = False


def envelope(payload: dict[str, Any], origin: str | None = None,
             position: int | None = None) -> dict[str, Any]:
    return {"payload": {"conversation_id": 1, **payload}, "rooms": [ROOM], "skip": [],
            "origin": origin, "position": position, "published_at": None}


def room(*members: Member) -> FanoutManager:
    manager = FanoutManager()
    for member in members:
        manager.add_member(member)
        manager.join(member, ROOM)
    return manager


def kinds(write: list[str]) -> list[str]:
    return [text.split('"type":"', 1)[1].split('"', 1)[0] for text in write]


def test_each_member_gets_the_events_in_one_write_in_order() -> None:
    first, second = Recorded("raw:a"), Recorded("raw:b")
    manager = room(first, second)
    manager.deliver_together([
        ("user_joined", envelope({"user_id": 7, "total_users": 2})),
        ("user_status", envelope({"user_id": 7, "status": "online"})),
    ])
    for member in (first, second):
        assert len(member.writes) == 1
        assert kinds(member.writes[0]) == ["user_joined", "user_status"]


def test_a_member_one_event_skips_gets_the_other_alone() -> None:
    sender, other = Sender("raw:s"), Recorded("raw:o")
    manager = room(sender, other)
    manager.deliver_together([
        ("user_joined", envelope({"user_id": 7, "total_users": 2})),
        ("user_status", envelope({"user_id": 7, "status": "online"}, origin="raw:s")),
    ])
    assert [kinds(write) for write in sender.writes] == [["user_joined"]]
    assert [kinds(write) for write in other.writes] == [["user_joined", "user_status"]]


def test_held_members_release_the_joined_frames_in_order() -> None:
    held, free = Recorded("raw:h"), Recorded("raw:f")
    manager = room(held, free)
    held.hold()
    manager.deliver_together([
        ("user_joined", envelope({"user_id": 7, "total_users": 2})),
        ("user_status", envelope({"user_id": 7, "status": "online"})),
    ])
    assert held.writes == []
    held.release(1, None, lambda text: '"user_status"' in text)
    assert [kinds(write) for write in held.writes] == [["user_joined"]]
    assert [kinds(write) for write in free.writes] == [["user_joined", "user_status"]]


def test_positioned_events_are_written_one_by_one() -> None:
    member = Recorded("raw:a")
    manager = room(member)
    manager.deliver_together([
        ("user_joined", envelope({"user_id": 7, "total_users": 1})),
        ("message_deleted", envelope({"message_id": 3}, position=1)),
    ])
    assert [kinds(write) for write in member.writes] == [["user_joined"],
                                                         ["message_deleted"]]
