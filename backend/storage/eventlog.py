"""The per-conversation event log in SQL (models/events.py): append, read, epoch, retention.

``take_position`` and ``write`` run in the caller's transaction, around the change they log:
the conversation's counter moves first (locking its row, as a send and a read take it), then
the change, then the event at that position; within a conversation positions commit in
order. A send logs its ``chat_message`` in its own statement (backend/storage/sends.py).

Retention (``trim``) raises a conversation's floor before deleting what lies below it; a
reader checks the floor and that the first row it reads follows the position it resumes
from, so a trim running meanwhile never turns into a silent gap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.fields.data import JSON_DUMPS


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One row of the log. ``payload`` is None for a ``chat_message`` (rebuilt from
    ``message_id``)."""

    position: int
    name: str
    message_id: int | None
    payload: dict[str, Any] | None
    skip: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LogBounds:
    """A conversation's last position and its floor (positions at or below it are gone)."""

    position: int
    floor: int


def _client() -> BaseDBAsyncClient:
    client: BaseDBAsyncClient = get_connection("default")
    return client


def _postgres(client: BaseDBAsyncClient) -> bool:
    return client.capabilities.dialect == "postgres"


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def take_position(conversation_id: int) -> int:
    """The conversation's next position, in the caller's transaction: its row stays locked
    until that transaction ends, so positions commit in order. Raises LookupError when the
    conversation is gone."""
    client = _client()
    mark = "$1" if _postgres(client) else "?"
    # execute_query_dict: Tortoise's PostgreSQL execute_query drops an UPDATE's RETURNING rows.
    rows = await client.execute_query_dict(
        'UPDATE "conversations" SET "event_position" = "event_position" + 1 '
        f'WHERE "id" = {mark} RETURNING "event_position"', [conversation_id])
    if not rows:
        raise LookupError(f"conversation {conversation_id} is gone")
    return int(rows[0]["event_position"])


async def take_positions(conversation_id: int, count: int) -> int:
    """``count`` positions at once (a change that logs several events), in the caller's
    transaction, as ``take_position`` takes one: returns the last of them (with 0, the
    conversation's position now, its row locked all the same). Raises LookupError when the
    conversation is gone."""
    client = _client()
    marks = ("$1", "$2") if _postgres(client) else ("?", "?")
    rows = await client.execute_query_dict(
        f'UPDATE "conversations" SET "event_position" = "event_position" + {marks[0]} '
        f'WHERE "id" = {marks[1]} RETURNING "event_position"', [count, conversation_id])
    if not rows:
        raise LookupError(f"conversation {conversation_id} is gone")
    return int(rows[0]["event_position"])


async def write_many(conversation_id: int,
                     entries: list[tuple[int, str, dict[str, Any], Iterable[str]]], *,
                     stamp: datetime) -> None:
    """Log several events (``(position, name, payload, skip)`` each, positions from
    ``take_positions``) in the caller's transaction, in one batch."""
    client = _client()
    args = []
    for position, name, payload, skip in entries:
        skipped = sorted(skip)
        args.append([conversation_id, position, name, None, JSON_DUMPS(payload),
                     JSON_DUMPS(skipped) if skipped else None, stamp])
    if _postgres(client):
        sql = _INSERT.format(*(f"${i}" for i in range(1, 8)), json="::jsonb")
    else:
        sql = _INSERT.format(*("?" * 7), json="")
    await client.execute_many(sql, args)


async def write(conversation_id: int, position: int, name: str,
                payload: dict[str, Any] | None, *, stamp: datetime,
                skip: Iterable[str] = (), message_id: int | None = None) -> None:
    """Log the event at ``position`` (from ``take_position``, in the same transaction)."""
    client = _client()
    skipped = sorted(skip)
    args = [conversation_id, position, name, message_id,
            None if payload is None else JSON_DUMPS(payload),
            JSON_DUMPS(skipped) if skipped else None, stamp]
    if _postgres(client):
        sql = _INSERT.format(*(f"${i}" for i in range(1, 8)), json="::jsonb")
    else:
        sql = _INSERT.format(*("?" * 7), json="")
    await client.execute_query(sql, args)


_INSERT = (
    'INSERT INTO "conversation_events" ("conversation_id", "position", "name", "message_id", '
    '"payload", "skip", "created_at") VALUES ({0}, {1}, {2}, {3}, {4}{json}, {5}{json}, {6})'
)


async def bounds(conversation_id: int) -> LogBounds | None:
    """The conversation's last position and floor, or None when it does not exist."""
    client = _client()
    mark = "$1" if _postgres(client) else "?"
    _, rows = await client.execute_query(
        f'SELECT "event_position", "event_floor" FROM "conversations" WHERE "id" = {mark}',
        [conversation_id])
    if not rows:
        return None
    return LogBounds(int(rows[0]["event_position"]), int(rows[0]["event_floor"]))


async def read(conversation_id: int, after: int, limit: int) -> list[LoggedEvent]:
    """The events after position ``after``, oldest first, at most ``limit``."""
    client = _client()
    marks = ("$1", "$2") if _postgres(client) else ("?", "?")
    sql = (f'SELECT "position", "name", "message_id", "payload", "skip", "created_at" '
           f'FROM "conversation_events" WHERE "conversation_id" = {marks[0]} '
           f'AND "position" > {marks[1]} ORDER BY "position" LIMIT {int(limit)}')
    _, rows = await client.execute_query(sql, [conversation_id, after])
    return [LoggedEvent(int(row["position"]), str(row["name"]), row["message_id"],
                        _json(row["payload"]), tuple(_json(row["skip"]) or ()),
                        _stamp(row["created_at"]))
            for row in rows]


