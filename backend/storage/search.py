"""Full-text search over messages in each database's own engine (models/migrations/0010).

SQLite: the FTS5 table ``message_search``, ranked by ``bm25`` (negated: higher is better),
snippets made from the page's text (``excerpt``). PostgreSQL: ``messages.search_vector`` with
its GIN index, ranked by ``ts_rank``, snippets by ``ts_headline``. Snippets are computed for
the page's rows only.

User text never reaches either query language as written: it is cut into words (letters and
digits), each quoted as a literal term, all required, the last one also matching as a prefix.
Which messages a reader may see is decided by the caller (the conversations and senders it
passes); this module only turns that into SQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

#: Where a snippet's match starts and ends (private-use characters, replaced by the caller).
MARK_START = "\ue000"
MARK_END = "\ue001"
#: What stands for text left out of a snippet.
ELLIPSIS = "…"

_WORD = re.compile(r"[^\W_]+")


class SearchOrder(StrEnum):
    """How hits are ordered: best match first (ties newest first), or newest first."""

    RANK = "rank"
    NEWEST = "newest"


class HasFile(StrEnum):
    """Whether a hit must carry a file (``file`` or ``media_url``), must not, or either."""

    ANY = "any"
    YES = "yes"
    NO = "no"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One page of a search. ``conversations``: the only conversations to look in;
    ``hidden_senders``: user ids whose messages are left out; ``resume``: the (rank, id) of
    the previous page's last hit; ``window``: how many of the newest matches are ranked (the
    cost of a ranked page grows with it, not with how many messages match)."""

    words: tuple[str, ...]
    conversations: Sequence[int]
    hidden_senders: Sequence[int] = ()
    sender_id: int | None = None
    after: datetime | None = None
    before: datetime | None = None
    has_file: HasFile = HasFile.ANY
    order: SearchOrder = SearchOrder.RANK
    limit: int = 20
    resume: tuple[float, int] | None = None
    #: Ranking looks at the newest this many matches (each costs a score).
    window: int = 10_000


@dataclass(frozen=True, slots=True)
class Hit:
    """A matching message: its ids, its rank (higher is better) and a snippet whose matches
    lie between ``MARK_START`` and ``MARK_END``."""

    message_id: int
    conversation_id: int
    rank: float
    snippet: str


def words_of(text: str) -> tuple[str, ...]:
    """The words of free text (runs of letters and digits, lower-cased): all a query keeps."""
    return tuple(word.lower() for word in _WORD.findall(text))


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 query requiring every word, the last one as a prefix. Words hold letters and
    digits only, so quoting them makes each a literal term whatever it spells (AND, NEAR)."""
    *head, last = words
    return " ".join([*(f'"{word}"' for word in head), f'"{last}"*'])


def tsquery(words: Sequence[str]) -> str:
    """The PostgreSQL ``to_tsquery`` text requiring every word, the last one as a prefix."""
    *head, last = words
    return " & ".join([*(f"'{word}'" for word in head), f"'{last}':*"])


def _client() -> BaseDBAsyncClient:
    client: BaseDBAsyncClient = get_connection("default")
    return client


class _Params:
    """Parameters and their placeholders, in the engine's style."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.values: list[Any] = []

    def __call__(self, value: Any, pg_type: str = "") -> str:
        self.values.append(value)
        if not self.postgres:
            return "?"
        return f"${len(self.values)}" + (f"::{pg_type}" if pg_type else "")

    def ids(self, values: Sequence[int]) -> str:
        """A list of integers as one parameter: a table of them on SQLite, an array on
        PostgreSQL (no limit on how many, one statement text whatever the count)."""
        if self.postgres:
            return self(list(values), "int[]")
        return f"(SELECT value FROM json_each({self(orjson.dumps(list(values)).decode())}))"


def _stamp(value: datetime) -> datetime:
    """UTC: SQLite compares the text the driver writes (``isoformat(" ")``), every stored
    stamp in UTC."""
    return value.astimezone(UTC)


