"""The send transaction in fixed SQL: the one database write of every message.

A send is four statements, written once below and run as one unit:

1. ``UPDATE conversations``: the message counter (from which every participant's unread count
   is derived, see ``backend/service/unread.py``), ``updated_at``, ``started_at``, the device's
   and the staff's counters. It comes first, so the conversation's row is locked before the
   message takes its id: within a conversation, ids commit in id order (on PostgreSQL too,
   where concurrent transactions could otherwise commit id 11 before id 10, and a reader
   resuming ``after_id=11`` would never see 10).
2. ``INSERT INTO messages ... RETURNING id``.
3. ``UPDATE participants`` of the sender's own row only (their message is not unread to them):
   one row, whatever the number of participants.
4. ``INSERT INTO conversation_events``: the ``chat_message`` event at the conversation's next
   position (taken in 1, under the row lock, so positions commit in order too). The row holds
   the message id, not the payload: a replay rebuilds it from the message (models/events.py).

PostgreSQL runs them as one statement (data-modifying CTEs, chained so that the conversation's
row is locked first): one round trip, atomic without BEGIN/COMMIT. The sends of one turn of the
event loop are pipelined together (``PostgresTurns``): one round trip and one commit for all.

SQLite runs them on the event loop's own thread, on a connection of the send path's own
(``InlineWrites``): the transaction takes 0.1-0.2 ms, less than handing it to aiosqlite's
worker thread and back (each statement's return to Python there waits for the GIL, up to 5 ms
when the loop is busy). The sends of one turn of the loop share one transaction: most of its
cost is the commit's page writes, so under load, when messages arrive together, a send costs
about half. Its checkpoints run in the background (``backend/storage/checkpoints.py``), so a
commit never waits for a sync. It never waits for a lock either: when another connection is
at work (a Tortoise transaction), the send goes to aiosqlite's thread instead and waits its
turn there, with the other sends waiting at that moment (group commit, ``GroupCommit``: one
job for all of them). Each send of a batch has a savepoint of its own (it fails alone); a send
alone in its transaction, the usual case below saturation, has none. The message's stamp,
four of a send's parameters, is formatted once (not by the driver's adapter each time). The
SQL is built once per dialect; the ORM's query building and model hydration, 23-28 % of the
CPU of the benchmark's rooms scenario before, are not on this path.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.context import require_context
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.fields.data import JSON_DUMPS

from backend.compat.tortoise import (
    prepared_row,
    run_on_sqlite_thread,
    sqlite_lock,
    sqlite_stamp,
)
from backend.storage.held_connection import HeldConnection
from backend.storage.side_connections import open_beside
from backend.storage.turns import Turn, rest_of_turn
from models import (
    Customer,
    DeliveryStatus,
    MessageStatus,
    MobileSession,
    SenderType,
    User,
    UserFacts,
)


@dataclass(slots=True)
class SentMessage:
    """A message as just stored, with the attributes ``message_dict`` and the sent hooks read
    (those of ``models.Message``), built from the inserted values: no model is constructed or
    read back (a Tortoise ``Message(...)`` alone costs ~50 µs)."""

    id: int
    conversation_id: int
    sender_type: SenderType
    sender_key: str
    #: A user row (a page read) or the sender's facts (a message just sent).
    sender_user: User | UserFacts | None
    sender_device: MobileSession | None
    sender_customer: Customer | None
    content: str
    message_type: str
    media_url: str
    file: dict[str, Any] | None
    parent_message_id: int | None
    reply_to_id: int | None
    mentions: list[Any]
    metadata: dict[str, Any]
    is_urgent: bool
    client_msg_id: str | None
    created_at: datetime
    status: MessageStatus = MessageStatus.SENT
    is_edited: bool = False
    edited_at: datetime | None = None
    is_deleted: bool = False
    # A sent hook (outbound delivery to a platform) may set it before the message is
    # serialized and broadcast.
    delivery_status: DeliveryStatus = DeliveryStatus.NONE
    delivery_error: str = ""
    #: Actor keys that must not get the event (logged with it, for replays).
    skip: tuple[str, ...] = ()
    #: The ``chat_message`` event's position in the conversation's log, once stored.
    position: int = 0


@dataclass(frozen=True, slots=True)
class Counters:
    """What a send does to the conversation's counters besides the message counter."""

    #: +1 on the device's unread count (the device did not write it).
    bump_device: bool
    #: Support conversations: staff's unread count goes +1 (the customer side wrote), is reset
    #: (an agent answered), or stays (any other conversation).
    staff: str  # "bump" | "reset" | "keep"
    #: The sender's participant row (user id), whose offset goes down by one; None when the
    #: sender has no row (a device, a customer, staff outside the conversation).
    sender_member: int | None


