"""A node's own presence: the conversations told an actor is online, taken back once when
they go offline, and what a cluster's resync writes of them."""

from __future__ import annotations

from backend.realtime.presence import LocalPresence


async def test_announced_conversations_are_taken_once_sorted_and_resynced() -> None:
    presence = LocalPresence()
    await presence.announce_online("user:1", 7)
    await presence.announce_online("user:1", 7)  # told once
    await presence.announce_online("user:2", 9)
    await presence.announce_online("user:2", 3)
    await presence.announce_online("user:2", 9)
    await presence.announce_online("user:2", 5)
    assert presence.announcements() == {"user:1": [7], "user:2": [3, 5, 9]}
    assert await presence.take_announced("user:1") == [7]
    assert await presence.take_announced("user:1") == []
    assert await presence.take_announced("user:2") == [3, 5, 9]
    assert await presence.take_announced("mobile:x") == []
    assert presence.announcements() == {}