def _conditions(query: SearchQuery, p: _Params) -> list[str]:
    """The filters on ``m`` (messages) other than the match."""
    pg = p.postgres
    where = [f'"m"."is_deleted" = {"false" if pg else "0"}']
    if pg:
        where.append(f'"m"."conversation_id" = ANY({p.ids(query.conversations)})')
    else:
        where.append(f'"m"."conversation_id" IN {p.ids(query.conversations)}')
    if query.hidden_senders:
        hidden = (f"<> ALL({p.ids(query.hidden_senders)})" if pg
                  else f"NOT IN {p.ids(query.hidden_senders)}")
        where.append(f'("m"."sender_user_id" IS NULL OR "m"."sender_user_id" {hidden})')
    if query.sender_id is not None:
        where.append(f'"m"."sender_user_id" = {p(query.sender_id, "int")}')
    if query.after is not None:
        where.append(f'"m"."created_at" >= {p(_stamp(query.after), "timestamptz")}')
    if query.before is not None:
        where.append(f'"m"."created_at" < {p(_stamp(query.before), "timestamptz")}')
    with_file = '("m"."file" IS NOT NULL OR "m"."media_url" <> \'\')'
    if query.has_file == HasFile.YES:
        where.append(with_file)
    elif query.has_file == HasFile.NO:
        where.append(f"NOT {with_file}")
    return where


def _after_resume(query: SearchQuery, p: _Params, rank: str, row_id: str) -> list[str]:
    """The keyset condition placing a row after the previous page's last hit."""
    if query.resume is None:
        return []
    last_rank, last_id = query.resume
    if query.order == SearchOrder.NEWEST:
        return [f"{row_id} < {p(last_id, 'int')}"]
    r1, r2, i = p(last_rank, "float8"), p(last_rank, "float8"), p(last_id, "int")
    return [f"({rank} < {r1} OR ({rank} = {r2} AND {row_id} < {i}))"]


async def find(query: SearchQuery) -> list[Hit]:
    """The page of hits of ``query``, in its order."""
    if not query.words or not query.conversations:
        return []
    client = _client()
    if client.capabilities.dialect == "postgres":
        return await _find_postgres(client, query)
    return await _find_sqlite(client, query)


async def _find_sqlite(client: BaseDBAsyncClient, query: SearchQuery) -> list[Hit]:
    p = _Params(False)
    match = fts5_query(query.words)
    # The newest matches first: FTS5 walks its rowids backwards, and stops at the window.
    where = [f'"message_search" MATCH {p(match)}', *_conditions(query, p)]
    newest = query.order == SearchOrder.NEWEST
    if newest:
        where += _after_resume(query, p, "", '"m"."id"')
    window = (
        'SELECT "m"."id" AS "id", "m"."conversation_id" AS "conversation_id", '
        '"m"."content" AS "content", -bm25("message_search") AS "rank" '
        'FROM "message_search" '
        'JOIN "messages" AS "m" ON "m"."id" = "message_search"."rowid" '
        f'WHERE {" AND ".join(where)} ORDER BY "message_search"."rowid" DESC '
        f'LIMIT {p(query.limit if newest else query.window)}')
    if newest:
        sql = window
    else:
        resume = _after_resume(query, p, '"rank"', '"id"')
        sql = (f'SELECT "id", "conversation_id", "content", "rank" FROM ({window}) '
               f'{"WHERE " + resume[0] if resume else ""} '
               f'ORDER BY "rank" DESC, "id" DESC LIMIT {p(query.limit)}')
    rows = await client.execute_query_dict(sql, p.values)
    return [Hit(row["id"], row["conversation_id"], float(row["rank"]),
                excerpt(row["content"], query.words)) for row in rows]


