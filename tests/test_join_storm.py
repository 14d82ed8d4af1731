"""A reconnect storm into a big room (CONTRACT §9): every client of the room joins again at
once, resuming from where it was. Each join's work must not grow with the room, and what the
readers asking together read alike is read once for them.

The first test runs the chat service in this process over a database of its own, to count the
statements; the others drive a real server with real Socket.IO clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from backend.cluster import scripts
from backend.cluster.presence import departures_from_json
from backend.realtime.codec import SharedEncodings
from backend.service.access import load_conversation
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.conversations import last_messages
from backend.service.serializers import conversation_dict
from backend.settings import Settings
from tests.support.bulk_users import insert_users, with_tokens
from tests.support.client import Api, TestUser, admin_of, with_admin
from tests.support.in_process import (
    RecordingSink,
    Statements,
    group_of,
    users,
)
from tests.support.server import ServerProcess, start_server
from tests.support.services import PrivateRedis
from tests.test_raw_support import RawClient, raw, rest_send
from tests.test_socketio_helpers import Client, ok

#: Members of the big room: past PRESENCE_DETAIL_MAX_MEMBERS (100).
ROOM = 120


async def test_viewers_of_a_big_room_asking_together_share_its_rows_and_count_none(
        each_database: str, statements: Statements) -> None:
    """Twenty members of a room of 300 ask for its view at once (each Socket.IO ``join``
    answers with it): the row and last message are read once for those who asked together,
    the participants are counted from the held facts, and each viewer costs at most one
    statement of its own (its unread count), not five with a count over the room's rows.
    On SQLite and PostgreSQL (the unread count is a plain statement of each's own)."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(300)
    cid = await group_of(chat, people)
    owner = Actor.of_user(people[0])
    for n in range(3):
        await chat.send_message(owner, cid, {"content": f"m{n}"})
    await chat.get_conversation(owner, cid)  # the facts held, as on a node up a while
    await chat.drain()  # the sends' inbox updates, which would read meanwhile
    viewers = [Actor.of_user(person) for person in people[1:21]]
    before = len(statements.sql)
    views = await asyncio.gather(*(chat.get_conversation(v, cid) for v in viewers))
    issued = statements.sql[before:]
    assert len(issued) <= len(viewers) + 4, issued
    assert not [sql for sql in issued if "COUNT(" in sql.upper()], issued
    assert {view["participants_count"] for view in views} == {300}
    assert {view["unread_count"] for view in views} == {3}
    assert {view["last_message"]["content"] for view in views} == {"m2"}
    # What changes is seen by the next view: a member added, a message sent.
    newcomer = (await users(1))[0]
    await chat.add_members(owner, cid, [newcomer.id], "member")
    await chat.send_message(owner, cid, {"content": "m3"})
    view = await chat.get_conversation(viewers[0], cid)
    assert view["participants_count"] == 301 and view["unread_count"] == 4
    assert view["last_message"]["content"] == "m3"
    assert (await chat.get_conversation(Actor.of_user(newcomer), cid))["unread_count"] == 1


async def test_viewers_asking_together_share_one_rendering_each_with_its_own_figures(
        each_database: str, statements: Statements) -> None:
    """The view a join answers with is rendered once for the viewers asking together (its
    dates, its customer, its last message); each viewer's copy has its own unread count
    and participants, the keys in the canonical order, and changing one changes no other."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(5)
    cid = await group_of(chat, people)
    owner = Actor.of_user(people[0])
    await chat.send_message(owner, cid, {"content": "hello"})
    await chat.get_conversation(owner, cid)
    await chat.drain()
    views = await asyncio.gather(*(chat.get_conversation(Actor.of_user(person), cid)
                                   for person in people))
    assert [view["unread_count"] for view in views] == [0, 1, 1, 1, 1]
    assert {view["participants_count"] for view in views} == {5}
    # One rendering per shared read (the first asker's, then the one of all who asked
    # while it ran): its parts are the same objects in those viewers' copies.
    assert len({id(view["last_message"]) for view in views}) <= 2
    conversation = await load_conversation(cid)
    last = (await last_messages([cid]))[cid]
    assert views[1] == conversation_dict(conversation, last_message=last,
                                         participants_count=5, unread_count=1)
    assert list(views[1]) == list(conversation_dict(conversation, last_message=last,
                                                    participants_count=5, unread_count=1))
    views[0]["unread_count"] = 99
    assert views[1]["unread_count"] == 1


async def test_readers_resuming_from_one_point_reuse_its_replay_until_the_log_moves(
        each_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers resuming one after the other from the same position, the log unchanged: the
    events are read and rendered once, and each reader gets all of them in order. Once an
    edit or a message is logged, the next reader's replay is read again and holds it."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(3)
    cid = await group_of(chat, people)
    owner, reader = Actor.of_user(people[0]), Actor.of_user(people[1])
    epoch = await chat.log_epoch()
    since = (await chat.events_since(reader, cid, 0, epoch))["position"]
    sent = [await chat.send_message(owner, cid, {"content": f"m{n}"}) for n in range(3)]
    rebuilt = 0
    original = chat._rebuild

    async def counting(*args: Any) -> Any:
        nonlocal rebuilt
        rebuilt += 1
        return await original(*args)

    monkeypatch.setattr(chat, "_rebuild", counting)

    def contents(result: dict[str, Any]) -> list[str]:
        return [(e["message"] if "message" in e else e)["content"] for e in result["events"]]

    for _ in range(3):
        result = await chat.events_since(reader, cid, since, epoch)
        assert contents(result) == ["m0", "m1", "m2"]
        assert [e["position"] for e in result["events"]] == [since + 1, since + 2, since + 3]
    assert rebuilt == 1
    await chat.edit_message(owner, sent[0][0]["id"], "m0 edited")
    result = await chat.events_since(reader, cid, since, epoch)
    assert contents(result) == ["m0 edited", "m1", "m2", "m0 edited"]
    assert result["events"][-1]["event"] == "message_edit" and rebuilt == 2
    await chat.send_message(owner, cid, {"content": "m3"})
    assert contents(await chat.events_since(reader, cid, since, epoch))[-1] == "m3"
    assert rebuilt == 3


async def test_readers_no_event_skips_get_one_list_encoded_once(
        each_database: str) -> None:
    """The readers of one point whom no event skips get the same list, which the Socket.IO
    door encodes once for all of their acks; a reader who blocked the sender gets their own,
    without the skipped messages."""
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    people = await users(4)
    cid = await group_of(chat, people)
    owner = Actor.of_user(people[0])
    epoch = await chat.log_epoch()
    since = (await chat.events_since(owner, cid, 0, epoch))["position"]
    await chat.block(Actor.of_user(people[3]), people[1].id)
    await chat.send_message(owner, cid, {"content": "to all"})
    await chat.send_message(Actor.of_user(people[1]), cid, {"content": "from the blocked"})
    first, second, blocker = await asyncio.gather(*(
        chat.events_since(Actor.of_user(person), cid, since, epoch) for person in people[1:]))
    assert first["events"] is second["events"]
    assert [e["message"]["content"] for e in first["events"]] == ["to all", "from the blocked"]
    assert [e["message"]["content"] for e in blocker["events"]] == ["to all"]
    encodings = SharedEncodings()
    fragment = encodings.fragment(first["events"])
    assert encodings.fragment(second["events"]) is fragment
    assert orjson.loads(orjson.dumps({"events": fragment}))["events"] == first["events"]
    assert encodings.fragment(blocker["events"]) is not fragment


def test_a_value_is_encoded_once_per_way_while_it_is_held() -> None:
    """The raw doors' replays: one encoding per list and dialect, however many readers."""
    encodings = SharedEncodings(most=2)
    calls: list[str] = []

    def encode(how: str) -> Any:
        return lambda value: calls.append(how) or [f"{how}:{value}"]

    events: list[int] = [1, 2]
    first = encodings.once(events, "ws-chat", encode("ws-chat"))
    assert encodings.once(events, "ws-chat", encode("ws-chat")) is first
    assert encodings.once(events, "ws-session", encode("ws-session")) is not first
    assert encodings.once([1, 2], "ws-chat", encode("ws-chat")) == first  # equal, not the same
    assert calls == ["ws-chat", "ws-session", "ws-chat"]
    encodings.once(events, "ws-chat", encode("ws-chat"))  # dropped, the oldest past most=2
    assert calls[-1] == "ws-chat" and len(calls) == 4


# -- on a real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storm_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = with_admin(start_server(work_dir / "join-storm"))
    server.extra["database_url"] = f"sqlite://{work_dir}/join-storm/chat.sqlite3"
    yield server
    server.stop()


async def big_room(api: Api, server: ServerProcess) -> tuple[TestUser, list[TestUser], int]:
    """A group of ``ROOM``: its owner, its other members (straight into the database) and
    its id."""
    owner = await api.register()
    members = with_tokens(await insert_users(str(server.extra["database_url"]), ROOM - 1),
                          "user")
    # A group is created with at most 100 others; the rest are added.
    conversation = await api.conversation(owner, kind="group", title="big",
                                          participant_ids=[m.id for m in members[:99]])
    cid = int(conversation["id"])
    added = await api.http.post(f"/api/v1/chat/sessions/{cid}/participants",
                                json={"user_ids": [m.id for m in members[99:]]},
                                headers=owner.headers)
    assert added.status_code == 200, added.text
    return owner, members, cid


async def test_a_big_room_resuming_at_once_gets_every_missed_event_once_in_order(
        storm_server: ServerProcess) -> None:
    """Every member of a room of ``ROOM`` connects and joins from the same position at once:
    each ack holds every event after it, once and in position order, and a room the size it
    is; the next live event reaches each once, at the next position."""
    api = Api(storm_server.base_url, await admin_of(storm_server.base_url))
    clients: list[Client] = []
    try:
        owner, members, cid = await big_room(api, storm_server)
        for n in range(3):
            await rest_send(api, owner, cid, f"before {n}")
        first = await Client(api.base_url, "/chat").connect({"token": owner.token})
        clients.append(first)
        point = ok(await first.call("join", {"conversation_id": cid}))
        since = {"position": point["position"], "epoch": point["epoch"]}
        missed = [(await rest_send(api, owner, cid, f"missed {n}"))["id"] for n in range(4)]
        edited = await api.http.patch(f"/api/v1/chat/messages/{missed[0]}",
                                      json={"content": "missed 0 edited"},
                                      headers=owner.headers)
        assert edited.status_code == 200, edited.text

        async def resume(token: str) -> tuple[Client, Any]:
            client = await Client(api.base_url, "/chat").connect({"token": token})
            clients.append(client)
            return client, ok(await client.call("join", {"conversation_id": cid,
                                                         "since": since}))

        resumed = await asyncio.gather(*(resume(m.token) for m in members))
        top = point["position"] + 5
        expected = [(point["position"] + 1 + n, "chat_message") for n in range(4)] + [
            (top, "message_edit")]
        for _, ack in resumed:
            assert [(e["position"], e["event"]) for e in ack["events"]] == expected
            assert [e["message"]["id"] for e in ack["events"][:4]] == missed
            assert ack["position"] == top and ack["has_more"] is False
            assert ack["conversation"]["participants_count"] == ROOM
            assert ack["conversation"]["unread_count"] == 7  # none read
        live = await rest_send(api, owner, cid, "live")
        for client, _ in resumed:
            event = await client.next("chat_message")
            assert event["message"]["id"] == live["id"] and event["position"] == top + 1
        await rest_send(api, owner, cid, "barrier")
        for client, _ in resumed:
            barrier = await client.next("chat_message")
            assert barrier["message"]["content"] == "barrier"
            assert not client.pending("chat_message") and not client.pending("message_edit")
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        await api.aclose()


async def test_a_big_room_resuming_at_once_on_the_raw_door_gets_each_missed_event_once(
        storm_server: ServerProcess) -> None:
    """The same on ``/ws/chat/``: every member resumes with ``?since=`` at once and gets the
    history page, then every missed event once and in position order (their frames encoded
    once for all), then the next live event once."""
    api = Api(storm_server.base_url, await admin_of(storm_server.base_url))
    try:
        owner, members, cid = await big_room(api, storm_server)
        await rest_send(api, owner, cid, "before")
        point = (await api.http.get(f"/api/v1/chat/sessions/{cid}/events",
                                    params={"since": 0}, headers=owner.headers)).json()
        missed = [(await rest_send(api, owner, cid, f"missed {n}"))["id"] for n in range(4)]
        top = point["position"] + 4
        url = (f"{storm_server.ws_url}/ws/chat/{cid}/?since={point['position']}"
               f"&epoch={point['epoch']}&token=")
        async with contextlib.AsyncExitStack() as stack:
            clients = await asyncio.gather(*(stack.enter_async_context(raw(url + m.token))
                                             for m in members))
            # Closed together (one after the other, each close would wait for its answer).
            stack.push_async_callback(lambda: asyncio.gather(
                *(client.ws.close() for client in clients), return_exceptions=True))

            async def caught_up(client: RawClient) -> None:
                await client.next("recent_messages")
                await client.next(lambda f: f.get("position") == top)

            await asyncio.gather(*(caught_up(client) for client in clients))
            live = await rest_send(api, owner, cid, "live")
            for client in clients:
                frame = await client.next(lambda f: f.get("position") == top + 1)
                assert frame["message_id"] == live["id"]
                replayed = [f for f in client.frames if "position" in f]
                assert [f["position"] for f in replayed] == list(
                    range(point["position"] + 1, top + 2))
                assert [f["message_id"] for f in replayed] == [*missed, live["id"]]
    finally:
        await api.aclose()


# -- cluster presence (Redis) -----------------------------------------------------------------


class Node:
    """One node's presence scripts, called straight on a Redis of the test's own."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    async def run(self, script: str, *args: Any) -> Any:
        return await self.client.eval(script, 0, "storm:", self.name, *args)

    async def beat(self) -> None:
        await self.run(scripts.HEARTBEAT, 60_000)


async def commands(client: Any) -> dict[str, int]:
    """Calls per Redis command since the last CONFIG RESETSTAT (scripts' calls included)."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(figures["calls"])
            for name, figures in stats.items()}


async def test_cluster_presence_counts_a_big_room_without_walking_it(
        redis: PrivateRedis) -> None:
    """A join, a leave and a room's size in a room of 300 read per-node and per-actor tallies,
    not every entry of the room (a reconnect storm of n joins walked n² entries); the figures
    are those of the walk: an actor on two nodes counts once, a dead node's actors stop
    counting at once (the room is walked until it is reaped) and its reap reports them."""
    client = Redis.from_url(redis.url)
    try:
        a, b = Node(client, "a"), Node(client, "b")
        await a.beat()
        await b.beat()
        room = "conversation:1"
        for n in range(300):
            assert await a.run(scripts.ENTER, room, f"user:{n}") == [1, n + 1]
        await client.config_resetstat()
        assert await b.run(scripts.ENTER, room, "user:0") == [0, 300]  # on two nodes: once
        assert await b.run(scripts.ENTER, room, "user:900") == [1, 301]
        assert await a.run(scripts.EXIT, room, "user:5") == [1, 300]
        assert await a.run(scripts.ROOM_SIZE, room) == 300
        used = await commands(client)
        assert "hgetall" not in used and "hkeys" in used, used

        await client.delete("storm:node:b")  # b's heartbeat expired; not reaped yet
        assert await a.run(scripts.ROOM_SIZE, room) == 299  # user:900 was on b alone
        assert await a.run(scripts.ENTER, room, "user:901") == [1, 300]
        departures = departures_from_json(await a.run(scripts.REAP, "b"))
        assert departures.left == [(room, "user:900", 300)]  # user:0 is still on a
        await client.config_resetstat()
        assert await a.run(scripts.ROOM_SIZE, room) == 300
        assert "hgetall" not in await commands(client)
        for n in [*range(300), 901]:
            await a.run(scripts.EXIT, room, f"user:{n}")
        assert await a.run(scripts.ROOM_SIZE, room) == 0
        assert not await client.keys("storm:room*")
    finally:
        await client.aclose()


async def test_reaping_a_node_that_kept_no_tallies_leaves_the_others_counts(
        redis: PrivateRedis) -> None:
    """A node still on scripts that kept no tallies wrote its room entries alone; when it is
    reaped, nothing is taken off the tallies for them, so an actor it shared with a node on
    these scripts still counts."""
    client = Redis.from_url(redis.url)
    try:
        new, old = Node(client, "new"), Node(client, "old")
        await new.beat()
        await old.beat()
        room = "conversation:1"
        assert await new.run(scripts.ENTER, room, "user:a") == [1, 1]
        # What the earlier ENTER wrote: the entry and the room's sets, no tallies.
        for actor in ("user:a", "user:b"):
            await client.hincrby(f"storm:room:{room}", f"old|{actor}", 1)
        await client.sadd("storm:rooms", room)
        await client.sadd("storm:n:old:rooms", room)
        await client.delete("storm:node:old")
        departures_from_json(await new.run(scripts.REAP, "old"))
        assert await new.run(scripts.ROOM_SIZE, room) == 1  # user:a, still on the new node
        assert await new.run(scripts.EXIT, room, "user:a") == [1, 0]
        assert not await client.keys("storm:room*")
    finally:
        await client.aclose()
