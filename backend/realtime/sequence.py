"""Each conversation room's last delivered position on this node: live events in position
order and once, whatever reaches the node twice, late or never (CONTRACT §9).

Every logged event carries its position. For each conversation room with members here, the
node keeps the last position it delivered there:

- an event at or below it was delivered already (a replay overtook it): dropped;
- the next one is delivered;
- one further on means something is missing (lost by Redis, or still on its way from another
  node): it waits, and the missing range is read from the log and delivered first. Positions
  commit in order, so everything below a position that reached us is in the log.

A member may be ahead of its room here: a resume's answer sent it the events up to a
position the room has not reached on this node (another node's publishes were lost, and
the log is being read). ``caught_up`` records that; the room then writes those events to the
others only (``passed``), so the member gets each once.

An event read from the log to fill a gap is delivered as it arrived live when it did (kept
waiting past the gap): with its origin, whose socket is not echoed.

When the node's subscription was lost (``recover``), or another node says its publishes were
lost (``advanced``), every room is caught up from its last position, a few rooms at a time and
a page at a time; a catch-up that fails (the database away) is tried again with a capped
backoff until it succeeds or the room is left. A room's starting point is the log's position
read before its first member joined (``occupied``): what came before, each member reads for
itself after joining (history or ``since``), so per room the position is the node's, not the
member's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("confab.fanout")

#: Rooms read from the log at once (a recovery catches every room up).
REPLAY_CONCURRENCY = 8
#: The first and the longest wait before a failed catch-up is tried again.
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0

#: A delivery: event name and its envelope.
Delivery = tuple[str, dict[str, Any]]
#: Members to leave out of one write: none.
NO_MEMBERS: frozenset[str] = frozenset()


class EventLogReader(Protocol):
    """What the node reads of the log (the app hands it the chat service's)."""

    async def log_position(self, conversation_id: int) -> int:
        """The conversation's last position."""
        ...

    async def replay_envelopes(self, conversation_id: int,
                               after: int) -> tuple[list[Delivery], int | None]:
        """One page of the logged events after ``after``, in order, as fan-out envelopes, and
        the position the next page starts after (None: this was the last page)."""
        ...


class ReplayStats(Protocol):
    """Where replays are counted (backend/observability/metrics.py)."""

    def replayed(self, events: int, seconds: float) -> None: ...

    def gap(self) -> None: ...


@dataclass(slots=True)
class _Room:
    conversation_id: int
    #: The last position delivered here; None until the starting point is known.
    last: int | None = None
    #: Events past a gap, by position, waiting for the range before them.
    waiting: dict[int, Delivery] = field(default_factory=dict)
    #: A catch-up from the log is running.
    busy: bool = False
    #: A catch-up was asked while one ran: run again after it.
    again: bool = False
    #: Members sent this room's events up to a position past ``last`` (member id → it).
    ahead: dict[str, int] = field(default_factory=dict)


class RoomPositions:
    """The rooms' positions on this node; ``write`` delivers to a room's members."""

    def __init__(self, reader: EventLogReader,
                 write: Callable[[str, dict[str, Any], frozenset[str]], None],
                 stats: ReplayStats | None = None) -> None:
        """``write(name, envelope, passed)`` delivers to the room's members but ``passed``."""
        self.reader = reader
        self.write = write
        self.stats = stats
        self.rooms: dict[str, _Room] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reads = asyncio.Semaphore(REPLAY_CONCURRENCY)

    # -- members come and go ----------------------------------------------------------------

    def occupied(self, room: str, start: int | None = None) -> None:
        """``room`` has its first member here: start following it from ``start``, the log's
        position read before the member joined (else from the position read now)."""
        if room in self.rooms or not room.startswith("conversation:"):
            return
        state = self.rooms[room] = _Room(int(room.removeprefix("conversation:")))
        if start is not None:
            state.last = start
        else:
            self._spawn(self._start(room, state))

    def vacated(self, room: str) -> None:
        """``room`` has no member here any more: stop following it."""
        self.rooms.pop(room, None)

    async def _start(self, room: str, state: _Room) -> None:
        position = await self.reader.log_position(state.conversation_id)
        if self.rooms.get(room) is not state:
            return
        # Events that arrived meanwhile were delivered (state.last moved); what lies below
        # the log's position now, each member read for itself when it joined.
        state.last = position if state.last is None else max(state.last, position)
        if state.waiting:
            self._catch_up(room, state)

    def caught_up(self, room: str, member_id: str, position: int) -> None:
        """A member of ``room`` was sent its events up to ``position`` (a resume's answer):
        those this node delivers later, being behind, are not written to it."""
        state = self.rooms.get(room)
        if state is None or (state.last is not None and state.last >= position):
            return
        state.ahead[member_id] = max(position, state.ahead.get(member_id, position))

    def passed(self, room: str, position: int) -> frozenset[str]:
        """The members of ``room`` that have the event at ``position`` already (``caught_up``);
        those past whom the room now is are forgotten."""
        state = self.rooms.get(room)
        return NO_MEMBERS if state is None else _passed(state, position)

    # -- live events ------------------------------------------------------------------------

    def admit(self, name: str, envelope: dict[str, Any], position: int) -> bool:
        """Whether to deliver this live event now. False: a duplicate (dropped), or one past
        a gap (kept until the gap is filled from the log)."""
        room = envelope["rooms"][0]
        state = self.rooms.get(room)
        if state is None:
            return True  # nobody here (or not a conversation room): nothing to keep in order
        last = state.last
        if last is None or (position == last + 1 and not state.busy):
            state.last = position
            return True
        if position <= last:
            return False
        state.waiting[position] = (name, envelope)
        if not state.busy:
            if self.stats is not None:
                self.stats.gap()
            log.info("gap in %s: got %d after %d; replaying from the log", room, position, last)
        self._catch_up(room, state)
        return False

    # -- catching up ------------------------------------------------------------------------

    def recover(self) -> None:
        """This node's subscription was lost, or another node died: catch every room up
        from its last position."""
        for room, state in list(self.rooms.items()):
            if state.last is not None:
                self._catch_up(room, state)

    def advanced(self, positions: dict[int, int]) -> None:
        """Another node's publishes were lost: catch up the rooms behind ``positions``
        (conversation id → position)."""
        for room, state in list(self.rooms.items()):
            top = positions.get(state.conversation_id)
            if top is not None and state.last is not None and state.last < top:
                self._catch_up(room, state)

    def _catch_up(self, room: str, state: _Room) -> None:
        if state.busy:
            state.again = True
            return
        state.busy = True
        self._spawn(self._replay(room, state))

    async def _replay(self, room: str, state: _Room) -> None:
        retry = RETRY_FIRST_SECONDS
        try:
            while self.rooms.get(room) is state:
                try:
                    more = await self._replay_page(room, state)
                except Exception:
                    if self.rooms.get(room) is not state:
                        return
                    # The events waiting (or the ones a recovery owes) would otherwise stay
                    # undelivered until the room's next event.
                    log.warning("replay of %s failed; retrying in %.1f s", room, retry,
                                exc_info=True)
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, RETRY_MAX_SECONDS)
                    continue
                retry = RETRY_FIRST_SECONDS
                if not more and not state.waiting and not state.again:
                    return
        finally:
            state.busy = False

    async def _replay_page(self, room: str, state: _Room) -> bool:
        """Read one page after the room's last position and deliver it (then what waited and
        now follows); whether another page follows."""
        state.again = False
        started = time.perf_counter()
        async with self._reads:
            assert state.last is not None
            replayed, next_after = await self.reader.replay_envelopes(state.conversation_id,
                                                                      state.last)
        if self.rooms.get(room) is not state or state.last is None:
            return False
        count = 0
        for name, envelope in replayed:
            position = envelope["position"]
            if position > state.last:
                # As it came live, if it did (its origin's socket is not echoed).
                name, envelope = state.waiting.pop(position, (name, envelope))
                state.last = position
                self.write(name, envelope, _passed(state, position))
                count += 1
        if next_after is not None:
            # Rows at the page's end that were not replayed (their message is gone).
            state.last = max(state.last, next_after)
        # What waited and now follows (it committed after what was read).
        while (nxt := state.waiting.pop(state.last + 1, None)) is not None:
            state.last += 1
            self.write(*nxt, _passed(state, state.last))
        for position in [p for p in state.waiting if p <= state.last]:
            del state.waiting[position]
        if count and self.stats is not None:
            self.stats.replayed(count, time.perf_counter() - started)
        if count:
            log.info("replayed %d event(s) in %s up to %d", count, room, state.last)
        return next_after is not None

    def _spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _passed(state: _Room, position: int) -> frozenset[str]:
    """``RoomPositions.passed`` of a room's state."""
    ahead = state.ahead
    if not ahead:
        return NO_MEMBERS
    passed = frozenset(member for member, top in ahead.items() if top >= position)
    for member in [member for member, top in ahead.items() if top <= position]:
        del ahead[member]
    return passed
