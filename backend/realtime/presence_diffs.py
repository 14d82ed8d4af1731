"""Coalesced presence for large rooms: one ``presence_diff`` per room per window.

Per-user presence events cost every member of a room one frame per join: n clients joining one
room at once cost n²/2 frames. Past ``PRESENCE_DETAIL_MAX_MEMBERS`` the hub hands joins and
leaves to ``PresenceDiffs`` instead, which counts them per room and, once per window, publishes
one ``presence_diff`` with the counts and the room's distinct actors at that moment: each member
gets at most one presence frame per window, however many joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from backend.realtime.sink import FanoutSink
from backend.service import events

log = logging.getLogger("confab.realtime")


class PresenceDiffs:
    """Counts joins and leaves per room and publishes them once per ``window`` seconds."""

    def __init__(self, sink: FanoutSink, room_size: Callable[[str], Awaitable[int]],
                 window: float) -> None:
        self.sink = sink
        self.room_size = room_size
        self.window = window
        #: room -> [joins, leaves] since the room's last diff.
        self.pending: dict[str, list[int]] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}

    def add(self, room: str, joins: int = 0, leaves: int = 0) -> None:
        """Count a join or a leave; the room's diff goes out at the end of its window."""
        counts = self.pending.setdefault(room, [0, 0])
        counts[0] += joins
        counts[1] += leaves
        if room not in self._timers:
            self._timers[room] = asyncio.create_task(self._flush_later(room))

    async def _flush_later(self, room: str) -> None:
        try:
            await asyncio.sleep(self.window)
        finally:
            # Whatever happens next, a later join starts a new window.
            self._timers.pop(room, None)
        joins, leaves = self.pending.pop(room, (0, 0))
        try:
            total = await self.room_size(room)
            conversation_id = int(room.removeprefix("conversation:"))
            await self.sink.publish(events.presence_diff(conversation_id, joins, leaves, total))
        except Exception:  # a lost diff must not end the timer task noisily; the next one counts
            log.exception("presence_diff for %s not sent", room)

    async def stop(self) -> None:
        """Drop what is pending (the node is stopping)."""
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        for timer in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        self.pending.clear()
