"""State every part of the chat service shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from backend.service.faults import is_database_fault
from backend.service.grants import LOCAL_TTL_SECONDS, TTL_SECONDS, Grants
from backend.service.inbox import Batcher, Coalescer
from backend.service.kept_replays import KeptReplays
from backend.service.latest_pages import LatestPages, Page
from backend.service.limits import TypingThrottle
from backend.service.ordering import Sequencer
from backend.service.ports import ControlBus, EventSink, Occupancy
from backend.service.shared_reads import SharedReads
from backend.service.uploads import Uploads
from backend.settings import Limits

if TYPE_CHECKING:
    from backend.service.actors import Actor
    from backend.service.events import Event
    from models import Conversation, Message

#: The fan-out control every node runs when a grant it may hold went stale.
INVALIDATE = "service_invalidate"
#: The fan-out control every node runs when what inboxes show of a conversation changed.
INBOX_CHANGED = "service_inbox_changed"


class ServiceBase:
    """Holds the event sink, the limits, the send path's caches and the background
    publishes still running."""

    def __init__(self, sink: EventSink, limits: Limits) -> None:
        self.sink = sink
        self.limits = limits
        self.typing_throttle = TypingThrottle(limits.typing_interval_seconds)
        self.background: set[asyncio.Future[Any]] = set()
        self.log = logging.getLogger("confab.service")
        self.grants = Grants()
        #: History pages read once for the readers who ask together (``history(shared=)``).
        self.page_reads: SharedReads[tuple[list[dict[str, Any]], bool]] = SharedReads()
        #: The latest pages, read once for those who ask together and kept between them
        #: while this node hears of every change (``follow_pages``).
        self.latest_reads: SharedReads[Page] = SharedReads()
        self.latest_pages = LatestPages(keep_seconds=limits.latest_page_keep_seconds)
        #: What resuming readers missed, read once for those who ask together
        #: (``events_since``).
        self.missed_reads: SharedReads[
            tuple[list[Event], list[dict[str, Any]], bool, int, str]] = SharedReads()
        #: Those reads' replays, handed to the next readers of the same point while the log
        #: has not moved.
        self.kept_replays: KeptReplays[
            tuple[list[Event], list[dict[str, Any]], bool, int, str]] = KeptReplays()
        #: A conversation's row and newest message, read once for the viewers who ask
        #: together (``get_conversation``: every Socket.IO join), and what all of them are
        #: shown alike.
        self.view_reads: SharedReads[tuple[Conversation, dict[str, Any]]] = SharedReads()
        self.sequencer = Sequencer()
        self.inbox_updates = Coalescer(self._publish_conversation_updated, self._in_background)
        #: With Redis: the ``service_inbox_changed`` control, one per window for every
        #: conversation changed in it.
        self.inbox_announcements = Batcher(self._announce_inbox_changes, self._in_background)
        #: The other nodes' controls and this node's room table, once attached
        #: (``attach_nodes``); None for tools without sockets.
        self.bus: ControlBus | None = None
        self.occupancy: Occupancy | None = None
        #: Whether events leave this node (Redis): then its room table is not everyone's.
        self.clustered = False
        #: Uploaded files, once attached (``attach_uploads``); None for tools without a
        #: file store: a message naming an upload is then refused.
        self.uploads: Uploads | None = None

    def attach_uploads(self, uploads: Uploads) -> None:
        """Take files in and out through ``uploads`` (its store, limits and link signer)."""
        self.uploads = uploads

    def attach_nodes(self, bus: ControlBus, occupancy: Occupancy, *, clustered: bool) -> None:
        """Use ``occupancy`` to address inbox updates to the rooms this node holds, and
        ``bus`` to invalidate the other nodes' grants and tell them of inbox changes (the
        ``service_invalidate`` and ``service_inbox_changed`` controls)."""
        self.bus = bus
        self.occupancy = occupancy
        self.clustered = clustered
        # Alone, this node makes every change itself and forgets at once: keep grants longer.
        self.grants.ttl = TTL_SECONDS if clustered else LOCAL_TTL_SECONDS
        bus.on_control(INVALIDATE, self._invalidated)
        bus.on_control(INBOX_CHANGED, self._inbox_changed_control)

    async def drain(self) -> None:
        """Wait for background publishes (used at shutdown and by tests)."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    # -- background work --------------------------------------------------------------------

    def _in_background(self, job: Awaitable[Any]) -> None:
        """Run ``job`` after the caller returns; failures are logged, never lost silently."""
        task = asyncio.ensure_future(job)
        self.background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self.background.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            if is_database_fault(error):
                # An outage, not a bug: one line, no traceback (faults.py logs the same way).
                self.log.warning("background publish skipped: database unavailable (%s: %s)",
                                 type(error).__name__, str(error)[:200])
            else:
                self.log.error("background publish failed", exc_info=error)

    # -- what changed -----------------------------------------------------------------------

    async def _changed(self, *, conversation_id: int | None = None,
                       blocked_user_id: int | None = None,
                       blocker_user_id: int | None = None) -> None:
        """After a commit that changes who may write where (a close, a block): drop the
        stale grants here at once, and on the other nodes through the fan-out."""
        self.grants.forget(conversation_id=conversation_id, blocked_user_id=blocked_user_id,
                           blocker_user_id=blocker_user_id)
        if self.bus is not None and self.clustered:
            await self.bus.broadcast(INVALIDATE, {"conversation_id": conversation_id,
                                                  "blocked_user_id": blocked_user_id,
                                                  "blocker_user_id": blocker_user_id})

    async def _invalidated(self, control: dict[str, Any]) -> None:
        """The ``service_invalidate`` control, run on every node."""
        conversation_id = control.get("conversation_id")
        blocked_user_id = control.get("blocked_user_id")
        blocker_user_id = control.get("blocker_user_id")
        self.grants.forget(
            conversation_id=conversation_id if isinstance(conversation_id, int) else None,
            blocked_user_id=blocked_user_id if isinstance(blocked_user_id, int) else None,
            blocker_user_id=blocker_user_id if isinstance(blocker_user_id, int) else None)

    def _inbox_changed(self, conversation_id: int) -> None:
        """What inboxes show of ``conversation_id`` changed: each node publishes it to the
        inboxes it holds (coalesced), and skips it when it can tell it holds none. With Redis
        every node learns of it through the ``service_inbox_changed`` control, which names
        every conversation changed in its window: each counts and delivers for its own
        inboxes only."""
        if self.bus is not None and self.clustered:
            self.inbox_announcements.touch(conversation_id)
        else:
            self._inbox_changed_here(conversation_id)

    def _inbox_changed_here(self, conversation_id: int) -> None:
        if self.inbox_updates.pending(conversation_id) or self._someone_listens(conversation_id):
            self.inbox_updates.touch(conversation_id)

    async def _announce_inbox_changes(self, conversation_ids: list[int]) -> None:
        assert self.bus is not None
        await self.bus.broadcast(INBOX_CHANGED, {"conversation_ids": conversation_ids})

    async def _inbox_changed_control(self, control: dict[str, Any]) -> None:
        """The ``service_inbox_changed`` control, run on every node (this one included).
        A node of the previous release announces one ``conversation_id``."""
        ids = control.get("conversation_ids", [control.get("conversation_id")])
        for conversation_id in ids if isinstance(ids, list) else ():
            if isinstance(conversation_id, int):
                self._inbox_changed_here(conversation_id)

    def _someone_listens(self, conversation_id: int) -> bool:
        """Whether an inbox on this node shows the conversation. False only when sure: the
        conversation's facts at hand, and none of its inbox rooms has a member here."""
        occupancy = self.occupancy
        if occupancy is None:
            return True
        facts = self.grants.cached(conversation_id)
        if facts is None:
            return True
        return occupancy.any_occupied(facts.inbox_rooms)

    # Implemented by ConversationOps; declared here so the other mixins can call them.
    async def _publish_conversation_updated(self, conversation_id: int) -> None:
        raise NotImplementedError

    async def conversation_view(self, conversation: Conversation, viewer: Actor) -> dict[str, Any]:
        raise NotImplementedError

    # Implemented by MessageOps; the event log's replays render messages with it.
    async def _render(self, rows: list[Message]) -> list[dict[str, Any]]:
        raise NotImplementedError