# -- the SQL, once per dialect ---------------------------------------------------------------

#: The columns a send gives values for, in its parameters' order (``_row``).
_MESSAGE_COLUMNS = (
    "conversation_id", "sender_type", "sender_key", "sender_user_id", "sender_device_id",
    "sender_customer_id", "content", "message_type", "media_url", "file",
    "parent_message_id", "reply_to_id", "mentions", "metadata", "is_urgent",
    "client_msg_id", "created_at",
)
#: PostgreSQL needs the types of parameters that appear in a SELECT list.
_PG_TYPES = (
    "int", "varchar", "varchar", "int", "int", "int", "text", "varchar", "varchar", "jsonb",
    "int", "int", "jsonb", "jsonb", "boolean", "varchar", "timestamptz",
)
#: What every new message is, written in the SQL rather than sent as parameters with each
#: send: sent, neither edited nor deleted, no outbound delivery (a sent hook that starts one
#: runs after the insert). Column, then its literal for SQLite and for PostgreSQL.
_NEW_MESSAGE = (
    ("status", f"'{MessageStatus.SENT.value}'", f"'{MessageStatus.SENT.value}'"),
    ("is_edited", "0", "FALSE"),
    ("is_deleted", "0", "FALSE"),
    ("delivery_status", f"'{DeliveryStatus.NONE.value}'", f"'{DeliveryStatus.NONE.value}'"),
    ("delivery_error", "''", "''"),
)
_COLUMNS_SQL = ", ".join(f'"{c}"' for c in (*_MESSAGE_COLUMNS, *(c for c, _, _ in _NEW_MESSAGE)))

# Parameters: stamp, stamp, device bump (0/1), staff reset (bool), staff bump (0/1), id.
_SQLITE_CONVERSATION = (
    'UPDATE "conversations" SET "total_messages" = "total_messages" + 1, "updated_at" = ?, '
    '"started_at" = COALESCE("started_at", ?), '
    '"device_unread_count" = "device_unread_count" + ?, '
    '"staff_unread_count" = CASE WHEN ? THEN 0 ELSE "staff_unread_count" + ? END, '
    '"event_position" = "event_position" + 1 '
    'WHERE "id" = ? RETURNING "event_position"'
)
_SQLITE_INSERT = (
    f'INSERT INTO "messages" ({_COLUMNS_SQL}) '
    f'VALUES ({", ".join("?" for _ in _MESSAGE_COLUMNS)}, '
    f'{", ".join(sqlite for _, sqlite, _ in _NEW_MESSAGE)}) RETURNING "id"'
)
_SQLITE_SENDER = (
    'UPDATE "participants" SET "unread_offset" = "unread_offset" - 1 '
    'WHERE "conversation_id" = ? AND "user_id" = ?'
)
# Parameters: conversation id, position, message id, skip (JSON or NULL), stamp.
_SQLITE_EVENT = (
    'INSERT INTO "conversation_events" ("conversation_id", "position", "name", "message_id", '
    '"skip", "created_at") VALUES (?, ?, \'chat_message\', ?, ?, ?)'
)

