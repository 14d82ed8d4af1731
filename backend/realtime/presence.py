"""Who is connected where: counts per room and per actor, and who is typing.

``LocalPresence`` keeps them in this process; a cluster-wide implementation keeps the same
interface in Redis.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class LocalPresence:
    """Presence of one node, in memory."""

    def __init__(self) -> None:
        self.connections: Counter[str] = Counter()
        self.rooms: dict[str, Counter[str]] = {}
        self.typing: dict[str, set[str]] = {}

    async def connect(self, actor_key: str) -> bool:
        """Count a connection; True when it is the actor's first (they came online)."""
        self.connections[actor_key] += 1
        return self.connections[actor_key] == 1

    async def disconnect(self, actor_key: str) -> bool:
        """Uncount a connection; True when it was the actor's last (they went offline)."""
        self.connections[actor_key] -= 1
        if self.connections[actor_key] <= 0:
            del self.connections[actor_key]
            return True
        return False

    async def enter(self, room: str, actor_key: str) -> tuple[bool, int]:
        """(first connection of this actor in the room, distinct actors in the room)."""
        counts = self.rooms.setdefault(room, Counter())
        counts[actor_key] += 1
        return counts[actor_key] == 1, len(counts)

    async def exit(self, room: str, actor_key: str) -> tuple[bool, int]:
        """(last connection of this actor left the room, distinct actors remaining)."""
        counts = self.rooms.get(room)
        if counts is None or actor_key not in counts:
            return False, len(counts or ())
        counts[actor_key] -= 1
        last = counts[actor_key] <= 0
        if last:
            del counts[actor_key]
            self.typing.get(room, set()).discard(actor_key)
        if not counts:
            self.rooms.pop(room, None)
            self.typing.pop(room, None)
        return last, len(counts)

    async def room_size(self, room: str) -> int:
        return len(self.rooms.get(room, ()))

    async def is_online(self, actor_key: str) -> bool:
        return self.connections.get(actor_key, 0) > 0

    async def set_typing(self, room: str, actor_key: str, is_typing: bool) -> None:
        if is_typing and room in self.rooms:
            self.typing.setdefault(room, set()).add(actor_key)
        else:
            self.typing.get(room, set()).discard(actor_key)

    async def stats(self) -> dict[str, Any]:
        """Seed 003's ``ws-stats`` figures."""
        sessions = {
            room.removeprefix("conversation:"): {
                "user_count": len(counts),
                "typing_count": len(self.typing.get(room, ())),
                "connection_count": sum(counts.values()),
            }
            for room, counts in self.rooms.items()
            if room.startswith("conversation:")
        }
        users = sum(s["user_count"] for s in sessions.values())
        return {
            "total_sessions": len(sessions),
            "total_connections": sum(self.connections.values()),
            "average_users_per_session": round(users / len(sessions), 2) if sessions else 0,
            "sessions": sessions,
        }
