"""Full-text message search (CONTRACT section 11): ranked hits with highlighted snippets,
filters and an opaque cursor, over what the reader may see now.

The engine's work is backend/storage/search.py; who may see what is access.py's: the
conversations of ``visible_filter`` (or the one asked for, if ``visible_conversation`` allows
it), without the messages of users the reader blocked, and never a deleted message.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from backend.service.access import blocked_by, visible_conversation, visible_filter
from backend.service.actors import Actor
from backend.service.errors import invalid
from backend.service.messages import MessageOps
from backend.storage import search as engine
from backend.storage.columns import int_column
from backend.storage.search import HasFile, SearchOrder

__all__ = ["SearchFilters", "SearchOps", "SearchOrder", "highlighted"]
from models import Conversation, Message

#: Longest query text, in characters.
MAX_QUERY_CHARS = 200
#: Most hits on one page.
MAX_PAGE = 200

#: The snippet's highlight markers (the snippet is HTML: the text escaped, matches marked).
HIGHLIGHT_START = "<mark>"
HIGHLIGHT_END = "</mark>"


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """What narrows a search besides its text (each None: no narrowing)."""

    conversation_id: int | None = None
    sender_id: int | None = None
    after: datetime | None = None
    before: datetime | None = None
    has_file: bool | None = None


def _utc(moment: datetime | None) -> datetime | None:
    """A moment without an offset is read as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _in_utc(filters: SearchFilters) -> SearchFilters:
    return SearchFilters(filters.conversation_id, filters.sender_id, _utc(filters.after),
                         _utc(filters.before), filters.has_file)


def highlighted(snippet: str) -> str:
    """The engine's snippet as HTML: text escaped, each match inside ``<mark>…</mark>``."""
    return (html.escape(snippet).replace(engine.MARK_START, HIGHLIGHT_START)
            .replace(engine.MARK_END, HIGHLIGHT_END))


def _fingerprint(words: tuple[str, ...], filters: SearchFilters, order: SearchOrder) -> str:
    """Ties a cursor to the search that made it."""
    facts = [list(words), filters.conversation_id, filters.sender_id,
             filters.after.isoformat() if filters.after else None,
             filters.before.isoformat() if filters.before else None, filters.has_file, order]
    return hashlib.sha256(orjson.dumps(facts)).hexdigest()[:16]


def _encode_cursor(hit: engine.Hit, fingerprint: str) -> str:
    raw = orjson.dumps({"r": hit.rank, "i": hit.message_id, "f": fingerprint})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str) -> tuple[float, int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        rank, last_id, made_by = data["r"], data["i"], data["f"]
    except (ValueError, TypeError, KeyError) as exc:
        raise invalid("Malformed cursor") from exc
    if made_by != fingerprint:
        raise invalid("The cursor belongs to another search (q or a filter changed)")
    if (not isinstance(rank, int | float) or isinstance(rank, bool)
            or not isinstance(last_id, int) or isinstance(last_id, bool)
            or not 0 < last_id < 2**31):
        raise invalid("Malformed cursor")
    return float(rank), last_id


class SearchOps(MessageOps):
    """Mixin of ChatService: full-text search."""

    async def search(
        self,
        actor: Actor,
        text: str,
        *,
        filters: SearchFilters | None = None,
        order: SearchOrder = SearchOrder.RANK,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """A page of ``{results: [{message, conversation_id, snippet, rank}], next_cursor}``:
        messages ``actor`` may read whose content holds every word of ``text`` (the last one
        also as a prefix), best match first (``order=rank``, among the newest
        ``search_rank_window`` matches) or newest first."""
        filters = filters or SearchFilters()
        if not isinstance(text, str) or not text.strip():
            raise invalid("q must not be empty")
        if len(text) > MAX_QUERY_CHARS:
            raise invalid(f"q must be at most {MAX_QUERY_CHARS} characters")
        words = engine.words_of(text)
        if not words:
            raise invalid("q must contain a letter or a digit")
        filters = _in_utc(filters)
        if filters.after and filters.before and filters.after >= filters.before:
            raise invalid("after must be earlier than before")
        limit = max(1, min(limit, MAX_PAGE))
        fingerprint = _fingerprint(words, filters, order)
        resume = _decode_cursor(cursor, fingerprint) if cursor else None
        if filters.conversation_id is not None:
            await visible_conversation(actor, filters.conversation_id)
            conversations = [filters.conversation_id]
        else:
            conversations = await int_column(
                Conversation.filter(visible_filter(actor)).distinct(), "id")
        hidden = await blocked_by(actor.user.id) if actor.user is not None else []
        hits = await engine.find(engine.SearchQuery(
            words=words, conversations=conversations, hidden_senders=hidden,
            sender_id=filters.sender_id, after=filters.after, before=filters.before,
            has_file=(HasFile.ANY if filters.has_file is None
                      else HasFile.YES if filters.has_file else HasFile.NO),
            order=order, limit=limit + 1, resume=resume,
            window=max(1, self.limits.search_rank_window)))
        page = hits[:limit]
        rows = {m.id: m for m in await Message.filter(
            id__in=[hit.message_id for hit in page]).select_related(*self.RELATIONS)}
        rendered = {m["id"]: m for m in await self._render(list(rows.values()))}
        results = [
            {"message": rendered[hit.message_id], "conversation_id": hit.conversation_id,
             "snippet": highlighted(hit.snippet), "rank": hit.rank}
            for hit in page if hit.message_id in rendered  # gone since the search: left out
        ]
        next_cursor = (_encode_cursor(page[-1], fingerprint) if len(hits) > limit else None)
        return {"results": results, "next_cursor": next_cursor}
