"""A page of a conversation's messages with their senders, as plain statements: what every
connect sends (the latest page, or the page after a message).

The ORM's ``select_related`` read of a page cost more to build and to split into models than
to run (an empty page included). Here the statements are written once per dialect, each row
becomes a model as the ORM's reads make it (``model_from_row``), and each message gets its
sender loaded as ``select_related`` gives it (``attach_related``): the same instances, so the
same rendering. On SQLite they run on the event loop's thread, as the connect's other reads
(backend/storage/lookups.py).

A page's reactions and read counts are read together (``reactions_and_read_counts``): on
PostgreSQL each statement is a round trip through Tortoise's pool.
"""

from __future__ import annotations

import functools
from typing import Any

from tortoise.models import Model

from backend.compat.tortoise import attach_related, model_from_row
from backend.storage.lookups import rows_of
from models import Conversation, Customer, Message, MobileSession, Reaction, Receipt, User

#: The message's relations a page loads: (relation, its id column, its model).
SENDERS: tuple[tuple[str, str, type[Model]], ...] = (
    ("sender_user", "sender_user_id", User),
    ("sender_device", "sender_device_id", MobileSession),
    ("sender_customer", "sender_customer_id", Customer),
)


@functools.cache
def _columns(model: type[Model]) -> str:
    # Read once the ORM is up: foreign keys' columns join the projection then.
    return ", ".join(f'"{column}"' for column in model._meta.fields_db_projection.values())


def _marks(postgres: bool, first: int, count: int) -> list[str]:
    # Numbered on SQLite too: a statement may name a parameter twice.
    return [f"${i}" if postgres else f"?{i}" for i in range(first, first + count)]


#: The column a page read with its position carries beside each message's.
_POSITION = "page_log_position"


@functools.cache
def _page(postgres: bool, after: bool, newest_first: bool, position: bool = False) -> str:
    where = '"conversation_id" = {}' + (' AND "id" > {}' if after else "")
    marks = _marks(postgres, 1, 3 if after else 2)
    # The log's position in the same statement: the page shows every event up to it.
    extra = (f', (SELECT "event_position" FROM "{Conversation._meta.db_table}" '
             f'WHERE "id" = {marks[0]}) AS "{_POSITION}"') if position else ""
    return (f'SELECT {_columns(Message)}{extra} FROM "{Message._meta.db_table}" WHERE '
            f'{where.format(*marks[:-1])} ORDER BY "id" {"DESC" if newest_first else "ASC"} '
            f"LIMIT {marks[-1]}")


def _among(model: type[Model], count: int, postgres: bool) -> str:
    return (f'SELECT {_columns(model)} FROM "{model._meta.db_table}" WHERE "id" IN '
            f'({", ".join(_marks(postgres, 1, count))})')


async def message_page(conversation_id: int, limit: int, *, after_id: int | None,
                       newest_first: bool) -> list[Message]:
    """Up to ``limit`` messages of the conversation, in id order (newest first when asked),
    after ``after_id`` when given, each with its sender loaded."""
    messages, _ = await _read_page(conversation_id, limit, after_id, newest_first, False)
    return messages


async def latest_page(conversation_id: int, limit: int) -> tuple[list[Message], int | None]:
    """Up to ``limit`` of the conversation's newest messages, newest first, each with its
    sender loaded; and the log's position read by the same statement (every event up to it
    is shown), None for an empty page."""
    return await _read_page(conversation_id, limit, None, True, True)


async def _read_page(conversation_id: int, limit: int, after_id: int | None,
                     newest_first: bool, position: bool) -> tuple[list[Message], int | None]:
    params: list[Any] = [conversation_id]
    if after_id is not None:
        params.append(after_id)
    params.append(limit)
    page = functools.partial(_page, after=after_id is not None, newest_first=newest_first,
                             position=position)
    rows = await rows_of(page, params)
    # The position stays in the rows: the model reads its own columns only, and a dict with
    # a key popped is copied key by key by ``**row`` (an intact one in a block).
    at = rows[0][_POSITION] if position and rows else None
    messages = [model_from_row(Message, row) for row in rows]
    for relation, column, model in SENDERS:
        ids = sorted({getattr(m, column) for m in messages} - {None})
        found: dict[Any, Model] = {}
        if ids:
            rows = await rows_of(functools.partial(_among, model, len(ids)), ids)
            found = {row["id"]: model_from_row(model, row) for row in rows}
        for message in messages:
            attach_related(message, relation, found.get(getattr(message, column)))
    return messages, None if at is None else int(at)


async def reactions_and_read_counts(
    message_ids: list[int]
) -> tuple[list[tuple[int, str, str]], dict[int, int]]:
    """``(message id, emoji, reactor key)`` of every reaction to the messages, oldest first,
    and how many have read each of them (the ones read by nobody left out): one statement,
    the reactions' rows and the counts' one after the other (the counts' rows are those
    without an emoji)."""
    if not message_ids:
        return [], {}

    def statement(postgres: bool) -> str:
        # Each id a parameter named in both halves: numbered on SQLite too.
        among = ", ".join(f"${i}" if postgres else f"?{i}"
                          for i in range(1, len(message_ids) + 1))
        return (f'SELECT "message_id", "emoji", "reactor_key", "id" AS "n" '
                f'FROM "{Reaction._meta.db_table}" WHERE "message_id" IN ({among}) '
                f'UNION ALL SELECT "message_id", NULL, NULL, COUNT("id") '
                f'FROM "{Receipt._meta.db_table}" WHERE "message_id" IN ({among}) '
                'AND "read_at" IS NOT NULL GROUP BY "message_id" '
                # The reactions in id order; the counts, wherever they fall, are keyed.
                'ORDER BY "n"')

    reactions: list[tuple[int, str, str]] = []
    read_counts: dict[int, int] = {}
    for row in await rows_of(statement, message_ids):
        if row["emoji"] is None:
            read_counts[row["message_id"]] = int(row["n"])
        else:
            reactions.append((row["message_id"], row["emoji"], row["reactor_key"]))
    return reactions, read_counts
