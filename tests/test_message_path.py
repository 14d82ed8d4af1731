"""The per-message path (issue 8): one database job per send whatever the conversation's size,
unread counts derived and exact, publish order equal to id order, coalesced inbox updates,
cached write permission that a change revokes at once, and the migration to derived counts.

The first tests run the chat service in this process over a database of their own (SQLite and
PostgreSQL), to count the statements a send issues; the others drive the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from tortoise import connections
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from backend.compat.tortoise import prepared_row
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.clock import now
from backend.service.errors import ChatError
from backend.service.events import Event
from backend.service.grants import Grants
from backend.service.inbox import WINDOW_SECONDS
from backend.service.ordering import Sequencer
from backend.service.unread import members_unread
from backend.settings import Settings
from backend.storage import sends
from backend.storage.database import close_database, open_database, tortoise_config
from backend.storage.sends import Counters, SentMessage, insert_message
from models import (
    Block,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Message,
    MessageStatus,
    Participant,
    SenderType,
    User,
)
from tests.support.client import Api
from tests.support.cluster import Cluster
from tests.support.services import Postgres
from tests.support.statements import listening
from tests.test_raw_support import rest_send
from tests.test_rest_connections import direct_conversation
from tests.test_socketio_helpers import Client, chat_client, group, ok, refused

V1 = "/api/v1/chat"


# -- the service in this process -------------------------------------------------------------


class RecordingSink:
    """An EventSink that keeps what is published, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, *, here_only: bool = False) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


class RoomTable:
    """The service's ports to the other nodes, as the fan-out manager implements them: who is
    in which room on this node (``Occupancy``), and controls run here (``ControlBus``)."""

    def __init__(self) -> None:
        self.room_members: dict[str, dict[str, Any]] = {}
        self.controls: dict[str, Any] = {}

    def on_control(self, name: str, handler: Any) -> None:
        self.controls[name] = handler

    async def broadcast(self, name: str, data: dict[str, Any]) -> None:
        await self.controls[name](data)

    def occupied(self, room: str) -> bool:
        return bool(self.room_members.get(room))

    def any_occupied(self, rooms: tuple[str, ...]) -> bool:
        return any(self.occupied(room) for room in rooms)


class Statements(logging.Handler):
    """Counts the SQL statements Tortoise's database clients and the connect's reads
    (backend/storage/lookups.py) issue (they log each one), and keeps their text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.sql: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.sql.append(record.getMessage())


@pytest.fixture
def statements() -> Iterator[Statements]:
    with listening(Statements()) as handler:
        yield handler


def settings_for(url: str, work_dir: Path) -> Settings:
    return Settings.from_env({"DATABASE_URL": url, "JWT_SECRET": "s" * 40,
                              "DATA_DIR": str(work_dir)})


def fresh_tortoise() -> None:
    """Tortoise caches each model's INSERT per connection name for the process: one test's
    SQLite placeholders must not reach the next one's PostgreSQL."""
    EXECUTOR_CACHE.clear()


@contextlib.asynccontextmanager
async def opened(url: str, work_dir: Path) -> AsyncIterator[str]:
    """``url`` migrated and open in this process (Tortoise)."""
    fresh_tortoise()
    await open_database(settings_for(url, work_dir), apply_migrations=True)
    try:
        yield url
    finally:
        await close_database()


@pytest.fixture
async def database(database_url: str, work_dir: Path) -> AsyncIterator[str]:
    async with opened(database_url, work_dir) as url:
        yield url


@pytest.fixture
async def sqlite_database(work_dir: Path) -> AsyncIterator[str]:
    url = f"sqlite://{work_dir / f'in-process-{uuid.uuid4().hex[:8]}.sqlite3'}"
    async with opened(url, work_dir):
        yield url


@pytest.fixture
async def postgres_database(postgres: Postgres, work_dir: Path) -> AsyncIterator[str]:
    name, url = await postgres.create_database()
    try:
        async with opened(url, work_dir):
            yield url
    finally:
        await postgres.drop_database(name)


