"""The connect path's plain-statement reads give what the ORM's reads give."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tortoise import connections
from tortoise.models import Model
from tortoise.transactions import in_transaction

from backend.storage import lookups
from models import (
    AuthSession,
    Block,
    Conversation,
    Customer,
    MobileSession,
    Participant,
    Role,
    User,
    UserFacts,
)
from tests.support.in_process import opened
from tests.support.services import Postgres


@pytest.fixture
async def either(database_url: str, work_dir: Path) -> AsyncIterator[str]:
    async with opened(database_url, work_dir) as url:
        yield url


async def test_a_users_facts_read_by_id_are_the_orm_rows(database: None) -> None:
    made = await User.create(email="a@example.com", username="a", password_hash="x",
                             first_name="Ann", role=Role.AGENT,
                             legacy_tokens_revoked_at=datetime(2026, 3, 4, 5, 6, 7, 890, UTC))
    other = await User.create(email="b@example.com", username="b", password_hash="x")
    for user in (made, other):
        read = await lookups.active_user_facts(user.id)
        assert read == UserFacts.of(await User.get(id=user.id))
    read = await lookups.active_user_facts(made.id)
    assert read is not None and read.role is Role.AGENT
    assert read.legacy_tokens_revoked_at == datetime(2026, 3, 4, 5, 6, 7, 890, UTC)
    assert await lookups.active_user_facts(other.id + 1000) is None
    # An inactive user has no facts to act with.
    await User.filter(id=other.id).update(is_active=False)
    assert await lookups.active_user_facts(other.id) is None

    await Block.create(blocker_id=made.id, blocked_id=other.id)
    assert await lookups.blocked_ids(made.id) == [other.id]
    assert await lookups.blocked_ids(other.id) == []
    assert await lookups.blocks_of(made.id) == ([other.id], [])
    assert await lookups.blocks_of(other.id) == ([], [made.id])
    third = await User.create(email="t@example.com", username="t", password_hash="x")
    await Block.create(blocker_id=third.id, blocked_id=made.id)
    await Block.create(blocker_id=made.id, blocked_id=third.id)
    blocked, blockers = await lookups.blocks_of(made.id)
    assert sorted(blocked) == sorted([other.id, third.id]) and blockers == [third.id]


async def test_a_read_the_inline_connection_cannot_make_is_asked_of_tortoise(
    database: None
) -> None:
    made = await User.create(email="c@example.com", username="c", password_hash="x")
    await lookups.close()
    # A connection that can read nothing (closed): the read goes through Tortoise's.
    broken = lookups.InlineReads()

    client = connections.get("default")
    assert broken.rows(client, "SELECT 1", []) == [{"1": 1}]
    assert broken._connection is not None
    broken._connection.close()
    assert broken.rows(client, "SELECT 1", []) is None
    assert (await lookups.active_user_facts(made.id)) is not None


async def test_a_connection_that_cannot_be_set_up_now_is_set_up_at_the_next_read(
    database: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from backend.storage import side_connections

    client = connections.get("default")
    reads = lookups.InlineReads()

    def busy(client: object) -> dict[str, object]:
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(side_connections, "sqlite_pragmas", busy)
        assert reads.rows(client, "SELECT 1", []) is None
    assert reads.rows(client, "SELECT 1", []) == [{"1": 1}]
    reads.close()


async def test_a_participant_s_unread_figures_are_the_orm_s(database: None) -> None:
    people = [await User.create(email=f"{n}@example.com", username=f"u{n}", password_hash="x")
              for n in range(3)]
    conversation = await Conversation.create(kind="group", title="g", total_messages=7)
    await Participant.create(conversation=conversation, user=people[0], unread_offset=-2)
    await Participant.create(conversation=conversation, user=people[1], is_active=False)
    assert await lookups.unread_figures(conversation.id, people[0].id) == (-2, 7)
    # A participant no longer active still has its figures; a user who never took part none.
    assert await lookups.unread_figures(conversation.id, people[1].id) == (0, 7)
    assert await lookups.unread_figures(conversation.id, people[2].id) is None
    assert await lookups.unread_figures(conversation.id + 1, people[0].id) is None


async def test_a_login_session_s_state_is_the_orm_s(either: str) -> None:
    """Alone, and with its token's user in one statement (with the user's blocks or not):
    the same state, and the same facts and blocks as each read alone."""
    tag = uuid.uuid4().hex[:8]
    user = await User.create(email=f"{tag}@example.com", username=tag, password_hash="x")
    other = await User.create(email=f"o{tag}@example.com", username=f"o{tag}",
                              password_hash="x")
    await AuthSession.create(id="a" * 32, user_id=user.id)
    await AuthSession.create(id="b" * 32, user_id=user.id)
    facts = await lookups.active_user_facts(user.id)
    assert facts is not None and facts == UserFacts.of(await User.get(id=user.id))
    assert await lookups.session_state("a" * 32) == (user.id, False)
    assert await lookups.token_user(user.id, "a" * 32) == lookups.TokenUser(
        facts, (user.id, False))
    await AuthSession.filter(id="b" * 32).update(revoked_at=datetime.now(UTC))
    assert await lookups.session_state("b" * 32) == (user.id, True)  # seen once committed
    assert await lookups.token_user(user.id, "b" * 32) == lookups.TokenUser(
        facts, (user.id, True))
    assert await lookups.session_state("c" * 32) is None
    assert await lookups.token_user(user.id, "c" * 32) == lookups.TokenUser(facts)
    # Another user's session is read as it is (whose it is, the caller tells).
    assert await lookups.token_user(other.id, "a" * 32) == lookups.TokenUser(
        await lookups.active_user_facts(other.id), (user.id, False))
    # The blocks both ways, as blocks_of reads them, with the session or without.
    assert await lookups.token_user(user.id, "a" * 32, blocks=True) == lookups.TokenUser(
        facts, (user.id, False), ([], []))
    third = await User.create(email=f"t{tag}@example.com", username=f"t{tag}",
                              password_hash="x")
    await Block.create(blocker_id=user.id, blocked_id=other.id)
    await Block.create(blocker_id=user.id, blocked_id=third.id)
    await Block.create(blocker_id=third.id, blocked_id=user.id)
    for session_id in ("a" * 32, None):
        read = await lookups.token_user(user.id, session_id, blocks=True)
        assert read.facts == facts and read.blocks is not None
        assert (sorted(read.blocks[0]), read.blocks[1]) == (
            sorted([other.id, third.id]), [third.id])
        assert (sorted(read.blocks[0]), read.blocks[1]) == (
            sorted((await lookups.blocks_of(user.id))[0]), [third.id])
    # No such user, or not active: no facts.
    assert await lookups.token_user(other.id + 1000, "a" * 32, blocks=True) == (
        lookups.TokenUser(None))
    await User.filter(id=other.id).update(is_active=False)
    assert (await lookups.token_user(other.id, "a" * 32)).facts is None


async def test_a_statement_s_column_names_are_read_again_for_another_database(
    database: None
) -> None:
    """The names kept per statement are the database's of the moment: a database reopened
    with its columns in another order reads them anew."""

    client = connections.get("default")
    await client.execute_script('CREATE TABLE "pair" ("a" INTEGER, "b" INTEGER);'
                                'INSERT INTO "pair" VALUES (1, 2);')
    reads = lookups.InlineReads()
    assert reads.rows(client, 'SELECT * FROM "pair"', []) == [{"a": 1, "b": 2}]
    await client.execute_script('DROP TABLE "pair"; CREATE TABLE "pair" ("b" INTEGER, '
                                '"a" INTEGER); INSERT INTO "pair" VALUES (2, 1);')
    reads.close()  # what closing the database does
    assert reads.rows(client, 'SELECT * FROM "pair"', []) == [{"b": 2, "a": 1}]
    assert list(reads.rows(client, 'SELECT * FROM "pair"', [])[0]) == ["b", "a"]
    assert reads.rows(client, 'SELECT * FROM "pair" WHERE "a" = 5', []) == []
    reads.close()


def _fields(instance: Model | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {name: getattr(instance, name) for name in instance._meta.fields_db_projection}


async def test_a_conversation_read_plainly_is_the_orm_s_with_device_and_customer(
    either: str
) -> None:
    """What the access checks load at a conversation's first connect: the same fields, and
    the same device and customer (or None), as the ORM's ``select_related`` read."""
    owner = await User.create(email=f"{uuid.uuid4().hex[:6]}@example.com",
                              username=uuid.uuid4().hex[:8], password_hash="x")
    device = await MobileSession.create(device_id=uuid.uuid4().hex, platform="ios")
    customer = await Customer.create(platform="telegram", external_id="42", first_name="Cy")
    made = [
        await Conversation.create(kind="support", title="by phone", device=device,
                                  started_at=datetime(2026, 1, 2, 3, 4, 5, 6, UTC)),
        await Conversation.create(kind="support", title="by telegram", customer=customer,
                                  initiator=owner, status="closed", total_messages=3),
        await Conversation.create(kind="group", title="plain", initiator=owner),
    ]
    for conversation in made:
        orm = await Conversation.get(id=conversation.id).select_related("device", "customer")
        together = await lookups.conversation_and_parties(conversation.id)
        assert together is not None
        for read in (await lookups.conversation_of(conversation.id), together[0]):
            assert read is not None
            assert _fields(read) == _fields(orm)
            assert _fields(read.device) == _fields(orm.device)
            assert _fields(read.customer) == _fields(orm.customer)
    assert made[0].device_id == device.id and made[1].customer_id == customer.id
    assert (await lookups.conversation_of(made[0].id)).device.device_id == device.device_id
    assert await lookups.conversation_of(made[-1].id + 1000) is None
    # Read back as the ORM gave it, it saves as one the ORM read would.
    read = await lookups.conversation_of(made[2].id)
    assert read is not None
    read.title = "renamed"
    await read.save(update_fields=["title"])
    assert (await Conversation.get(id=made[2].id)).title == "renamed"
    # Within a transaction the read is the transaction's: it sees what it wrote.
    async with in_transaction():
        await Conversation.filter(id=made[2].id).update(title="inside")
        inside = await lookups.conversation_of(made[2].id)
        assert inside is not None and inside.title == "inside"
        made.append(await Conversation.create(kind="group", title="new"))
        assert await lookups.conversation_of(made[-1].id) is not None