# One statement: $1 conversation id, $2 stamp, $3 device bump, $4 staff reset, $5 staff bump,
# $6 sender's user id (NULL: no row to touch), $7 the event's skip (JSON or NULL), then the
# message's columns.
_PG_SEND = (
    'WITH "c" AS (UPDATE "conversations" SET "total_messages" = "total_messages" + 1, '
    '"updated_at" = $2, "started_at" = COALESCE("started_at", $2), '
    '"device_unread_count" = "device_unread_count" + $3, '
    '"staff_unread_count" = CASE WHEN $4 THEN 0 ELSE "staff_unread_count" + $5 END, '
    '"event_position" = "event_position" + 1 '
    'WHERE "id" = $1 RETURNING "id", "event_position"), '
    # Reads "c", so it runs after the conversation's row is locked (the order mark-read
    # takes the two rows in too: no deadlock).
    '"p" AS (UPDATE "participants" SET "unread_offset" = "unread_offset" - 1 '
    'WHERE "conversation_id" = (SELECT "id" FROM "c") AND "user_id" = $6), '
    f'"i" AS (INSERT INTO "messages" ({_COLUMNS_SQL}) SELECT '
    # The message's stamp is the conversation's, $2: one parameter, encoded once.
    + ", ".join(f"${i + 8}::{t}" for i, t in enumerate(_PG_TYPES[:-1])) + ", $2, "
    + ", ".join(postgres for _, _, postgres in _NEW_MESSAGE)
    + ' FROM "c" RETURNING "id"), '
    '"e" AS (INSERT INTO "conversation_events" ("conversation_id", "position", "name", '
    '"message_id", "skip", "created_at") SELECT "c"."id", "c"."event_position", '
    '\'chat_message\', "i"."id", $7::jsonb, $2 FROM "c", "i") '
    # Always one row, its id NULL when the conversation is gone: pipelined sends (one row per
    # send, ``PostgresTurns``) stay aligned with their results.
    'SELECT (SELECT "id" FROM "i") AS "id", (SELECT "event_position" FROM "c") AS "position"'
)


def _row(message: SentMessage) -> list[Any]:
    """The message's column values, as the database drivers take them."""
    file = None if message.file is None else JSON_DUMPS(message.file)
    mentions, metadata = message.mentions, message.metadata
    return [
        message.conversation_id, message.sender_type.value, message.sender_key,
        message.sender_user.id if message.sender_user is not None else None,
        message.sender_device.id if message.sender_device is not None else None,
        message.sender_customer.id if message.sender_customer is not None else None,
        message.content, message.message_type, message.media_url, file,
        message.parent_message_id, message.reply_to_id,
        # Most messages mention no one and carry no metadata: their JSON is a constant.
        JSON_DUMPS(mentions) if mentions else "[]", JSON_DUMPS(metadata) if metadata else "{}",
        message.is_urgent, message.client_msg_id, message.created_at,
    ]


#: What a send's write yields: the message's id and its event's position.
Stored = tuple[int, int]


async def insert_message(message: SentMessage, counters: Counters) -> int:
    """Store ``message``, its counters and its ``chat_message`` event atomically; returns its
    id once committed and sets ``message.position``. A duplicate ``client_msg_id`` raises
    Tortoise's IntegrityError, and nothing is changed."""
    # One coroutine from here to the write (each frame more is resumed at every wait).
    # ``get_connection``'s own look-up (the context's, where a transaction's client is
    # found), without the import statement it runs at every call (~9,000 instructions).
    client = require_context().connections.get("default")
    staff_reset = counters.staff == "reset"
    staff_bump = 1 if counters.staff == "bump" else 0
    device_bump = 1 if counters.bump_device else 0
    values = _row(message)
    skip = JSON_DUMPS(sorted(message.skip)) if message.skip else None
    stored: Stored
    if client.capabilities.dialect == "postgres":
        values.pop()  # the stamp: $2
        args = [message.conversation_id, message.created_at, device_bump, staff_reset,
                staff_bump, counters.sender_member, skip, *values]
        if isinstance(client, TransactionalDBClient):  # inside a transaction: in it, alone
            stored = _postgres_id(args, (await client.execute_query(_PG_SEND, args))[1][0])
        else:
            stored = await _PG_TURNS.send(client, args)
        message.id, message.position = stored
        return message.id
    # The stamp is four of the send's parameters: formatted once, here.
    stamp = sqlite_stamp(message.created_at)
    values[-1] = stamp
    conversation = [stamp, stamp, device_bump, staff_reset, staff_bump,
                    message.conversation_id]
    sender = (None if counters.sender_member is None
              else [message.conversation_id, counters.sender_member])
    send = (conversation, values, sender, [skip, stamp])
    if isinstance(client, TransactionalDBClient):  # inside a transaction: on its connection
        stored = await _GROUP_COMMIT.submit(client, send)
    else:
        result = await _INLINE.send(client, send)
        if result is None:  # another connection is writing: wait for it off the loop
            stored = await _GROUP_COMMIT.submit(client, send)
        elif isinstance(result, tuple):
            stored = result
        else:
            raise _tortoise_error(result)
    message.id, message.position = stored
    return message.id