async def users(n: int) -> list[User]:
    tag = uuid.uuid4().hex[:8]
    await User.bulk_create([User(email=f"{tag}-{i}@example.com", username=f"{tag}-{i}",
                                 password_hash="x") for i in range(n)])
    return list(await User.filter(email__startswith=f"{tag}-").order_by("id"))


async def group_of(chat: ChatService, people: list[User]) -> int:
    view = await chat.create_conversation(Actor.of_user(people[0]), title="g", kind="group",
                                          participant_ids=[u.id for u in people[1:]])
    return int(view["id"])


async def test_a_send_is_one_statement_whatever_the_number_of_participants(
    database: str, statements: Statements
) -> None:
    sink, rooms = RecordingSink(), RoomTable()
    chat = ChatService(sink, Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    chat.attach_nodes(rooms, rooms, clustered=False)
    per_send = {}
    for size in (2, 300):
        people = await users(size)
        cid = await group_of(chat, people)
        sender = Actor.of_user(people[0])
        await chat.send_message(sender, cid, {"content": "first"})  # loads the grant
        await chat.drain()
        before = statements.count
        for n in range(5):
            await chat.send_message(sender, cid, {"content": f"m{n}"})
        await chat.drain()
        per_send[size] = (statements.count - before) / 5
        # Nobody has an inbox open on this node: no update was even built.
        assert sink.named("conversation_updated") == []
        counts = await members_unread(cid)
        assert counts[people[0].id] == 0
        assert {counts[u.id] for u in people[1:]} == {6}
        # ...though no other participant's row was written: only the sender's moved.
        untouched = await Participant.filter(conversation_id=cid).exclude(
            user_id=people[0].id).values_list("unread_offset", flat=True)
        assert set(untouched) == {0}
    assert per_send == {2: 1.0, 300: 1.0}

    # An inbox open for one member: the update addresses that room only, with that count.
    listener = people[7]
    rooms.room_members[f"user:{listener.id}"] = {"sio:x": object()}
    before = statements.count
    await chat.send_message(sender, cid, {"content": "seen"})
    await chat.drain()
    update, = sink.named("conversation_updated")
    assert update.rooms == (f"user:{listener.id}",)
    assert update.payload["unread_counts"] == {f"user:{listener.id}": 7}
    assert update.payload["conversation"]["participants_count"] == 300
    assert update.payload["conversation"]["last_message"]["content"] == "seen"
    # The send, then the counts of the one viewer, the conversation, its last message.
    assert statements.count - before == 4


async def test_a_sent_message_reads_back_as_its_payload_showed_it(database: str) -> None:
    """What the send's statement writes without a parameter of its own (status, edit and
    delete flags, delivery, the stamp shared with the conversation) reads back from the
    database as the send's own payload showed it."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(2)
    cid = await group_of(chat, people)
    sender = Actor.of_user(people[0])
    for body in ({"content": "plain"},
                 {"content": "full", "mentions": [people[1].id], "metadata": {"k": 1},
                  "is_urgent": True, "client_msg_id": "c-1"}):
        sent, created = await chat.send_message(sender, cid, body)
        assert created
        assert await chat.get_message(sender, sent["id"]) == sent
        stored = await Message.get(id=sent["id"])
        assert (stored.status, stored.is_edited, stored.is_deleted, stored.edited_at,
                stored.delivery_status, stored.delivery_error) == (
            MessageStatus.SENT, False, False, None, DeliveryStatus.NONE, "")
        conversation = await Conversation.get(id=cid)
        assert stored.created_at == conversation.updated_at
    await chat.drain()


async def test_a_page_of_conversations_costs_the_same_queries_whatever_its_size(
    database: str, statements: Statements
) -> None:
    """A list page is built in a fixed number of queries (it was three per conversation), and
    each item is what the conversation's own view shows."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    per_page = {}
    for size in (2, 9):
        people = await users(3)
        reader, writer = Actor.of_user(people[0]), Actor.of_user(people[1])
        for n in range(size):
            cid = await group_of(chat, people)
            for i in range(n % 3):  # some empty, some with unread messages
                await chat.send_message(writer, cid, {"content": f"{n}.{i}"})
        await chat.drain()
        before = statements.count
        page, _ = await chat.list_conversations(reader, limit=50)
        per_page[size] = statements.count - before
        assert len(page) == size
        for item in page:
            alone = await chat.get_conversation(reader, item["id"])
            assert item == alone
        assert sorted(item["unread_count"] for item in page) == sorted(n % 3 for n in range(size))
        assert {item["participants_count"] for item in page} == {3}
    assert per_page[2] == per_page[9], per_page


async def test_a_user_s_blocks_both_ways_are_one_statement_and_forgotten_apart(
    database: str, statements: Statements
) -> None:
    """A connect asks whom its user blocked and who blocked them: one read fills both, and a
    block made since is seen once the change is forgotten."""
    people = await users(3)
    await Block.create(blocker_id=people[0].id, blocked_id=people[1].id)
    grants = Grants()
    before = statements.count
    assert await grants.blocked(people[0].id) == {people[1].id}
    assert await grants.blockers(people[0].id) == frozenset()
    assert statements.count - before == 1
    await Block.create(blocker_id=people[2].id, blocked_id=people[0].id)
    assert await grants.blockers(people[0].id) == frozenset()  # held until forgotten
    grants.forget(blocked_user_id=people[0].id)
    assert await grants.blockers(people[0].id) == {people[2].id}
    assert await grants.blocked(people[0].id) == {people[1].id}


async def test_clients_arriving_together_load_their_conversation_once(
    database: str, statements: Statements
) -> None:
    """A conversation's facts are loaded once for all the clients that ask at the same time
    (a reconnect storm), and not shared across an invalidation."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(3)
    cid = await group_of(chat, people)
    grants = Grants()
    before = statements.count
    facts = await asyncio.gather(*(grants.viewable(Actor.of_user(people[i % 3]), cid)
                                   for i in range(30)))
    assert statements.count - before == 1  # the conversation with its participants
    assert len({id(f) for f in facts}) == 1 and facts[0].members == {u.id for u in people}
    # A load begun before an invalidation is not joined by a caller after it.
    grants.forget(conversation_id=cid)
    first = asyncio.ensure_future(grants.conversation(cid))
    await asyncio.sleep(0)  # the first load has begun
    grants.forget(conversation_id=cid)
    second = await grants.conversation(cid)
    assert second is not await first
    missing = await asyncio.gather(*(grants.conversation(2_000_000_000) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(e, ChatError) and e.status == 404 for e in missing)
    # Every connect reads a page of history: its access check is answered from these facts.
    await chat.history(Actor.of_user(people[0]), cid, latest=True)  # loads them
    seen = len(statements.sql)
    await chat.history(Actor.of_user(people[1]), cid, latest=True)
    assert not [q for q in statements.sql[seen:] if 'FROM "conversations"' in q]
    with pytest.raises(ChatError) as refused:
        await chat.history(Actor.of_user((await users(1))[0]), cid, latest=True)
    assert refused.value.status == 403


#: The conversation's columns every send changes.
SEND_CHANGES = {"updated_at", "total_messages", "started_at", "device_unread_count",
                "staff_unread_count"}


async def test_no_index_holds_what_a_send_changes_in_the_conversation_row(database: str) -> None:
    """Then a send updates the conversation's row in place (PostgreSQL's HOT update: no new
    entry in every index, no dead row), and SQLite rewrites no index page for it."""
    client = connections.get("default")
    if client.capabilities.dialect == "postgres":
        _, rows = await client.execute_query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'conversations'")
        indexed = " ".join(row["indexdef"] for row in rows)
    else:
        _, rows = await client.execute_query("PRAGMA index_list('conversations')")
        names = [row["name"] for row in rows]
        assert names  # the primary key's and the connection's unique index at least
        indexed = ""
        for name in names:
            _, info = await client.execute_query(f"PRAGMA index_info('{name}')")
            indexed += " ".join(str(row["name"]) for row in info) + " "
    assert not [column for column in SEND_CHANGES if column in indexed], indexed


async def test_publish_order_is_id_order_under_concurrent_senders(database: str) -> None:
    sink = RecordingSink()
    chat = ChatService(sink, Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(5)
    cid = await group_of(chat, people)
    actors = [Actor.of_user(u) for u in people]

    async def burst(actor: Actor, n: int) -> list[int]:
        return [(await chat.send_message(actor, cid, {"content": f"{actor.key} {i}"}))[0]["id"]
                for i in range(n)]

    sent = await asyncio.gather(*(burst(a, 15) for a in actors for _ in range(2)))
    published = [e.payload["message"]["id"] for e in sink.named("chat_message")]
    stored = list(await Message.filter(conversation_id=cid).order_by("id")
                  .values_list("id", flat=True))
    assert published == stored  # in id order, each once
    assert sorted(i for ids in sent for i in ids) == stored
    assert len(chat.sequencer) == 0  # no lock left behind
    await chat.drain()


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


async def test_grants_are_dropped_by_a_change_and_bounded_in_time(database: str) -> None:
    people = await users(2)
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    cid = await group_of(chat, people)
    actor = Actor.of_user(people[0])
    held, fresh = Grants(ttl=3600), Grants(ttl=0)
    for grants in (held, fresh):
        await grants.writable(actor, cid)
    # Closed behind the caches' backs (as another node would): the held grant still writes
    # until it is dropped (by the control, or its time); a grant past its time reloads.
    await Conversation.filter(id=cid).update(status=ConversationStatus.CLOSED)
    await held.writable(actor, cid)
    with pytest.raises(ChatError) as refused_fresh:
        await fresh.writable(actor, cid)
    held.forget(conversation_id=cid)
    with pytest.raises(ChatError) as refused_held:
        await held.writable(actor, cid)
    assert refused_fresh.value.code == refused_held.value.code == "conversation_closed"


async def test_grants_answer_from_memory_as_they_would_after_a_wait(database: str) -> None:
    people = await users(3)
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    cid = await group_of(chat, people[:2])
    member, outsider = Actor.of_user(people[0]), Actor.of_user(people[2])
    grants = Grants(ttl=3600)
    assert grants.writable_now(member, cid) is None  # nothing held yet: ask writable
    assert grants.skip_keys_now(member) is None
    facts = await grants.writable(member, cid)
    assert await grants.skip_keys(member) == frozenset()
    assert grants.writable_now(member, cid) is facts
    assert grants.skip_keys_now(member) == frozenset()
    assert grants.writable_now(outsider, cid) is None  # not a member: writable decides
    await Conversation.filter(id=cid).update(status=ConversationStatus.CLOSED)
    grants.forget(conversation_id=cid)
    await grants.conversation(cid)  # held again, closed
    with pytest.raises(ChatError) as refused:
        grants.writable_now(member, cid)
    assert refused.value.code == "conversation_closed"


async def test_sequencer_orders_holders_and_forgets_idle_keys() -> None:
    sequencer, order = Sequencer(), []

    async def hold(key: int, n: int, ready: asyncio.Event | None = None) -> None:
        async with sequencer.hold(key):
            if ready is not None:
                await ready.wait()
            order.append((key, n))

    ready = asyncio.Event()
    first = asyncio.ensure_future(hold(1, 0, ready))
    await asyncio.sleep(0)  # let it take the lock
    later = [asyncio.ensure_future(hold(1, n)) for n in (1, 2)]
    other = asyncio.ensure_future(hold(2, 0))
    await other  # another key does not wait
    assert order == [(2, 0)]
    ready.set()
    await asyncio.gather(first, *later)
    assert order == [(2, 0), (1, 0), (1, 1), (1, 2)]
    assert len(sequencer) == 0


async def test_sequencer_skips_cancelled_waiters_and_passes_a_handed_slot_on() -> None:
    sequencer, order = Sequencer(), []
    release = asyncio.Event()

    async def hold(n: int, wait: asyncio.Event | None = None) -> None:
        async with sequencer.hold(1):
            order.append(n)
            if wait is not None:
                await wait.wait()

    first = asyncio.ensure_future(hold(0, release))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(hold(1))  # cancelled while it waits
    handed = asyncio.ensure_future(hold(2))  # cancelled once the slot is handed to it
    last = asyncio.ensure_future(hold(3))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # the first holder leaves: the slot is handed to the next waiter
    handed.cancel()
    await asyncio.gather(first, last)
    assert gone.cancelled() and handed.cancelled()
    assert order == [0, 3]
    assert len(sequencer) == 0


async def test_migration_carries_unread_counts_over(database_url: str, work_dir: Path) -> None:
    from tortoise import Tortoise
    from tortoise.migrations.api.migrate import migrate

    fresh_tortoise()
    config = tortoise_config(settings_for(database_url, work_dir))
    mark = "?" if database_url.startswith("sqlite") else "$1"
    try:
        await migrate(config=config, target="models.0002_message_delivery")
        db = connections.get("default")
        await db.execute_script(
            "INSERT INTO users (email, username, password_hash, first_name, last_name, "
            "avatar_url, role, is_active, created_at) VALUES "
            "('a@x.io', 'a', 'x', '', '', '', 'user', TRUE, CURRENT_TIMESTAMP), "
            "('b@x.io', 'b', 'x', '', '', '', 'user', TRUE, CURRENT_TIMESTAMP);"
            "INSERT INTO conversations (kind, title, subject, status, priority, "
            "last_message_id, total_messages, device_last_read_message_id, "
            "device_unread_count, staff_unread_count, created_at, updated_at) VALUES "
            "('group', '', '', 'active', 0, NULL, 7, 0, 0, 0, CURRENT_TIMESTAMP, "
            "CURRENT_TIMESTAMP);")
        cid = (await db.execute_query_dict("SELECT id FROM conversations"))[0]["id"]
        ids = [r["id"] for r in await db.execute_query_dict("SELECT id FROM users ORDER BY id")]
        for user_id, unread in zip(ids, (0, 5), strict=True):
            await db.execute_query(
                "INSERT INTO participants (conversation_id, user_id, role, joined_at, "
                "is_active, last_read_message_id, unread_count) VALUES "
                f"({cid}, {user_id}, 'member', CURRENT_TIMESTAMP, TRUE, 0, {mark})", [unread])
        await Tortoise.close_connections()
        await migrate(config=config)
        db = connections.get("default")
        rows = await db.execute_query_dict(
            "SELECT user_id, unread_offset FROM participants ORDER BY user_id")
        # unread = total_messages (7) + offset: 0 and 5 as before.
        assert [(r["user_id"], r["unread_offset"]) for r in rows] == [(ids[0], -7), (ids[1], -2)]
        row = (await db.execute_query_dict(f"SELECT * FROM conversations WHERE id = {cid}"))[0]
        assert "last_message_id" not in row and row["total_messages"] == 7
    finally:
        await Tortoise.close_connections()


# -- the real server ---------------------------------------------------------------------------


async def unread_of(api: Api, user: Any, cid: int) -> int:
    response = await api.http.get(f"{V1}/sessions/{cid}", headers=user.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["unread_count"])


async def test_unread_counts_stay_exact_after_many_messages_and_reads(api: Api) -> None:
    alice, bob, carol = [await api.register() for _ in range(3)]
    cid = await group(api, alice, bob, carol)
    by_alice = [(await rest_send(api, alice, cid, f"a{i}"))["id"] for i in range(12)]
    for i in range(3):
        await rest_send(api, bob, cid, f"b{i}")
    assert [await unread_of(api, u, cid) for u in (alice, bob, carol)] == [3, 12, 15]
    listed = await api.http.get(f"{V1}/sessions", headers=carol.headers)
    assert [c["unread_count"] for c in listed.json() if c["id"] == cid] == [15]

    # Carol reads up to alice's 5th message: the rest, from others, stay unread.
    marked = await api.http.post(f"{V1}/sessions/{cid}/mark-read",
                                 json={"up_to_message_id": by_alice[4]}, headers=carol.headers)
    assert marked.status_code == 200, marked.text
    assert await unread_of(api, carol, cid) == 10
    # Her own message does not count; a deleted one stops counting at her next read.
    await rest_send(api, carol, cid, "c0")
    assert await unread_of(api, carol, cid) == 10
    deleted = await api.http.delete(f"{V1}/messages/{by_alice[10]}", headers=alice.headers)
    assert deleted.status_code == 200, deleted.text
    await api.http.post(f"{V1}/sessions/{cid}/mark-read",
                        json={"up_to_message_id": by_alice[4]}, headers=carol.headers)
    assert await unread_of(api, carol, cid) == 9
    await api.http.post(f"{V1}/sessions/{cid}/mark-read", json={}, headers=bob.headers)
    assert [await unread_of(api, u, cid) for u in (alice, bob, carol)] == [4, 0, 9]
    await rest_send(api, alice, cid, "after the reads")
    assert [await unread_of(api, u, cid) for u in (alice, bob, carol)] == [4, 1, 10]


async def test_device_and_staff_counters(api: Api) -> None:
    agent = await api.register(role="agent")
    device = await api.device()
    started = await api.http.post("/mobile/chat/start/",
                                  json={"device_id": device, "subject": "Card"})
    cid = int(started.json()["conversation_id"])
    for text in ("hello", "anyone?"):
        sent = await api.http.post(f"/mobile/chat/{cid}/send-message/",
                                   json={"device_id": device, "content": text})
        assert sent.status_code == 201, sent.text
    assert await unread_of(api, agent, cid) == 2
    await rest_send(api, agent, cid, "here")  # an agent answers: staff's count resets
    assert await unread_of(api, agent, cid) == 0
    detail = await api.http.get(f"/mobile/chat/{cid}/detail/", params={"device_id": device})
    assert detail.json()["unread_count"] == 1


async def test_deliveries_follow_id_order_under_concurrent_senders(api: Api) -> None:
    people = [await api.register() for _ in range(4)]
    cid = await group(api, *people)
    receiver = await chat_client(api, people[0], cid)
    senders = [await chat_client(api, p, cid) for p in people[1:]]
    try:
        async def burst(client: Client, tag: int) -> list[int]:
            acks = await asyncio.gather(*(client.call("chat_message", {
                "conversation_id": cid, "content": f"{tag}-{i}"}) for i in range(10)))
            return [ok(a)["message"]["id"] for a in acks]

        sent = sorted(i for ids in await asyncio.gather(
            *(burst(c, n) for n, c in enumerate(senders))) for i in ids)
        got = [(await receiver.next("chat_message"))["message"]["id"] for _ in sent]
        assert got == sent  # id order, each once
        assert receiver.pending("chat_message") == []
    finally:
        for client in (receiver, *senders):
            await client.close()


async def test_a_burst_costs_one_inbox_update_per_window(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    inbox = await Client(api.base_url, "/conversations").connect({"token": bob.token})
    a = await chat_client(api, alice, cid)
    try:
        ok(await inbox.call("get_conversations"))
        began = time.monotonic()
        await asyncio.gather(*(a.call("chat_message", {"conversation_id": cid,
                                                       "content": f"m{i}"}) for i in range(30)))
        took = time.monotonic() - began
        last = await inbox.next("conversation_updated",
                                lambda e: e["conversation"]["unread_count"] == 30)
        assert last["conversation"]["last_message"]["content"] == "m29"
        assert last["conversation"]["total_messages"] == 30
        updates = inbox.pending("conversation_updated")
        # One at the start of the burst, then at most one per window (30 without coalescing).
        assert len(updates) + 1 <= took / WINDOW_SECONDS + 2, (len(updates), took)
        # A read is told too, and the next message after it.
        ok(await a.call("chat_message", {"conversation_id": cid, "content": "one more"}))
        await inbox.next("conversation_updated",
                         lambda e: e["conversation"]["unread_count"] == 31)
        await api.http.post(f"{V1}/sessions/{cid}/mark-read", json={}, headers=bob.headers)
        await inbox.next("conversation_updated",
                         lambda e: e["conversation"]["unread_count"] == 0)
    finally:
        await inbox.close()
        await a.close()


async def test_close_and_block_revoke_cached_grants_at_once(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    a = await chat_client(api, alice, cid)
    try:
        for _ in range(2):  # the grant is cached now
            ok(await a.call("chat_message", {"conversation_id": cid, "content": "open"}))
        closed = await api.http.post(f"{V1}/sessions/{cid}/close", headers=alice.headers)
        assert closed.status_code == 200, closed.text
        refused(await a.call("chat_message", {"conversation_id": cid, "content": "x"}),
                "conversation_closed")
        refused(await a.call("typing_indicator", {"conversation_id": cid, "is_typing": True}),
                "conversation_closed")
    finally:
        await a.close()

    direct = await direct_conversation(api, alice, bob)
    b = await chat_client(api, bob, direct)
    try:
        ok(await b.call("chat_message", {"conversation_id": direct, "content": "hi"}))
        blocked = await api.http.post(f"{V1}/block", json={"user_id": bob.id},
                                      headers=alice.headers)
        assert blocked.status_code == 200, blocked.text
        refused(await b.call("chat_message", {"conversation_id": direct, "content": "x"}),
                "forbidden")
        await api.http.post(f"{V1}/unblock", json={"user_id": bob.id}, headers=alice.headers)
        ok(await b.call("chat_message", {"conversation_id": direct, "content": "again"}))
    finally:
        await b.close()


async def test_a_change_on_one_node_revokes_grants_on_the_other(cluster: Cluster) -> None:
    from tests.support.client import admin_of

    node_a, node_b = cluster.nodes[:2]
    admin = await admin_of(node_a.base_url)
    on_a, on_b = Api(node_a.base_url, admin), Api(node_b.base_url, admin)
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    direct = await direct_conversation(on_a, alice, bob)
    on_b_alice = await chat_client(on_b, alice, cid)
    on_b_bob = await chat_client(on_b, bob, direct)
    try:
        ok(await on_b_alice.call("chat_message", {"conversation_id": cid, "content": "x"}))
        ok(await on_b_bob.call("chat_message", {"conversation_id": direct, "content": "x"}))
        # Closed on A: once B has heard it (the close's event follows the control), B
        # refuses.
        closed = await on_a.http.post(f"{V1}/sessions/{cid}/close", headers=alice.headers)
        assert closed.status_code == 200, closed.text
        await on_b_alice.next("conversation_closed")
        refused(await on_b_alice.call("chat_message", {"conversation_id": cid,
                                                        "content": "x"}),
                "conversation_closed")
        # Alice's history on B shows Bob's message (and B remembers whom she blocked).
        history = f"{V1}/sessions/{direct}/messages"
        seen = (await on_b.http.get(history, headers=alice.headers)).json()
        assert "x" in [m["content"] for m in seen]
        # Blocked on A: a message published on A after it is the barrier.
        blocked = await on_a.http.post(f"{V1}/block", json={"user_id": bob.id},
                                       headers=alice.headers)
        assert blocked.status_code == 200, blocked.text
        await rest_send(on_a, alice, direct, "after the block")
        await on_b_bob.next("chat_message", lambda e: e["message"]["content"]
                            == "after the block")
        refused(await on_b_bob.call("chat_message", {"conversation_id": direct,
                                                      "content": "x"}), "forbidden")
        seen = (await on_b.http.get(history, headers=alice.headers)).json()
        assert [m["content"] for m in seen] == ["after the block"]
    finally:
        for client in (on_b_alice, on_b_bob):
            await client.close()
        for api in (on_a, on_b):
            await api.aclose()


async def updates_until(inbox: Client, last: Callable[[Any], bool]) -> list[Any]:
    """Every ``conversation_updated`` received, in order, up to the one matching ``last``."""
    seen = []
    async with asyncio.timeout(10):
        while not seen or not last(seen[-1]):
            seen.append(await inbox.events["conversation_updated"].get())
    return seen


async def updates_until_each(inbox: Client, conversation_ids: set[int]) -> list[Any]:
    """Every ``conversation_updated`` received, in order, until each of ``conversation_ids``
    has had one."""
    seen: list[Any] = []
    async with asyncio.timeout(10):
        while not conversation_ids <= {e["conversation_id"] for e in seen}:
            seen.append(await inbox.events["conversation_updated"].get())
    return seen


async def test_each_node_updates_the_inboxes_it_holds(cluster: Cluster) -> None:
    """With Redis a change reaches every node as one control; each node counts and delivers
    for its own inbox sockets: each viewer gets each update once, with their own count."""
    from tests.support.client import admin_of

    node_a, node_b = cluster.nodes[:2]
    admin = await admin_of(node_a.base_url)
    on_a, on_b = Api(node_a.base_url, admin), Api(node_b.base_url, admin)
    alice, bob, carol = await on_a.register(), await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob, carol)
    later = await group(on_a, alice, bob, carol)
    bob_on_b = await Client(node_b.base_url, "/conversations").connect({"token": bob.token})
    carol_on_a = await Client(node_a.base_url, "/conversations").connect({"token": carol.token})
    # What crosses Redis: the control, not the nodes' updates.
    redis = Redis.from_url(cluster.redis_url)
    channel = redis.pubsub()
    await channel.subscribe(f"{cluster.prefix}:events")
    try:
        await rest_send(on_a, alice, cid, "m1")
        # A change to another conversation, published after. The two conversations' updates
        # are made by separate jobs on each node, in either order: read until both came.
        await rest_send(on_a, alice, later, "barrier")
        for inbox in (bob_on_b, carol_on_a):
            seen = await updates_until_each(inbox, {cid, later})
            about_cid = [e for e in seen if e["conversation_id"] == cid]
            assert len(about_cid) == 1, about_cid
            assert about_cid[0]["conversation"]["unread_count"] == 1
            assert about_cid[0]["conversation"]["last_message"]["content"] == "m1"
        crossed = []  # all that was published meanwhile is in the client's buffer by now
        while (message := await channel.get_message(timeout=0.2)) is not None:
            if message["type"] == "message":
                crossed.append(message["data"])
        assert any(b"service_inbox_changed" in data for data in crossed), crossed[:5]
        assert not any(b"conversation_updated" in data for data in crossed)
        # Each viewer's own count: bob reads on B, carol's stays.
        read = await on_b.http.post(f"{V1}/sessions/{cid}/mark-read", json={}, headers=bob.headers)
        assert read.status_code == 200, read.text
        await bob_on_b.next("conversation_updated", lambda e: e["conversation_id"] == cid
                            and e["conversation"]["unread_count"] == 0)
        await rest_send(on_a, alice, cid, "m2")
        await carol_on_a.next("conversation_updated", lambda e: e["conversation_id"] == cid
                              and e["conversation"]["unread_count"] == 2)
        await bob_on_b.next("conversation_updated", lambda e: e["conversation_id"] == cid
                            and e["conversation"]["unread_count"] == 1)
    finally:
        await channel.aclose()
        await redis.aclose()
        for client in (bob_on_b, carol_on_a):
            await client.close()
        for api in (on_a, on_b):
            await api.aclose()
