"""The per-message path (issue 8): one database job per send whatever the conversation's size,
unread counts derived and exact, publish order equal to id order, coalesced inbox updates,
and the migration to derived counts.

The first tests run the chat service in this process over a database of their own (SQLite and
PostgreSQL), to count the statements a send issues; the others drive the real server. The send
transaction's storage is tested in ``test_sends.py``, the cached write permissions in
``test_grants.py``, the per-conversation order of sends in ``test_sequencer.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from tortoise import connections

from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.errors import ChatError
from backend.service.grants import Grants
from backend.service.inbox import WINDOW_SECONDS
from backend.service.unread import members_unread
from backend.settings import Settings
from backend.storage.database import tortoise_config
from models import (
    Block,
    Conversation,
    DeliveryStatus,
    Message,
    MessageStatus,
    Participant,
)
from tests.support.client import Api
from tests.support.cluster import Cluster
from tests.support.in_process import (
    RecordingSink,
    RoomTable,
    Statements,
    fresh_tortoise,
    group_of,
    settings_for,
    users,
)
from tests.test_raw_support import rest_send
from tests.test_rest_connections import direct_conversation
from tests.test_socketio_helpers import Client, chat_client, group, ok, refused

V1 = "/api/v1/chat"


# -- the service in this process -------------------------------------------------------------


async def test_a_send_is_one_statement_whatever_the_number_of_participants(
    each_database: str, statements: Statements
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


async def test_a_sent_message_reads_back_as_its_payload_showed_it(each_database: str) -> None:
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
    each_database: str, statements: Statements
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
    each_database: str, statements: Statements
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
    each_database: str, statements: Statements
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


async def test_no_index_holds_what_a_send_changes_in_the_conversation_row(
        each_database: str) -> None:
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


async def test_publish_order_is_id_order_under_concurrent_senders(each_database: str) -> None:
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
    bob_on_b = await Client(node_b.base_url, "/conversations").connect({"token": bob.token})
    carol_on_a = await Client(node_a.base_url, "/conversations").connect({"token": carol.token})
    cid = await group(on_a, alice, bob, carol)
    later = await group(on_a, alice, bob, carol)
    # A new conversation reaches its members' inboxes at creation: take those updates first
    # (inboxes open before it, so each comes, once), then the messages' updates are apart.
    for inbox in (bob_on_b, carol_on_a):
        created = await updates_until_each(inbox, {cid, later})
        assert sorted(e["conversation_id"] for e in created) == sorted([cid, later]), created
        assert all(e["conversation"]["unread_count"] == 0 for e in created), created
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