def _postgres_id(args: list[Any], row: Any) -> Stored:
    if row["id"] is None:
        raise OperationalError(f"conversation {args[0]} is gone")
    return int(row["id"]), int(row["position"])


class PostgresTurns:
    """PostgreSQL sends of one turn of the event loop, written together: one pipelined round
    trip on one connection, one implicit transaction, so one commit (one WAL flush) for all
    of them (asyncpg's ``fetchmany``). A lone send is its statement, as before, written by
    its sender (``send``).

    The sends of a turn are in distinct conversations (``Sequencer`` holds a conversation
    from its insert to its publish); they run in conversation id order, so two nodes' batches
    lock conversation rows in the same order. When the batch fails (a duplicate
    ``client_msg_id`` rolls it all back), each send runs again alone, with its own outcome.

    The connection is one of those the send path holds (``HeldConnection``) when one is
    free, else one from the pool as any query's: a pool's acquire and release cost about as
    much CPU as the round trip itself (asyncpg's release is a task of its own).
    """

    def __init__(self) -> None:
        #: The sends of this turn of the loop, gathered behind the first (their statement's
        #: arguments).
        self._turn: Turn[list[Any], Stored] = Turn()
        #: Batches being written (kept referenced until done).
        self._writing: set[asyncio.Task[None]] = set()
        #: The connections the writes hold, tried in turn, each with its own prepared
        #: statement: a write takes about a millisecond to come back under load, so the next
        #: turn's write often finds the first busy (and a pool connection costs an acquire, a
        #: release and the statement cache's look-up). The first from a pool of two or more,
        #: the others from larger pools only: of the default ten, three for the writes,
        #: up to three for the connect's reads (``lookups``), four for everything else.
        self.held = tuple(HeldConnection(min_pool=size) for size in (2, 8, 10))

    async def send(self, client: BaseDBAsyncClient, args: list[Any]) -> Stored:
        """The send's id and position, once committed, or its own error.

        The first send of a turn of the loop leads it while later sends join its batch
        (``backend/storage/turns.py``). Alone then, the usual case below saturation, it
        writes itself, in its sender's task. With others, the batch is written by a task
        of its own (``_write``), which one sender's cancellation does not stop. A sender that
        gives up (cancelled) before the write is left out: nothing of it is written."""
        turn = self._turn
        if turn.leading:
            return await turn.join(args)
        turn.open()
        try:
            await rest_of_turn()
        except BaseException:  # cancelled before the write: the others are written
            self._start(client, turn.close())
            raise
        batch = turn.close()
        if batch:
            own: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
            batch.append((args, own))
            self._start(client, batch)
            return await own
        client.log.debug("%s (x1)", _PG_SEND)
        try:
            row = (await self._fetch(client, [args]))[0]
        except _ROLLED_BACK:  # refused: again through Tortoise's client, which raises its
            row = (await client.execute_query(_PG_SEND, args))[1][0]  # errors as Tortoise's
        return _postgres_id(args, row)

    def _start(self, client: BaseDBAsyncClient,
               batch: list[tuple[list[Any], asyncio.Future[Stored]]]) -> None:
        if not batch:
            return
        # The loop's own create_task: ensure_future's checks are four Python calls more.
        task = asyncio.get_running_loop().create_task(self._write(client, batch))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, client: BaseDBAsyncClient,
                     batch: list[tuple[list[Any], asyncio.Future[Stored]]]) -> None:
        try:
            if len(batch) > 1:
                batch.sort(key=lambda send: int(send[0][0]))
            try:
                client.log.debug("%s (x%d)", _PG_SEND, len(batch))
                rows = await self._fetch(client, [a for a, _ in batch])
            except _ROLLED_BACK:  # one send's error rolled them all back: each alone
                pass
            except Exception as exc:  # the connection failed: the batch may have committed
                _fail(batch, exc)
                return
            else:
                for (args, future), row in zip(batch, rows, strict=True):
                    _settle(future, args, row)
                return
            # Each alone, through Tortoise's client: its errors as Tortoise raises them.
            for args, future in batch:
                try:
                    _, alone = await client.execute_query(_PG_SEND, args)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    _settle(future, args, alone[0])
        except BaseException as exc:  # cancelled (the node stops): nobody waits forever
            _fail(batch, exc)
            raise

    async def _fetch(self, client: BaseDBAsyncClient, sends: list[list[Any]]) -> list[Any]:
        """The sends' rows, in one round trip: on a held connection when one is free."""
        for held in self.held:
            connection = await held.take(client)
            if connection is not None:
                break
        else:
            async with client.acquire_connection() as pooled:
                return await _pipelined(pooled, sends)
        try:
            statement = held.statement
            if statement is None and held.uses > 1:
                # Sends keep coming: the statement prepared on the held connection, once
                # while it is held (asyncpg's own cache costs a look-up and three coroutine
                # frames more per execution). A lone send after a pause (the connection
                # taken for it alone) prepares nothing.
                statement = held.statement = await connection.prepare(_PG_SEND)
            if statement is None:
                rows = await _pipelined(connection, sends)
            elif len(sends) == 1:
                rows = [await prepared_row(statement, sends[0])]
            else:
                rows = list(await statement.fetchmany(sends))
        except _ROLLED_BACK:
            held.statement = None  # it may be what failed (a schema changed): prepared anew
            held.give_back(connection)
            raise
        except BaseException:
            await held.drop(connection)  # it may be broken: the pool decides
            raise
        held.give_back(connection)
        return rows

    async def close(self) -> None:
        for held in self.held:
            await held.close()