async def test_who_takes_part_read_plainly_is_the_orm_s(either: str) -> None:
    people = [await User.create(email=f"{uuid.uuid4().hex[:6]}@example.com",
                                username=uuid.uuid4().hex[:8], password_hash="x")
              for _ in range(3)]
    conversation = await Conversation.create(kind="group", title="g")
    await Participant.create(conversation=conversation, user=people[0])
    await Participant.create(conversation=conversation, user=people[1], is_active=False)
    expected = await Participant.filter(conversation_id=conversation.id).values_list(
        "user_id", "is_active")
    assert sorted(expected) == [(people[0].id, True), (people[1].id, False)]
    found = await lookups.conversation_and_parties(conversation.id)
    assert found is not None
    read, members, former = found
    assert (members, former) == ([people[0].id], [people[1].id])
    assert _fields(read) == _fields(await lookups.conversation_of(conversation.id))
    await Participant.create(conversation=conversation, user=people[2])
    found = await lookups.conversation_and_parties(conversation.id)
    assert found is not None and sorted(found[1]) == sorted([people[0].id, people[2].id])
    # No one, or no one who left: empty lists.
    empty = await Conversation.create(kind="group", title="empty")
    found = await lookups.conversation_and_parties(empty.id)
    assert found is not None and found[1:] == ([], [])
    assert await lookups.conversation_and_parties(empty.id + 1000) is None


async def test_reads_on_postgresql_keep_one_pool_connection_and_survive_its_loss(
    postgres: Postgres, work_dir: Path
) -> None:
    """On PostgreSQL the reads run on a connection they hold between reads (no pool acquire
    and release each); a held connection that broke is handed back and the read still
    answers, through the pool."""
    name, url = await postgres.create_database()
    try:
        await _held_reads(url, work_dir)
    finally:
        await postgres.drop_database(name)


async def _held_reads(url: str, work_dir: Path) -> None:
    async with opened(url, work_dir):
        held = lookups._HELD[0]
        conversation = await Conversation.create(kind="group", title="held")
        uses = held.uses
        for _ in range(5):
            assert (await lookups.conversation_of(conversation.id)) is not None
        assert held.uses >= uses + 5
        connection = await held.take(connections.get("default"))
        assert connection is not None
        held.give_back(connection)
        connection.terminate()  # cut under the holder, as a database restart does
        read = await lookups.conversation_of(conversation.id)
        assert read is not None and read.title == "held"
        found = await lookups.conversation_and_parties(conversation.id)
        assert found is not None and found[1:] == ([], [])
    assert held._connection is None  # handed back when the database closed
