"""The send transaction's storage (``backend/storage/sends.py``) on both databases: SQLite's
sends on the loop's own connection and in group commits, PostgreSQL's pipelined turns, the
connections they keep and their prepared statement, and how each send fails alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from backend.compat.tortoise import prepared_row
from backend.service.chat import ChatService
from backend.service.clock import now
from backend.service.unread import members_unread
from backend.settings import Settings
from backend.storage import sends
from backend.storage.sends import Counters, SentMessage, insert_message
from models import (
    Conversation,
    Message,
    SenderType,
    User,
)
from tests.support.in_process import (
    RecordingSink,
    Statements,
    group_of,
    users,
)


def sent(conversation_id: int, author: User, client_msg_id: str | None = None,
         content: str = "x") -> SentMessage:
    return SentMessage(id=0, conversation_id=conversation_id, sender_type=SenderType.USER,
                       sender_key=f"user:{author.id}", sender_user=author, sender_device=None,
                       sender_customer=None, content=content, message_type="text", media_url="",
                       file=None, parent_message_id=None, reply_to_id=None, mentions=[],
                       metadata={}, is_urgent=False, client_msg_id=client_msg_id,
                       created_at=now())


async def test_sqlite_sends_fail_alone_on_the_loops_own_connection(sqlite_database: str) -> None:
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(3)
    x, y = await group_of(chat, people), await group_of(chat, people)
    keep = Counters(bump_device=True, staff="keep", sender_member=people[0].id)
    results = []
    for message in (sent(x, people[0], "k"), sent(x, people[0], "k"), sent(y, people[0]),
                    sent(y, people[0], content="lone \ud800 surrogate"),
                    sent(y, people[0], "after")):
        try:
            results.append(await insert_message(message, keep))
        except Exception as exc:  # each send's own outcome is the point
            results.append(exc)
    assert [type(r) for r in results] == [int, IntegrityError, int, UnicodeEncodeError, int]
    assert results[0] < results[2] < results[4]
    totals = dict(await Conversation.filter(id__in=[x, y]).values_list("id", "total_messages"))
    assert totals == {x: 1, y: 2}
    assert await members_unread(x) == {people[0].id: 0, people[1].id: 1, people[2].id: 1}


async def test_sqlite_sends_of_one_turn_share_one_transaction(sqlite_database: str) -> None:
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(3)
    x, y = await group_of(chat, people), await group_of(chat, people)
    keep = Counters(bump_device=True, staff="keep", sender_member=people[0].id)
    await insert_message(sent(x, people[0]), keep)  # opens the send path's connection
    transactions: list[str] = []
    inline = sends._INLINE._connection
    assert inline is not None
    inline.set_trace_callback(
        lambda sql: transactions.append(sql) if sql.startswith("BEGIN") else None)
    try:
        # Submitted in one turn: one transaction, each send with its own outcome, and a sender
        # that gives up before the write leaves nothing behind.
        tasks = [asyncio.ensure_future(insert_message(message, keep)) for message in (
            sent(x, people[0], "k"), sent(x, people[0], "k"), sent(y, people[0]),
            sent(y, people[0], "gives up"), sent(y, people[0], content="lone \ud800 surrogate"),
            sent(y, people[0], "after"))]
        await asyncio.sleep(0)  # each task reaches its submit
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        inline.set_trace_callback(None)
    assert [type(r) for r in results] == [int, IntegrityError, int, asyncio.CancelledError,
                                          UnicodeEncodeError, int]
    assert transactions == ["BEGIN IMMEDIATE"]
    assert not await Message.filter(conversation_id=y, client_msg_id="gives up").exists()
    totals = dict(await Conversation.filter(id__in=[x, y]).values_list("id", "total_messages"))
    assert totals == {x: 2, y: 2}
    # The first send of a turn leads it: cancelled before the write, it is left out and the
    # others are written all the same.
    tasks = [asyncio.ensure_future(insert_message(message, keep)) for message in (
        sent(x, people[0], "leader gives up"), sent(y, people[0]))]
    await asyncio.sleep(0)
    tasks[0].cancel()
    left, written = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(left, asyncio.CancelledError) and isinstance(written, int)
    assert not await Message.filter(client_msg_id="leader gives up").exists()
    # Alone in its turn, a send is a transaction of its own, at once.
    assert isinstance(await insert_message(sent(y, people[0]), keep), int)


async def test_postgres_sends_of_one_turn_share_one_round_trip(
        postgres_database: str, statements: Statements) -> None:
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(3)
    x, y, z = [await group_of(chat, people) for _ in range(3)]
    keep = Counters(bump_device=True, staff="keep", sender_member=people[0].id)

    async def turn(*messages: SentMessage, gives_up: int | None = None) -> list[Any]:
        tasks = [asyncio.ensure_future(insert_message(m, keep)) for m in messages]
        await asyncio.sleep(0)  # each task reaches its submit
        if gives_up is not None:
            tasks[gives_up].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    before = statements.count
    ids = await turn(sent(z, people[0]), sent(x, people[0]), sent(y, people[0]),
                     sent(x, people[0]))
    assert statements.count - before == 1  # one pipelined round trip for the four
    assert all(isinstance(i, int) for i in ids) and ids[1] < ids[3]  # x's two, in order
    # A duplicate rolls the batch back: each send runs again alone, with its own outcome;
    # a sender that gave up before the write leaves nothing behind.
    results = await turn(sent(x, people[0], "k"), sent(y, people[0], "k"),
                         sent(y, people[0], "k"), sent(z, people[0], "gives up"),
                         gives_up=3)
    assert [type(r) for r in results] == [int, int, IntegrityError, asyncio.CancelledError]
    assert not await Message.filter(client_msg_id="gives up").exists()
    totals = dict(await Conversation.filter(id__in=[x, y, z]).values_list("id",
                                                                           "total_messages"))
    assert totals == {x: 3, y: 2, z: 1}
    assert await members_unread(x) == {people[0].id: 0, people[1].id: 3, people[2].id: 3}
    # A conversation gone: that send alone fails, as before.
    gone, kept = await turn(sent(z + 1000, people[0]), sent(y, people[0]))
    assert isinstance(gone, OperationalError) and isinstance(kept, int)
    # The first send of a turn leads it: cancelled before the write, it is left out and the
    # others are written all the same.
    left, written = await turn(sent(x, people[0], "leader gives up"), sent(y, people[0]),
                               gives_up=0)
    assert isinstance(left, asyncio.CancelledError) and isinstance(written, int)
    assert not await Message.filter(client_msg_id="leader gives up").exists()
    # Alone in its turn, a send is written by its sender: refused as Tortoise refuses it,
    # the conversation gone as in a batch.
    before = statements.count
    assert isinstance(await insert_message(sent(y, people[0]), keep), int)
    assert statements.count - before == 1
    with pytest.raises(IntegrityError):
        await insert_message(sent(y, people[0], "k"), keep)
    with pytest.raises(OperationalError):
        await insert_message(sent(z + 1000, people[0]), keep)


async def test_a_pooled_postgres_connection_goes_back_without_a_reset_query(
        postgres_database: str) -> None:
    """Tortoise acquires and releases a pool connection for every query; released, a
    connection sends nothing more (asyncpg's default reset query was a round trip each)."""
    import asyncpg

    client = connections.get("default")
    await asyncio.gather(*(client.execute_query(f"SELECT {n} AS marker") for n in range(3)))
    watcher = await asyncpg.connect(postgres_database)
    try:
        rows = await watcher.fetch(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    finally:
        await watcher.close()
    last = [row["query"] for row in rows]
    assert last and all("AS marker" in query for query in last), last


async def test_a_prepared_row_is_fetchrow_s_row_and_error(postgres_database: str) -> None:
    """``prepared_row`` answers as asyncpg's ``fetchrow``: the row, None for no row, and
    upstream's own error for a statement whose connection is closed."""
    import asyncpg

    connection = await asyncpg.connect(postgres_database)
    try:
        statement = await connection.prepare("SELECT $1::int AS n WHERE $1::int > 0")
        assert await prepared_row(statement, [7]) == await statement.fetchrow(7)
        assert (await prepared_row(statement, [7]))["n"] == 7
        assert await prepared_row(statement, [0]) is None
    finally:
        await connection.close()
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        await prepared_row(statement, [7])


class PipelineClient:
    """A stand-in for Tortoise's asyncpg client (this module's unit test): its pipelined
    batch fails with ``failure``; single statements answer with the next id."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.singles: list[int] = []
        self.log = logging.getLogger("test.pipeline")

    @contextlib.asynccontextmanager
    async def acquire_connection(self) -> AsyncIterator[Any]:
        yield self

    async def fetchmany(self, query: str, args: list[list[Any]]) -> list[Any]:
        raise self.failure

    async def execute_query(self, query: str, args: list[Any]) -> tuple[int, list[Any]]:
        self.singles.append(args[0])
        return 1, [{"id": 100 + len(self.singles), "position": len(self.singles)}]


@pytest.mark.parametrize(("failure", "retried"), [
    (ValueError("a value the driver cannot encode"), True),
    (ConnectionResetError("the connection went away"), False),
])
async def test_a_failed_postgres_batch_is_retried_only_when_nothing_was_written(
        failure: Exception, retried: bool) -> None:
    client = PipelineClient(failure)
    turns = sends.PostgresTurns()
    futures = [asyncio.ensure_future(turns.send(client, [cid, "rest"]))  # type: ignore[arg-type]
               for cid in (3, 1, 2)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    if retried:  # refused before anything was sent: each alone, in conversation order
        assert client.singles == [1, 2, 3] and results == [(103, 3), (101, 1), (102, 2)]
    else:  # it may have committed: no second write, every sender hears the failure
        assert client.singles == [] and results == [failure] * 3


class CountingPool:
    """A stand-in for Tortoise's asyncpg client (this module's unit test): counts the
    connections taken from its pool and handed back; each send answers with the next id."""

    def __init__(self, size: int) -> None:
        self.pool_maxsize = size
        self.taken = self.returned = 0
        self.sent = self.prepared = 0
        self.log = logging.getLogger("test.pool")
        #: While set, a send waits for it (a write under way), having set ``waiting``.
        self.hold: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    def acquire_connection(self) -> CountingPool:
        # As Tortoise's pool wrapper: a plain object, handed back only by its __aexit__.
        return self

    async def __aenter__(self) -> CountingPool:
        self.taken += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.returned += 1

    def is_closed(self) -> bool:
        return False

    async def fetchrow(self, query: str, *args: Any) -> dict[str, int]:
        self.sent += 1
        sent = self.sent
        if self.hold is not None:
            self.waiting.set()
            await self.hold.wait()
        return {"id": 100 + sent, "position": sent}

    async def prepare(self, query: str) -> PreparedSend:
        self.prepared += 1
        return PreparedSend(self, query)


class PreparedSend:
    """``CountingPool``'s prepared statement: its sends are the pool's, counted there."""

    def __init__(self, pool: CountingPool, query: str) -> None:
        self.pool, self.query = pool, query

    async def fetchrow(self, *args: Any) -> dict[str, int]:
        return await self.pool.fetchrow(self.query, *args)


@pytest.mark.parametrize(("size", "taken"), [(10, 1), (1, 3)])
async def test_postgres_sends_keep_one_connection_out_of_a_pool(size: int, taken: int) -> None:
    client = CountingPool(size)
    turns = sends.PostgresTurns()
    for cid in (1, 2, 3):  # one after the other, each alone in its turn
        await turns.send(client, [cid, "rest"])  # type: ignore[arg-type]
    # Kept between sends (a pool's acquire and release cost about a round trip's CPU),
    # except from a pool of one, which everything else needs too.
    assert (client.sent, client.taken) == (3, taken)
    assert client.returned == client.taken - (1 if size > 1 else 0)
    # The held connection's second send prepares the statement, its third reuses it; a
    # connection taken for one send alone prepares nothing.
    assert client.prepared == (1 if size > 1 else 0)
    await turns.close()  # the database closes: handed back, or the pool's close would wait
    assert client.returned == client.taken


@pytest.mark.parametrize(("size", "held"), [(10, 3), (8, 2), (2, 1)])
async def test_postgres_writes_in_flight_together_each_keep_a_connection(
        size: int, held: int) -> None:
    """Under load a write is still under way when the next turn's write starts: up to three
    are written on connections the send path keeps (each with its statement, prepared at its
    second write), as many as the pool's size leaves room for; one more takes the pool's."""
    client = CountingPool(size)
    turns = sends.PostgresTurns()

    async def together(cids: range) -> list[tuple[int, int]]:
        """A write per conversation, each alone in its turn, all under way at once."""
        client.hold = asyncio.Event()
        writes = []
        for cid in cids:
            client.waiting.clear()
            writes.append(asyncio.ensure_future(
                turns.send(client, [cid, "rest"])))  # type: ignore[arg-type]
            await client.waiting.wait()
        assert client.returned == returned  # none handed back while its write is under way
        client.hold.set()
        return await asyncio.gather(*writes)

    returned = 0
    stored = await together(range(1, 6))
    assert sorted(stored) == [(101 + n, 1 + n) for n in range(5)]
    assert client.taken == 5
    assert client.returned == 5 - held  # the writes past the kept ones used the pool's
    assert client.prepared == 0  # a kept connection prepares at its second write
    returned = client.returned
    await together(range(6, 6 + held))  # each kept one's second write, together again
    assert (client.taken, client.prepared) == (5, held)
    await turns.close()
    assert client.returned == client.taken


async def test_a_postgres_connection_in_use_at_close_goes_back_after_its_write() -> None:
    client = CountingPool(10)
    turns = sends.PostgresTurns()
    await turns.send(client, [1, "rest"])  # type: ignore[arg-type]  # now held
    client.hold = asyncio.Event()
    writing = asyncio.ensure_future(turns.send(client, [2, "rest"]))  # type: ignore[arg-type]
    await client.waiting.wait()  # the write is under way on the held connection
    await turns.close()
    assert client.returned == 0  # still in use: not handed back under the write
    client.hold.set()
    assert await writing == (102, 2)
    await turns.close()  # waits for what is being handed back
    assert client.returned == client.taken == 1  # handed back once the write ended


async def test_sqlite_sends_wait_for_another_writer_in_one_group_commit(
        sqlite_database: str) -> None:
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(3)
    x, y = await group_of(chat, people), await group_of(chat, people)
    keep = Counters(bump_device=True, staff="keep", sender_member=people[0].id)
    # Another connection holds the write lock: the sends must not wait on the loop's thread;
    # they go to the worker thread, the first alone, the next four queued together into one
    # transaction in which the duplicate and the refused text fail alone, and a sender that
    # gives up is still stored (it was committed with the others).
    other_writer = sqlite3.connect(sqlite_database.removeprefix("sqlite://"),
                                   isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")
    try:
        first = asyncio.ensure_future(insert_message(sent(x, people[0], "k"), keep))
        queued = [asyncio.ensure_future(insert_message(message, keep)) for message in (
            sent(x, people[0], "k"), sent(y, people[0]), sent(y, people[0], "gives up"),
            sent(y, people[0], content="lone \ud800 surrogate"))]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(task.done() for task in queued)
        queued[2].cancel()
    finally:
        other_writer.execute("COMMIT")
        other_writer.close()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[3], asyncio.CancelledError)
    assert isinstance(results[4], UnicodeEncodeError)
    assert await Message.filter(conversation_id=y, client_msg_id="gives up").exists()
    totals = dict(await Conversation.filter(id__in=[x, y]).values_list("id", "total_messages"))
    assert totals == {x: 1, y: 2}


async def test_a_sqlite_send_waits_for_an_open_tortoise_transaction(
        sqlite_database: str) -> None:
    """A transaction that has read must be able to write: no send commits in between."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(2)
    cid = await group_of(chat, people)
    keep = Counters(bump_device=True, staff="keep", sender_member=people[0].id)
    go = asyncio.Event()

    async def send_when_told() -> int:
        await go.wait()
        return await insert_message(sent(cid, people[0]), keep)

    send = asyncio.ensure_future(send_when_told())  # made outside the transaction's context
    async with in_transaction():
        before = (await Conversation.get(id=cid)).total_messages
        go.set()
        await asyncio.sleep(0.05)
        assert not send.done()
        await Conversation.filter(id=cid).update(title="renamed")
    assert isinstance(await send, int)
    conversation = await Conversation.get(id=cid)
    assert (conversation.title, conversation.total_messages) == ("renamed", before + 1)