@dataclass(frozen=True, slots=True)
class GlobalRow:
    """A row of the log with its place among every conversation's rows (its id)."""

    id: int
    conversation_id: int
    event: LoggedEvent


async def read_all(after_id: int, limit: int) -> list[GlobalRow]:
    """Rows of every conversation with an id past ``after_id``, in id order, at most
    ``limit``. Ids are given at insert: on PostgreSQL one may commit after a larger one, so a
    reader that must miss nothing keeps away from the newest rows (see the webhooks'
    catch-up)."""
    client = _client()
    mark = "$1" if _postgres(client) else "?"
    _, rows = await client.execute_query(
        f'SELECT "id", "conversation_id", "position", "name", "message_id", "payload", '
        f'"skip", "created_at" FROM "conversation_events" WHERE "id" > {mark} '
        f'ORDER BY "id" LIMIT {int(limit)}', [after_id])
    return [GlobalRow(int(row["id"]), int(row["conversation_id"]), LoggedEvent(
        int(row["position"]), str(row["name"]), row["message_id"], _json(row["payload"]),
        tuple(_json(row["skip"]) or ()), _stamp(row["created_at"]))) for row in rows]


async def last_id() -> int:
    """The largest row id of the log (0 when empty)."""
    _, rows = await _client().execute_query(
        'SELECT MAX("id") AS "top" FROM "conversation_events"')
    top = rows[0]["top"] if rows else None
    return int(top) if top is not None else 0


def _stamp(value: Any) -> datetime:
    """A timestamp column as an aware datetime (SQLite hands back text)."""
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(stamp, datetime)
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


async def epoch() -> str:
    """The log's epoch (made by migration 0005; changed only by ``reset_epoch``)."""
    _, rows = await _client().execute_query('SELECT "epoch" FROM "event_log_epoch" WHERE "id" = 1')
    return str(rows[0]["epoch"]) if rows else ""


async def reset_epoch(new_epoch: str) -> None:
    """The log cannot be served from before (an operator truncated it): a new epoch, so
    every client resuming from an old position reloads."""
    client = _client()
    mark = "$1" if _postgres(client) else "?"
    await client.execute_query(f'UPDATE "event_log_epoch" SET "epoch" = {mark} WHERE "id" = 1',
                               [new_epoch])


#: Rows looked at per pass of the age trim (oldest ids first: ids grow with time).
AGE_SCAN = 5000


async def trim(max_events: int, max_age_seconds: float, now: datetime) -> int:
    """Delete what retention no longer keeps: beyond the newest ``max_events`` of each
    conversation, older than ``max_age_seconds``. Floors move up first. Returns the rows
    deleted."""
    client = _client()
    pg = _postgres(client)
    greatest = "GREATEST" if pg else "MAX"
    marks = ("$1", "$2") if pg else ("?", "?")
    deleted = 0
    # Age: the oldest ids first (the primary key's order), a bounded scan per pass.
    cutoff = now - timedelta(seconds=max_age_seconds)
    while True:
        _, rows = await client.execute_query(
            f'SELECT MAX("id") AS "top" FROM (SELECT "id", "created_at" FROM '
            f'"conversation_events" ORDER BY "id" LIMIT {AGE_SCAN}) AS "o" '
            f'WHERE "created_at" < {marks[0]}', [cutoff])
        top = rows[0]["top"] if rows else None
        if top is None:
            break
        await client.execute_query(
            f'UPDATE "conversations" SET "event_floor" = {greatest}("event_floor", ('
            f'SELECT MAX("position") FROM "conversation_events" AS "e" WHERE '
            f'"e"."conversation_id" = "conversations"."id" AND "e"."id" <= {marks[0]})) '
            f'WHERE "id" IN (SELECT "conversation_id" FROM "conversation_events" '
            f'WHERE "id" <= {marks[1]})', [top, top])
        count, _ = await client.execute_query(
            f'DELETE FROM "conversation_events" WHERE "id" <= {marks[0]}', [top])
        deleted += count
        if count < AGE_SCAN:
            break
    # Count: each conversation keeps its newest ``max_events``.
    await client.execute_query(
        f'UPDATE "conversations" SET "event_floor" = "event_position" - {marks[0]} '
        f'WHERE "event_position" - {marks[1]} > "event_floor"', [max_events, max_events])
    count, _ = await client.execute_query(BELOW_FLOORS)
    return deleted + count


#: Deletes every row at or below its conversation's floor. Driven by the conversations (SQLite
#: takes CROSS JOIN's order as given): each one's rows below its floor are a range of the
#: (conversation, position) index, so the trim reads what it deletes and no more; a subquery
#: per row read the whole log at every trim (on PostgreSQL, one subplan per row).
BELOW_FLOORS = (
    'DELETE FROM "conversation_events" WHERE "id" IN (SELECT "e"."id" FROM '
    '"conversations" AS "c" CROSS JOIN "conversation_events" AS "e" WHERE '
    '"e"."conversation_id" = "c"."id" AND "e"."position" <= "c"."event_floor")'
)