def _fold(token: str) -> str:
    """A token as FTS5's ``unicode61 remove_diacritics 2`` compares it."""
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def excerpt(text: str, words: Sequence[str], *, tokens: int = 16) -> str:
    """Up to ``tokens`` words of ``text`` around its matches of ``words`` (the last one also
    as a prefix), each match between ``MARK_START`` and ``MARK_END``, ``ELLIPSIS`` where text
    is left out.

    SQLite's snippets are made here, from the page's text, rather than by FTS5's snippet():
    that needs the query run again for each row, and a prefix term makes FTS5 merge the
    whole doclist of every word it starts each time (seconds for a common word)."""
    spans = [m.span() for m in _WORD.finditer(text)]
    if not words or not spans:
        return text[:200]
    folded = [_fold(word) for word in words]
    exact, prefix = set(folded), folded[-1]
    hits = [i for i, (a, b) in enumerate(spans)
            if (token := _fold(text[a:b])) in exact or token.startswith(prefix)]
    # The run of ``tokens`` words holding the most matches, starting a little before one.
    first = 0
    if hits:
        starts = {max(0, min(h - 3, len(spans) - tokens)) for h in hits}
        first = max(sorted(starts), key=lambda s: sum(s <= h < s + tokens for h in hits))
    last = min(len(spans), first + tokens) - 1
    start = spans[first][0] if first > 0 else 0
    end = spans[last][1] if last < len(spans) - 1 else len(text)
    parts = [ELLIPSIS] if first > 0 else []
    at = start
    for i in hits:
        if first <= i <= last:
            a, b = spans[i]
            parts += [text[at:a], MARK_START, text[a:b], MARK_END]
            at = b
    parts.append(text[at:end])
    if last < len(spans) - 1:
        parts.append(ELLIPSIS)
    return "".join(parts)


#: ts_headline's options: up to two fragments of about 8 to 24 words around the matches.
_HEADLINE = (f'StartSel="{MARK_START}", StopSel="{MARK_END}", MaxWords=24, MinWords=8, '
             f'ShortWord=0, MaxFragments=2, FragmentDelimiter=" {ELLIPSIS} "')


async def _find_postgres(client: BaseDBAsyncClient, query: SearchQuery) -> list[Hit]:
    p = _Params(True)
    q = f"to_tsquery('simple', {p(tsquery(query.words))})"
    # The newest matches first (the planner may walk the primary key backwards testing each
    # row, or collect the GIN index's matches and keep the newest), then the scores of those.
    where = [f'"m"."search_vector" @@ {q}', *_conditions(query, p)]
    newest = query.order == SearchOrder.NEWEST
    if newest:
        where += _after_resume(query, p, "", '"m"."id"')
    window = (
        'SELECT "m"."id", "m"."conversation_id", "m"."content", "m"."search_vector" '
        f'FROM "messages" AS "m" WHERE {" AND ".join(where)} ORDER BY "m"."id" DESC '
        # A number in the text, not a parameter: the planner walks the primary key backwards
        # for a small limit, which it cannot know of a parameter.
        f'LIMIT {int(query.limit if newest else query.window)}')
    ranked = (f'SELECT "w"."id", "w"."conversation_id", "w"."content", '
              f'ts_rank("w"."search_vector", {q})::float8 AS "rank" FROM ({window}) AS "w"')
    if newest:
        page = ranked
    else:
        resume = _after_resume(query, p, '"r"."rank"', '"r"."id"')
        page = (f'SELECT * FROM ({ranked}) AS "r" {"WHERE " + resume[0] if resume else ""} '
                f'ORDER BY "rank" DESC, "id" DESC LIMIT {p(query.limit, "int")}')
    order = '"id" DESC' if newest else '"rank" DESC, "id" DESC'
    sql = ('SELECT "page"."id", "page"."conversation_id", "page"."rank", '
           f"ts_headline('simple', \"page\".\"content\", {q}, {p(_HEADLINE)}) AS \"snippet\" "
           f'FROM ({page}) AS "page" ORDER BY {order}')
    # A plan for these very words and conversations: the driver prepares each statement and
    # PostgreSQL would, after five runs, keep one generic plan for every word, which for a
    # common word reads all its matches (a second instead of milliseconds).
    async with in_transaction() as connection:
        await connection.execute_script("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await connection.execute_query_dict(sql, p.values)
    return [Hit(row["id"], row["conversation_id"], float(row["rank"]), row["snippet"])
            for row in rows]