async def _pipelined(connection: Any, sends: list[list[Any]]) -> list[Any]:
    if len(sends) == 1:
        return [await connection.fetchrow(_PG_SEND, *sends[0])]
    return list(await connection.fetchmany(_PG_SEND, sends))


#: A batch that failed with one of these was not written at all: PostgreSQL refused a statement
#: (and rolled the transaction back), or a value could not be encoded before anything was sent.
_ROLLED_BACK = (asyncpg.PostgresError, ValueError, TypeError)


def _fail(batch: list[tuple[Any, asyncio.Future[Any]]], exc: BaseException) -> None:
    """Every sender of ``batch`` still waiting hears ``exc`` (a cancellation cancels them)."""
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)


def _settle(future: asyncio.Future[Stored], args: list[Any], row: Any) -> None:
    if future.done():
        return  # its sender gave up; the message is stored all the same
    try:
        future.set_result(_postgres_id(args, row))
    except OperationalError as exc:
        future.set_exception(exc)


_PG_TURNS = PostgresTurns()


async def close() -> None:
    """The database is closing: close the send path's own SQLite connection, and hand the
    PostgreSQL connection it holds back to the pool."""
    _INLINE.close()
    await _PG_TURNS.close()


# -- SQLite: on the loop's thread, or group commit in the worker thread ------------------------

#: One send's parameters: the conversation's UPDATE, the INSERT, the sender's UPDATE (or None),
#: the event's skip and stamp.
_Send = tuple[list[Any], list[Any], list[Any] | None, list[Any]]
#: Sends per job at most: bounds how long one job holds the connection.
MAX_BATCH = 256


