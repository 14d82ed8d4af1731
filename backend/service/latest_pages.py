"""The latest history page of each conversation this node follows, kept rendered between the
connects that send it.

Every connect on ``/ws/chat/`` sends its conversation's latest page. Rendering a full page
(its rows made into models, then into dicts) is most of what such a connect costs; the
clients of a conversation reconnecting after a restart would each pay it. Here the page read
for one is kept for the next, as long as nothing in the conversation changed.

The kept page may predate an event still on its way to this node (it then reaches the reader
live): it is for readers who are told no log position the page is current to. Socket.IO's
``join`` tells one, and reads its page through ``history`` (shared reads begun after it
asked, after it read the position).

Why a reader never gets a page older than what it must see. A reader joins the
conversation's room, then asks for the page (as for a shared read, shared_reads.py): what
reaches this node after it joined reaches it live; the page must show what reached this node
before. Every event of a conversation that this node delivers, from this node or another
(the hub's fan-out, replays of the log included), calls ``changed`` before anyone can ask
again: the kept page is dropped, and a read under way while it happened is not kept (it may
have begun before the change committed). A kept page was therefore read after every change
this node delivered before the reader asked, and those changes committed before they were
delivered. Events that change no stored message (who is here, who types) keep the page.
The page is kept only while the room is followed here: when its last member leaves
(``vacated``), the node stops hearing its events, so the page goes.

What no event announces (a sender's profile or role, an outbound delivery status) is not
pushed to connected clients either; a kept page shows it at most ``keep_seconds`` late
(``LATEST_PAGE_KEEP_SECONDS``, 5 s by default). The pages' signed download links are made again
for every reader (``Page.uploads``).
Readers who are shown another page (blocked senders hidden) never use the kept one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from backend.settings import Limits

#: How long a kept page may be shown without a change, unless told otherwise (see the module
#: doc): what no event announces is never pushed to connected clients at all. A benchmark
#: that runs its node under callgrind (some fifty times slower) sets a longer one, so that a
#: burst of reconnects still finds its page.
KEEP_SECONDS = Limits.latest_page_keep_seconds
#: What kept pages may hold together, by ``weight`` (a full page of fifty messages, its dicts
#: and JSON, about 150 KB; an empty one well under 1 KB); the oldest goes first. Bounded by
#: memory, not by count: a node whose clients reconnect to thousands of small conversations
#: at once keeps every page, one whose conversations hold long histories keeps ~200.
MAX_BYTES = 32 * 1024 * 1024
#: Pages kept at most, whatever their weight.
MAX_PAGES = 16_384
#: A kept page's weight besides its JSON (the entry, the page, its list).
PAGE_OVERHEAD = 512
#: A kept page's dicts and JSON together, per byte of its JSON.
PER_JSON_BYTE = 3
#: Events that change no stored message: a kept page stays.
KEEPS_PAGE = frozenset({"typing_indicator", "user_joined", "user_left", "presence_diff",
                        "user_status"})


@dataclass(slots=True)
class Page:
    """A rendered page. Its dicts are shared by every reader: never changed.

    ``uploads``: ``(index, stored file, deleted)`` of the messages naming an upload, whose
    ``file`` and ``media_url`` each reader gets with links made for it."""

    messages: list[dict[str, Any]]
    has_more: bool
    uploads: tuple[tuple[int, dict[str, Any], bool], ...] = ()
    #: The log's position read with the page's rows: every event up to it is shown (None:
    #: not known, or an empty page).
    position: int | None = None
    _json: bytes | None = field(default=None, repr=False, compare=False)

    def json(self) -> bytes:
        """The messages as JSON, encoded once for every reader (of a page without uploads:
        the same bytes for everyone)."""
        if self._json is None:
            self._json = orjson.dumps(self.messages)
        return self._json


def weight(page: Page) -> int:
    """What a kept page holds in memory, estimated from its JSON (encoded here if no reader
    has yet: a page's readers get that JSON unless links are made for each)."""
    return PAGE_OVERHEAD + PER_JSON_BYTE * len(page.json())


class Recent(NamedTuple):
    """The latest page as one reader gets it: its messages (never to be changed), whether more
    lie before them, the messages as JSON when that is the same for every reader (None:
    encode ``messages``), and the log's position the page shows every event up to (read
    with its rows; None: not known)."""

    messages: list[dict[str, Any]]
    has_more: bool
    json: bytes | None
    position: int | None


class LatestPages:
    """The kept pages by conversation, and the reads under way (see the module doc).

    Keeps nothing until ``follow``: only a node whose fan-out reports every conversation
    event (``changed``) may keep pages."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 keep_seconds: float = KEEP_SECONDS, max_pages: int = MAX_PAGES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.following = False
        self._clock = clock
        self._keep_seconds = keep_seconds
        self._max_pages = max_pages
        self._max_bytes = max_bytes
        #: conversation → (page size, when its read was asked for, page)
        self._pages: dict[int, tuple[int, float, Page]] = {}
        #: The kept pages' weights together (``weight``).
        self.bytes = 0
        #: conversation → reads under way
        self._reading: dict[int, int] = {}
        #: conversation → changes heard while reads were under way
        self._changes: dict[int, int] = {}

    def follow(self) -> None:
        """The fan-out now reports every event of every conversation (``changed``)."""
        self.following = True

    def changed(self, conversation_id: int, event: str) -> None:
        """``event`` of the conversation is being delivered on this node."""
        if event not in KEEPS_PAGE:
            self._forget(conversation_id)

    def vacated(self, conversation_id: int) -> None:
        """No member of this node is in the conversation's room any more: its events stop
        reaching this node."""
        self._forget(conversation_id)

    def _forget(self, conversation_id: int) -> None:
        kept = self._pages.pop(conversation_id, None)
        if kept is not None:
            self.bytes -= weight(kept[2])
        if conversation_id in self._reading:
            self._changes[conversation_id] = self._changes.get(conversation_id, 0) + 1

    async def page(self, conversation_id: int, limit: int,
                   read: Callable[[], Awaitable[Page]]) -> Page:
        """The conversation's latest page of ``limit``: the kept one, or ``read()``'s (begun
        after this call, then kept when no change was heard meanwhile)."""
        if not self.following:
            return await read()
        asked_at = self._clock()
        kept = self._pages.get(conversation_id)
        if kept is not None and kept[0] == limit and asked_at - kept[1] < self._keep_seconds:
            return kept[2]
        changes = self._changes.get(conversation_id, 0)
        self._reading[conversation_id] = self._reading.get(conversation_id, 0) + 1
        try:
            page = await read()
            if self._changes.get(conversation_id, 0) == changes:
                self._keep(conversation_id, (limit, asked_at, page))
            return page
        finally:
            left = self._reading[conversation_id] - 1
            if left:
                self._reading[conversation_id] = left
            else:
                del self._reading[conversation_id]
                self._changes.pop(conversation_id, None)

    def _keep(self, conversation_id: int, entry: tuple[int, float, Page]) -> None:
        pages = self._pages
        size = weight(entry[2])
        if size > self._max_bytes:
            return
        previous = pages.pop(conversation_id, None)  # kept again: it becomes the newest
        if previous is not None:
            self.bytes -= weight(previous[2])
        # The oldest go first: those past their time, then any beyond the bounds.
        cutoff = entry[1] - self._keep_seconds
        while pages:
            oldest = next(iter(pages))
            if (len(pages) < self._max_pages and self.bytes + size <= self._max_bytes
                    and pages[oldest][1] > cutoff):
                break
            self.bytes -= weight(pages.pop(oldest)[2])
        pages[conversation_id] = entry
        self.bytes += size

    def __len__(self) -> int:
        return len(self._pages)
