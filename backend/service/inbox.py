"""``conversation_updated``: coalesced per conversation, and sent only where someone listens.

Every change a conversation's inbox rows show (a message, a read, a close) used to publish
one update, each re-reading the conversation, its last message and every participant's
count, and emitting to every member's user room whether or not an inbox was open. Now:

- a change *touches* the conversation; ``Coalescer`` publishes at once if the conversation's
  last update is older than ``WINDOW_SECONDS``, otherwise once at the end of the window, with
  the state of that moment (a burst of messages costs one update, and the last one carries
  the latest state: the trailing edge);
- the update goes to the conversation's inbox rooms (its members' user rooms; for support
  conversations staff, the initiator and the device) that have members on the node: nobody
  listening costs no query at all. With Redis every node does this for its own sockets: the
  change reaches them in a ``service_inbox_changed`` control, one per window for all the
  conversations changed in it (``Batcher``), and each node counts and delivers only for the
  inboxes it holds (``ServiceBase._inbox_changed``);
- unread counts are computed for the addressed users only (see ``unread.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from backend.service import events
from models import Conversation, ConversationKind

#: At most one ``conversation_updated`` per conversation per window (seconds).
WINDOW_SECONDS = 0.15


def inbox_rooms(conversation: Conversation, members: frozenset[int]) -> tuple[str, ...]:
    """The rooms whose inboxes show ``conversation`` (``device`` loaded)."""
    rooms = [events.user_room(user_id) for user_id in sorted(members)]
    if conversation.kind == ConversationKind.SUPPORT:
        rooms.append(events.STAFF_ROOM)
        initiator = conversation.initiator_id
        if initiator is not None:
            rooms.append(events.user_room(initiator))
        if conversation.device is not None:
            rooms.append(events.device_room(conversation.device.device_id))
    return tuple(dict.fromkeys(rooms))


class Coalescer:
    """Runs ``job(key)`` at most once per ``window`` for each key: the first touch runs it at
    once (leading edge); touches while it runs or in the quiet window after it make one more
    run when the window ends (trailing edge), and so on while touches keep coming."""

    def __init__(self, job: Callable[[int], Awaitable[None]],
                 spawn: Callable[[Awaitable[None]], None], window: float = WINDOW_SECONDS) -> None:
        self.job = job
        self.spawn = spawn
        self.window = window
        #: Keys with a runner, and whether they were touched since their last run began.
        self._due: dict[int, bool] = {}

    def touch(self, key: int) -> None:
        if key in self._due:
            self._due[key] = True
            return
        self._due[key] = True
        self.spawn(self._run(key))

    def pending(self, key: int) -> bool:
        return key in self._due

    async def _run(self, key: int) -> None:
        try:
            while self._due.get(key):
                self._due[key] = False
                await self.job(key)
                await asyncio.sleep(self.window)  # the quiet window: touches wait for its end
        finally:
            self._due.pop(key, None)


class Batcher:
    """Runs ``job(keys)`` with every key touched, at most once per ``window`` for all keys
    together: the first touch runs it at once, touches while it runs or in the quiet window
    after it are gathered into one more run when the window ends, and so on.

    For what crosses Redis, where the count of publishes matters, not which key changed:
    one task and one publish per window, whatever the number of conversations."""

    def __init__(self, job: Callable[[list[int]], Awaitable[None]],
                 spawn: Callable[[Awaitable[None]], None], window: float = WINDOW_SECONDS) -> None:
        self.job = job
        self.spawn = spawn
        self.window = window
        #: Keys touched since the last run began, in the order first touched.
        self._touched: dict[int, None] = {}
        self._running = False

    def touch(self, key: int) -> None:
        self._touched[key] = None
        if not self._running:
            self._running = True
            self.spawn(self._run())

    async def _run(self) -> None:
        try:
            while self._touched:
                keys, self._touched = list(self._touched), {}
                await self.job(keys)
                await asyncio.sleep(self.window)  # the quiet window: touches wait for its end
        finally:
            self._running = False