def _write_batch(db: sqlite3.Connection, sends: list[_Send]) -> list[Stored | Exception]:
    """Runs in aiosqlite's worker thread: every send of the batch in one transaction, each in
    a savepoint of its own (a duplicate ``client_msg_id``, or a value the driver refuses,
    fails that send alone). A send alone in its transaction needs no savepoint: its failure
    rolls the transaction back (two statements fewer, the usual case below saturation). One
    cursor runs them all (``Connection.execute`` makes and registers a cursor per call)."""
    run = db.cursor().execute
    run("BEGIN IMMEDIATE")
    try:
        if len(sends) == 1:
            try:
                results: list[Stored | Exception] = [_write_send(run, sends[0])]
            except Exception as exc:
                run("ROLLBACK")
                return [exc]
        else:
            results = []
            for send in sends:
                run("SAVEPOINT send")
                try:
                    results.append(_write_send(run, send))
                except Exception as exc:
                    run("ROLLBACK TO send")
                    results.append(exc)
                run("RELEASE send")
        run("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return results


def _write_send(run: Callable[..., sqlite3.Cursor], send: _Send) -> Stored:
    """One send's statements, in the caller's transaction (``run``: its cursor's
    ``execute``)."""
    conversation, values, sender, (skip, stamp) = send
    # fetchall: the statement runs to its end, nothing stays open on the connection
    counter = run(_SQLITE_CONVERSATION, conversation).fetchall()
    if not counter:
        raise sqlite3.IntegrityError(f"conversation {conversation[-1]} is gone")
    position = int(counter[0][0])
    message_id = int(run(_SQLITE_INSERT, values).fetchall()[0][0])
    if sender is not None:
        run(_SQLITE_SENDER, sender)
    run(_SQLITE_EVENT, [conversation[-1], position, message_id, skip, stamp])
    return message_id, position


class InlineWrites:
    """SQLite sends written on the event loop's thread, by a connection of their own.

    Sends submitted in one turn of the loop are written together, in one transaction, by the
    first of them once the rest of that turn has run (``send``): a commit is ~12 page writes
    (``pwrite``) whatever the number of sends in it, so under load, when several messages arrive
    in one turn, the turn's sends share it; a lone send waits for nothing but the rest of its
    turn. It never waits for a lock: when Tortoise's connection is at work, or another process
    is writing (``busy_timeout`` 0), the batch's sends resolve to None and take the worker
    thread's path, behind Tortoise's connection lock. Its ``wal_autocheckpoint`` is the
    writer's backstop (``backend/storage/checkpoints.py``). Not for an in-memory database, where a
    second connection would open another database.
    """

    def __init__(self) -> None:
        self._client: BaseDBAsyncClient | None = None
        self._connection: sqlite3.Connection | None = None
        #: The sends of this turn of the loop, gathered behind the first.
        self._turn: Turn[_Send, Stored | Exception | None] = Turn()

    async def send(self, client: BaseDBAsyncClient, send: _Send) -> Stored | Exception | None:
        """The send's id and position, or its own error; None when it must wait for another
        writer. The first send of a turn leads it (``backend/storage/turns.py``): once the rest
        of the turn has run, it writes its own send and those that joined,
        in its sender's task; the others' futures are settled. A sender that gives up before
        the write is left out."""
        turn = self._turn
        if turn.leading:
            return await turn.join(send)
        turn.open()
        try:
            await rest_of_turn()
        except BaseException:  # cancelled before the write: the others are written
            self._flush(client, turn.close())
            raise
        batch = turn.close()
        if not batch:  # alone in its turn, the usual case below saturation
            return self._write(client, [send])[0]
        own: asyncio.Future[Stored | Exception | None] = (
            asyncio.get_running_loop().create_future())
        self._flush(client, [(send, own), *batch])
        return own.result()

    def _flush(self, client: BaseDBAsyncClient,
               batch: list[tuple[_Send, asyncio.Future[Stored | Exception | None]]]) -> None:
        for first in range(0, len(batch), MAX_BATCH):
            chunk = batch[first:first + MAX_BATCH]
            try:
                results = self._write(client, [send for send, _ in chunk])
            except BaseException as exc:  # not the sends' own errors: every sender hears it
                _fail(chunk, exc)
                continue
            for (_, future), result in zip(chunk, results, strict=True):
                future.set_result(result)

    def _write(self, client: BaseDBAsyncClient,
               sends: list[_Send]) -> list[Stored | Exception | None]:
        # Tortoise's connection is at work (a query, or a transaction that may have read
        # already: a commit of ours now would make its first write fail): wait for it.
        connection = (None if isinstance(client, TransactionalDBClient)
                      or sqlite_lock(client).locked()
                      else self._connection_for(client))
        if connection is None:
            return [None] * len(sends)
        client.log.debug("%s; %s; %s; %s (x%d)", _SQLITE_CONVERSATION, _SQLITE_INSERT,
                         _SQLITE_SENDER, _SQLITE_EVENT, len(sends))
        try:
            return list(_write_batch(connection, sends))
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                return [None] * len(sends)
            return [exc] * len(sends)

    def _connection_for(self, client: BaseDBAsyncClient) -> sqlite3.Connection | None:
        if client is not self._client:  # the first send, or the database was reopened
            self.close()
            self._client = client
            connection = open_beside(client)
            if connection is None:
                return None
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._client = self._connection = None


def _tortoise_error(exc: BaseException) -> BaseException:
    """A driver error as Tortoise raises it (the doors and backend/service/faults.py expect
    Tortoise's exceptions, with the driver's as their argument)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return OperationalError(exc)
    return exc


class GroupCommit:
    """SQLite's send path: one job on aiosqlite's worker thread for all the sends waiting.

    Every aiosqlite call is a job handed to its thread and a wake-up of the event loop when it
    is done; Tortoise's transaction makes six of them per send. Here a send alone is one job,
    run by its sender; sends that arrive while a job runs wait, and go together into the next
    one, run by a flusher task: one BEGIN...COMMIT (``_write_batch``), one hand-off to the
    thread, one wake-up for all of them. In-process, 50 senders at once cost ~0.1 ms of CPU
    per send this way instead of ~0.4. Each send learns its id, or its own error, after the
    commit; a sender that gives up (a cancelled task) does not stop the others.
    """

    def __init__(self) -> None:
        #: Sends waiting for the next job, with the futures their senders await.
        self._queue: list[tuple[_Send, asyncio.Future[Stored]]] = []
        #: A job is running (inline or the flusher's): new sends queue.
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, client: BaseDBAsyncClient, send: _Send) -> Stored:
        if self._busy:
            future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
            self._queue.append((send, future))
            return await future
        # Nothing running: this send is the job (no task; cancelling it concerns it alone).
        self._busy = True
        try:
            result = (await self._job(client, [send]))[0]
        finally:
            self._next(client)
        if isinstance(result, tuple):
            return result
        raise _tortoise_error(result)

    def _next(self, client: BaseDBAsyncClient) -> None:
        """A job ended: the sends that queued meanwhile go next, all in one job."""
        if not self._queue:
            self._busy = False
        elif self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush(client))

    async def _flush(self, client: BaseDBAsyncClient) -> None:
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._write(client, batch)
        finally:
            self._flusher = None
            self._busy = False

    @staticmethod
    async def _job(client: BaseDBAsyncClient, sends: list[_Send]) -> list[Stored | Exception]:
        try:
            # Tortoise's connection lock: nothing else runs on the connection meanwhile.
            async with client.acquire_connection() as connection:
                client.log.debug("%s; %s; %s; %s (x%d)", _SQLITE_CONVERSATION,
                                 _SQLITE_INSERT, _SQLITE_SENDER, _SQLITE_EVENT, len(sends))
                # aiosqlite runs each call as a job on its thread; this hands it ours
                # (backend/compat/tortoise.py; tests/test_message_path.py runs this path).
                return await run_on_sqlite_thread(connection, _write_batch, sends)
        except sqlite3.Error as exc:  # the whole job failed: as Tortoise raises it
            raise _tortoise_error(exc) from exc

    async def _write(self, client: BaseDBAsyncClient,
                     batch: list[tuple[_Send, asyncio.Future[Stored]]]) -> None:
        try:
            results = await self._job(client, [send for send, _ in batch])
        except BaseException as exc:  # the whole batch failed (or the flusher was cancelled)
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its sender gave up; the message is stored all the same
            if isinstance(result, tuple):
                future.set_result(result)
            else:
                future.set_exception(_tortoise_error(result))


_INLINE = InlineWrites()
_GROUP_COMMIT = GroupCommit()
