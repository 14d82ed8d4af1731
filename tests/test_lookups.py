"""The connect path's plain-statement reads give what the ORM's reads give."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.storage import lookups
from models import AuthSession, Block, Conversation, Participant, Role, User, UserFacts


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


async def test_a_read_the_inline_connection_cannot_make_is_asked_of_tortoise(
    database: None
) -> None:
    made = await User.create(email="c@example.com", username="c", password_hash="x")
    lookups.close()
    # A connection that can read nothing (closed): the read goes through Tortoise's.
    broken = lookups.InlineReads()
    from tortoise import connections

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

    from tortoise import connections

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


async def test_a_login_session_s_state_is_the_orm_s(database: None) -> None:
    user = await User.create(email="s@example.com", username="s", password_hash="x")
    await AuthSession.create(id="a" * 32, user_id=user.id)
    await AuthSession.create(id="b" * 32, user_id=user.id)
    assert await lookups.session_state("a" * 32) == (user.id, False)
    await AuthSession.filter(id="b" * 32).update(revoked_at=datetime.now(UTC))
    assert await lookups.session_state("b" * 32) == (user.id, True)  # seen once committed
    assert await lookups.session_state("c" * 32) is None


async def test_a_statement_s_column_names_are_read_again_for_another_database(
    database: None
) -> None:
    """The names kept per statement are the database's of the moment: a database reopened
    with its columns in another order reads them anew."""
    from tortoise import connections

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
