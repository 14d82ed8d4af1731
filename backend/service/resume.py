"""The conversation event log as the service uses it (CONTRACT §9): logged changes, resume
from a position, and the replays nodes use to recover what their subscription missed.

Every change others see is logged in the transaction that makes it (``_logged_change``) and
published after commit at its position, under the conversation's ``Sequencer``: one node
publishes a conversation's events in position order, as it does messages in id order. The
SQL lives in backend/storage/eventlog.py (and, for a send, backend/storage/sends.py).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from tortoise.transactions import in_transaction

from backend.service import events
from backend.service.actors import Actor
from backend.service.base import ServiceBase
from backend.service.clock import now
from backend.service.errors import ChatError
from backend.service.events import Event
from backend.storage import eventlog
from models import Message

#: Events per page of a replay read.
REPLAY_PAGE = 500
#: The longest page a client may ask for.
RESUME_PAGE_MAX = 1000


#: A replay read (``_missed``): the events, each as a reader gets it, whether more follow,
#: the position reached and the log's epoch.
Replay = tuple[list[Event], list[dict[str, Any]], bool, int, str]


def resync_required(position: int, epoch: str) -> ChatError:
    """A resume that cannot be served (past the retention, another epoch): the client
    reloads the conversation. Carries where the log stands now."""
    error = ChatError("resync_required",
                      "Too far behind to resume from this position; reload the conversation",
                      410)
    error.position = position  # type: ignore[attr-defined]
    error.epoch = epoch  # type: ignore[attr-defined]
    return error


class _NothingToLog(Exception):
    """A logged change found nothing to change: its transaction is rolled back, so no
    position is taken without an event."""


class LogOps(ServiceBase):
    """Mixin of ChatService: the event log."""

    async def _logged_change(self, conversation_id: int,
                             change: Callable[[], Awaitable[Event | None]], *,
                             committed: Callable[[], Awaitable[None]] | None = None,
                             ) -> Event | None:
        """Run ``change`` and log the event it returns in one transaction, then (after
        ``committed``, when given) publish that event at its position. The conversation's
        row is locked first (its counter), as a send and a read take it. None (nothing
        published) when ``change`` returns None."""
        async with self.sequencer.hold(conversation_id):
            try:
                async with in_transaction():
                    position = await eventlog.take_position(conversation_id)
                    event = await change()
                    if event is None:
                        raise _NothingToLog
                    await eventlog.write(conversation_id, position, event.name, event.payload,
                                         stamp=now(), skip=event.skip_actors)
            except _NothingToLog:
                return None
            if committed is not None:
                await committed()
            logged = event.at(position)
            await self.sink.publish(logged)
        return logged

    async def _logged_changes(self, conversation_id: int,
                              change: Callable[[], Awaitable[list[Event]]], *,
                              committed: Callable[[], Awaitable[None]] | None = None,
                              ) -> list[Event]:
        """``_logged_change`` for a change that makes several events (a batch of members
        added): the conversation's row is locked first, ``change`` runs, and its events take
        consecutive positions in the same transaction; after ``committed`` they are
        published in order. Nothing is logged (or published) when it returns none."""
        async with self.sequencer.hold(conversation_id):
            async with in_transaction():
                await eventlog.take_positions(conversation_id, 0)  # the row's lock, first
                made = await change()
                if made:
                    top = await eventlog.take_positions(conversation_id, len(made))
                    first = top - len(made) + 1
                    await eventlog.write_many(
                        conversation_id,
                        [(first + i, event.name, event.payload, event.skip_actors)
                         for i, event in enumerate(made)], stamp=now())
            if not made:
                return []
            if committed is not None:
                await committed()
            logged = [event.at(first + i) for i, event in enumerate(made)]
            for event in logged:
                await self.sink.publish(event)
        return logged

    # -- reading the log --------------------------------------------------------------------

    async def log_epoch(self) -> str:
        """The log's epoch."""
        return await eventlog.epoch()

    async def events_since(self, actor: Actor, conversation_id: int, since: int,
                           epoch: str | None, *, limit: int = RESUME_PAGE_MAX,
                           ) -> dict[str, Any]:
        """What ``actor`` missed in the conversation after position ``since`` (of ``epoch``):
        ``{events, has_more, position, epoch}``, each event its live payload with ``event``
        naming it. Raises ``resync_required`` past the retention or across an epoch."""
        await self.grants.viewable(actor, conversation_id)
        limit = max(1, min(limit, RESUME_PAGE_MAX))
        # The clients of a conversation resuming at once (a reconnect storm) mostly resume
        # from the same position: they share one read begun after each asked (shared_reads.py).
        replayed, everyone, has_more, position, current = await self.missed_reads.read(
            (conversation_id, since, epoch, limit),
            functools.partial(self._missed, conversation_id, since, epoch, limit))
        # A reader no event skips gets the list every such reader gets (the Socket.IO door
        # encodes it once for all of them); it must not be changed.
        key = actor.key
        visible = everyone if not any(key in event.skip_actors for event in replayed) else [
            item for event, item in zip(replayed, everyone, strict=True)
            if key not in event.skip_actors]
        return {"events": visible, "has_more": has_more, "position": position,
                "epoch": current}

    async def _missed(self, conversation_id: int, since: int, epoch: str | None,
                      limit: int) -> Replay:
        """``events_since``'s read, for every reader: the events after ``since``, each as a
        reader gets it, whether more follow, the position reached and the log's epoch."""
        current = await eventlog.epoch()
        bounds = await eventlog.bounds(conversation_id)
        top = bounds.position if bounds is not None else 0
        if epoch is not None and epoch != current:
            raise resync_required(top, current)
        floor = max(bounds.floor if bounds is not None else 0,
                    top - self.limits.event_log_max_events)
        if since < floor or since > top:
            raise resync_required(top, current)
        oldest = now() - timedelta(seconds=self.limits.event_log_max_age_seconds)
        # The log where the last read from this point left it: its replay holds the same
        # events (kept_replays.py), not read and rendered again for the next readers.
        key = (conversation_id, since, limit)
        kept = self.kept_replays.get(key, current, top, oldest)
        if kept is not None:
            return kept
        rows = await eventlog.read(conversation_id, since, limit + 1)
        if rows and rows[0].position != since + 1:  # trimmed meanwhile
            raise resync_required(top, current)
        if rows and rows[0].created_at < oldest:
            raise resync_required(top, current)
        has_more = len(rows) > limit
        rows = rows[:limit]
        replayed = await self._rebuild(conversation_id, rows)
        position = rows[-1].position if has_more else max(top, rows[-1].position if rows else 0)
        everyone = [{"event": event.name, **event.payload} for event in replayed]
        replay = replayed, everyone, has_more, position, current
        self.kept_replays.keep(key, current, top, rows[0].created_at if rows else None, replay)
        return replay

    async def log_position(self, conversation_id: int) -> int:
        """The conversation's last position (0 when it has none, or is gone)."""
        bounds = await eventlog.bounds(conversation_id)
        return 0 if bounds is None else bounds.position

    async def replay_page(self, conversation_id: int,
                          after: int) -> tuple[list[Event], int | None]:
        """Up to ``REPLAY_PAGE`` logged events of the conversation after ``after``, in order,
        as they were published (what a node whose subscription lost them delivers), and the
        position the next page starts after (None when this page is the last): a node
        catches a room up page by page rather than holding the whole gap."""
        rows = await eventlog.read(conversation_id, after, REPLAY_PAGE)
        next_after = rows[-1].position if len(rows) >= REPLAY_PAGE else None
        return await self._rebuild(conversation_id, rows), next_after

    async def rebuild_logged(self, conversation_id: int,
                             rows: list[eventlog.LoggedEvent]) -> list[Event]:
        """The events of log rows of one conversation, as they were published (a message
        as it is now; one deleted since is left out)."""
        return await self._rebuild(conversation_id, rows)

    async def _rebuild(self, conversation_id: int,
                       rows: list[eventlog.LoggedEvent]) -> list[Event]:
        """Events from log rows; a ``chat_message``'s payload from its message as it is
        now (later edits and deletes follow as their own events)."""
        ids = [row.message_id for row in rows if row.message_id is not None]
        messages: dict[int, dict[str, Any]] = {}
        if ids:
            found = await Message.filter(id__in=ids).select_related(
                "sender_user", "sender_device", "sender_customer")
            messages = {m["id"]: m for m in await self._render(found)}
        out = []
        for row in rows:
            if row.message_id is not None:
                message = messages.get(row.message_id)
                if message is None:
                    continue
                payload: dict[str, Any] = {"conversation_id": conversation_id,
                                           "message": message}
            else:
                payload = row.payload or {"conversation_id": conversation_id}
            rooms = events.logged_rooms(conversation_id, row.name, payload)
            out.append(Event(row.name, payload, rooms, frozenset(row.skip)).at(row.position))
        return out

    async def trim_log(self) -> int:
        """Delete what the retention no longer keeps (run now and then by every node)."""
        return await eventlog.trim(self.limits.event_log_max_events,
                                   self.limits.event_log_max_age_seconds, now())
