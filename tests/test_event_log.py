"""The per-conversation event log (issue 18, CONTRACT §9): positions on live events, resume
from a position on every door, retention and the epoch.

The first tests run the chat service in this process over a database of their own (SQLite and
PostgreSQL); the others drive real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tortoise import connections

from backend.realtime.sequence import REPLAY_CONCURRENCY, Delivery, RoomPositions
from backend.service import resume
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.errors import ChatError
from backend.settings import Settings
from backend.storage import eventlog
from models import ConversationEvent, Message, Reaction
from tests.support.client import Api, admin_of, with_admin
from tests.support.in_process import (
    RecordingSink,
    group_of,
    users,
)
from tests.support.server import ServerProcess, start_server
from tests.test_raw_connection import until
from tests.test_raw_support import device_conversation, raw, rest_send
from tests.test_socketio_helpers import chat_client, group, ok, refused

V1 = "/api/v1/chat"
CHANGES = ["chat_message", "chat_message", "message_edit", "message_reaction",
           "read_receipt", "message_status_update", "message_delete", "conversation_closed"]


def service(**env: str) -> ChatService:
    return ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40, **env}).limits)


async def every_change(chat: ChatService) -> tuple[int, Actor, Actor]:
    """One of each logged change in a new group; returns it and its two members."""
    people = await users(2)
    cid = await group_of(chat, people)
    a, b = Actor.of_user(people[0]), Actor.of_user(people[1])
    first, _ = await chat.send_message(a, cid, {"content": "one"})
    second, _ = await chat.send_message(a, cid, {"content": "two"})
    await chat.edit_message(a, first["id"], "one, edited")
    await chat.toggle_reaction(b, first["id"], "+1")
    await chat.mark_read(b, cid, up_to_message_id=first["id"])
    await chat.set_message_status(b, second["id"], "delivered")
    await chat.delete_message(a, second["id"])
    await chat.close_conversation(a, cid)
    return cid, a, b


async def test_every_change_is_logged_at_the_next_position_and_published_at_it(
        each_database: str) -> None:
    chat = service()
    sink = chat.sink
    assert isinstance(sink, RecordingSink)
    cid, _, b = await every_change(chat)
    live = [(e.name, e.position) for e in sink.events if e.position is not None]
    assert live == [(name, n) for n, name in enumerate(CHANGES, 1)]
    assert all(e.payload["position"] == e.position for e in sink.events if e.position)
    # Typing and inbox updates have none.
    assert {e.name for e in sink.events if e.position is None} <= {"conversation_updated"}

    resumed = await chat.events_since(b, cid, 0, await chat.log_epoch())
    assert [(e["event"], e["position"]) for e in resumed["events"]] == live
    assert resumed["position"] == len(CHANGES) and resumed["has_more"] is False
    # Each replayed event is its live payload (a message as it is now).
    by_position = {e.position: e.payload for e in sink.events if e.position}
    for event in resumed["events"][2:]:
        assert {k: v for k, v in event.items() if k != "event"} == by_position[event["position"]]
    assert resumed["events"][0]["message"]["content"] == "one, edited"
    page = await chat.events_since(b, cid, 3, None, limit=2)
    assert [e["position"] for e in page["events"]] == [4, 5]
    assert page["has_more"] is True and page["position"] == 5
    replayed, next_after = await chat.replay_page(cid, 5)
    assert [e.position for e in replayed] == [6, 7, 8] and next_after is None


async def test_a_resume_past_the_retention_or_across_an_epoch_must_resync(
        each_database: str) -> None:
    chat = service(EVENT_LOG_MAX_EVENTS="3")
    cid, _, b = await every_change(chat)
    epoch = await chat.log_epoch()
    assert len(epoch) >= 16
    # Past the count, even before anything is deleted.
    with pytest.raises(ChatError) as error:
        await chat.events_since(b, cid, 4, epoch)
    assert (error.value.code, error.value.status) == ("resync_required", 410)
    assert (await chat.events_since(b, cid, 5, epoch))["position"] == 8
    # Trimming deletes what is kept no more, and raises the floor.
    assert await chat.trim_log() > 0
    assert await ConversationEvent.filter(conversation_id=cid).count() == 3
    assert (await eventlog.bounds(cid)) == eventlog.LogBounds(8, 5)
    # Past the age: everything older than 0 s is gone.
    aged = service(EVENT_LOG_MAX_AGE_SECONDS="0")
    await aged.trim_log()
    assert await ConversationEvent.filter(conversation_id=cid).count() == 0
    with pytest.raises(ChatError):
        await chat.events_since(b, cid, 7, epoch)
    assert (await chat.events_since(b, cid, 8, epoch))["events"] == []
    # A position the log never reached, or another epoch.
    for since, given in ((9, epoch), (8, "another")):
        with pytest.raises(ChatError) as error:
            await chat.events_since(b, cid, since, given)
        assert error.value.code == "resync_required"
    await eventlog.reset_epoch("reset-by-an-operator")
    assert await chat.log_epoch() == "reset-by-an-operator"
    with pytest.raises(ChatError):
        await chat.events_since(b, cid, 8, epoch)


async def test_the_count_trim_reads_the_log_only_where_it_deletes(
        sqlite_database: str) -> None:
    _, rows = await connections.get("default").execute_query(
        "EXPLAIN QUERY PLAN " + eventlog.BELOW_FLOORS)
    plan = [str(row["detail"]) for row in rows]
    # The conversations are scanned; the log is only searched, by its (conversation,
    # position) index under each one's floor, and by id to delete.
    assert "SCAN c" in plan, plan
    assert [step for step in plan if step.startswith("SEARCH e USING COVERING INDEX")
            and "conversation_id=? AND position<?" in step], plan
    assert not [step for step in plan if step.startswith("SCAN")
                and ("conversation_events" in step or step.startswith("SCAN e"))], plan


async def test_a_replay_reads_the_log_a_page_at_a_time(
        each_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume, "REPLAY_PAGE", 3)
    chat = service()
    cid, _, _ = await every_change(chat)
    pages, after = [], 0
    while True:
        replayed, next_after = await chat.replay_page(cid, after)
        pages.append([e.position for e in replayed])
        if next_after is None:
            break
        after = next_after
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8]]


async def test_a_change_racing_a_delete_sees_it_under_the_lock(
        each_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each change re-reads its message under the conversation's lock: an edit or reaction
    of a message deleted after it was checked is refused (the content stays deleted, nothing
    is logged after the delete), and a second delete logs nothing."""
    chat = service()
    sink = chat.sink
    assert isinstance(sink, RecordingSink)
    people = await users(2)
    cid = await group_of(chat, people)
    a, b = Actor.of_user(people[0]), Actor.of_user(people[1])
    checked = chat._may_write
    writable = chat.grants.writable

    def deleting_meanwhile(message_id: int, step: Any) -> Any:
        """``step`` of a change, after which the message is deleted (once)."""
        async def run(actor: Actor, conversation_id: int) -> Any:
            result = await step(actor, conversation_id)
            monkeypatch.undo()
            await chat.delete_message(a, message_id)
            return result
        return run

    for attempt in ("edit", "reaction", "delete"):
        message, _ = await chat.send_message(a, cid, {"content": attempt})
        if attempt == "delete":
            monkeypatch.setattr(chat.grants, "writable",
                                deleting_meanwhile(message["id"], writable))
        else:
            monkeypatch.setattr(chat, "_may_write", deleting_meanwhile(message["id"], checked))
        if attempt == "edit":
            with pytest.raises(ChatError) as error:
                await chat.edit_message(a, message["id"], "back again")
            assert error.value.code == "message_deleted"
        elif attempt == "reaction":
            with pytest.raises(ChatError) as error:
                await chat.toggle_reaction(b, message["id"], "+1")
            assert error.value.code == "message_deleted"
        else:
            answer = await chat.delete_message(a, message["id"])
            assert answer["is_deleted"] is True
        stored = await Message.get(id=message["id"])
        assert stored.is_deleted and stored.content == "" and not stored.is_edited
        assert not await Reaction.filter(message_id=message["id"]).exists()
        logged = [e.name for e in sink.events
                  if e.position is not None and e.payload.get("message_id", e.payload.get(
                      "message", {}).get("id")) == message["id"]]
        assert logged == ["chat_message", "message_delete"], (attempt, logged)


async def test_a_status_report_that_changes_nothing_is_not_logged(
        each_database: str) -> None:
    """A client repeating "read" (or "delivered" after it) takes no position and tells no
    one; another reader's first report still counts."""
    chat = service()
    sink = chat.sink
    assert isinstance(sink, RecordingSink)
    people = await users(3)
    cid = await group_of(chat, people)
    a, b, c = (Actor.of_user(person) for person in people)
    message, _ = await chat.send_message(a, cid, {"content": "hello"})
    answers = [(await chat.set_message_status(b, message["id"], status))["status"]
               for status in ("delivered", "read", "read", "delivered", "read")]
    assert answers == ["delivered", "read", "read", "read", "read"]
    assert [e.payload["status"] for e in sink.named("message_status_update")] == [
        "delivered", "read"]
    assert await chat.log_position(cid) == 3
    await chat.set_message_status(c, message["id"], "delivered")  # c's receipt is new
    assert await chat.log_position(cid) == 4


# -- a node's rooms following the log (backend/realtime/sequence.py) -------------------------

def delivery(cid: int, position: int) -> Delivery:
    return ("message_delete", {
        "payload": {"conversation_id": cid, "message_id": position, "position": position},
        "rooms": [f"conversation:{cid}"], "skip": [], "origin": None, "position": position,
        "published_at": None})


class FakeLog:
    """Conversation logs in memory, each ``top`` events long, read ``page`` events at a time.
    The first ``failures`` reads fail; while ``gate`` is set and closed, reads wait."""

    def __init__(self, top: dict[int, int], page: int = 500) -> None:
        self.top = top
        self.page = page
        self.failures = 0
        self.gate: asyncio.Event | None = None
        self.reads: list[tuple[int, int]] = []
        self.reading = self.most = 0

    async def log_position(self, conversation_id: int) -> int:
        return self.top[conversation_id]

    async def replay_envelopes(self, conversation_id: int,
                               after: int) -> tuple[list[Delivery], int | None]:
        self.reads.append((conversation_id, after))
        self.reading += 1
        self.most = max(self.most, self.reading)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.failures:
                self.failures -= 1
                raise ConnectionError("the database is away")
            page = list(range(after + 1, min(after + self.page, self.top[conversation_id]) + 1))
            return ([delivery(conversation_id, p) for p in page],
                    page[-1] if len(page) == self.page else None)
        finally:
            self.reading -= 1


def following(log: FakeLog) -> tuple[RoomPositions, list[tuple[int, int]]]:
    delivered: list[tuple[int, int]] = []
    positions = RoomPositions(log, lambda name, envelope, passed: delivered.append(
        (envelope["payload"]["conversation_id"], envelope["position"])))
    return positions, delivered


async def test_a_room_starts_from_the_position_read_before_its_first_member_joined() -> None:
    """Events committed between the joiner's read and the room's start, still on their way
    here, are delivered (the joiner read neither), not dropped as delivered already."""
    log = FakeLog({1: 7})  # the log is at 7 when the room starts; the joiner read 5
    positions, _ = following(log)
    positions.occupied("conversation:1", 5)
    for position in (6, 7):
        name, envelope = delivery(1, position)
        assert positions.admit(name, envelope, position)  # delivered live, in order
    assert not positions.admit(*delivery(1, 7), 7)  # once
    assert log.reads == []


async def test_a_failed_catch_up_is_tried_again_until_what_waits_is_delivered() -> None:
    """The room then goes quiet: no later event would trigger another try."""
    log = FakeLog({1: 3})
    log.failures = 2
    positions, delivered = following(log)
    positions.occupied("conversation:1", 0)
    name, envelope = delivery(1, 3)
    assert not positions.admit(name, envelope, 3)  # 1 and 2 were lost: 3 waits for them
    await until(lambda: delivered == [(1, 1), (1, 2), (1, 3)], within=5)
    assert log.failures == 0 and len(log.reads) == 3


async def test_a_recovery_reads_a_few_rooms_at_a_time_and_delivers_page_by_page() -> None:
    rooms = range(1, 3 * REPLAY_CONCURRENCY + 1)
    log = FakeLog({cid: 5 for cid in rooms}, page=2)
    positions, delivered = following(log)
    for cid in rooms:
        positions.occupied(f"conversation:{cid}", 0)
    log.gate = asyncio.Event()
    positions.recover()  # the node's subscription was lost: every room catches up
    await until(lambda: log.reading == REPLAY_CONCURRENCY)
    for _ in range(10):  # every catch-up has had turns to start its read
        await asyncio.sleep(0)
    assert log.reading == REPLAY_CONCURRENCY
    log.gate.set()
    await until(lambda: len(delivered) == 5 * len(rooms))
    assert log.most == REPLAY_CONCURRENCY
    for cid in rooms:
        assert [p for c, p in delivered if c == cid] == [1, 2, 3, 4, 5]
        assert [after for c, after in log.reads if c == cid] == [0, 2, 4]


async def test_a_member_ahead_of_its_room_gets_each_event_once() -> None:
    """A resume sent a member the events up to 8 while the room here is at 5 (another node
    lost its publishes of 6-8): the catch-up writes 6-8 to the others only; from 9 on the
    member is one of them again."""
    log = FakeLog({1: 8})
    writes: list[tuple[int, frozenset[str]]] = []
    positions = RoomPositions(log, lambda name, envelope, passed: writes.append(
        (envelope["position"], passed)))
    positions.occupied("conversation:1", 5)
    positions.caught_up("conversation:1", "resumed", 8)
    positions.caught_up("conversation:1", "behind", 4)  # the room is past it: nothing kept
    assert not positions.admit(*delivery(1, 8), 8)  # 6 and 7 are missing: read the log
    await until(lambda: [p for p, _ in writes] == [6, 7, 8])
    assert {passed for _, passed in writes} == {frozenset({"resumed"})}
    assert positions.admit(*delivery(1, 9), 9)
    assert positions.passed("conversation:1", 9) == frozenset()


async def test_an_event_filled_from_the_log_keeps_what_it_came_live_with() -> None:
    """2 arrived live (its origin: the sender's socket, not echoed) before 1, lost on its
    way: the catch-up reads 1 and 2 and delivers 2 as it came, origin and all."""
    log = FakeLog({1: 2})
    writes: list[dict[str, Any]] = []
    positions = RoomPositions(log, lambda name, envelope, passed: writes.append(envelope))
    positions.occupied("conversation:1", 0)
    name, live = delivery(1, 2)
    live = {**live, "origin": "sender-socket"}
    assert not positions.admit(name, live, 2)
    await until(lambda: len(writes) == 2)
    assert [w["position"] for w in writes] == [1, 2]
    assert writes[0]["origin"] is None and writes[1] is live


# -- every door, on real servers --------------------------------------------------------------


async def events(api: Api, user: Any, cid: int, since: int, epoch: str | None = None
                 ) -> Any:
    params: dict[str, Any] = {"since": since}
    if epoch is not None:
        params["epoch"] = epoch
    return await api.http.get(f"{V1}/sessions/{cid}/events", params=params,
                              headers=user.headers)


async def changes(api: Api, owner: Any, cid: int) -> list[int]:
    """Three messages, an edit, a reaction and a delete; returns the message ids."""
    ids = [(await rest_send(api, owner, cid, f"m{n}"))["id"] for n in range(3)]
    for method, path, body in (
        ("PATCH", f"{V1}/messages/{ids[0]}", {"content": "m0 edited"}),
        ("POST", f"{V1}/messages/{ids[1]}/reactions", {"emoji": "+1"}),
        ("DELETE", f"{V1}/messages/{ids[2]}", None),
    ):
        response = await api.http.request(method, path, json=body, headers=owner.headers)
        assert response.status_code == 200, response.text
    return ids


async def test_every_door_resumes_from_a_position(server: ServerProcess, api: Api) -> None:
    owner, member = await api.register(), await api.register()
    cid = await group(api, owner, member)
    ids = await changes(api, owner, cid)
    listed = await events(api, member, cid, 0)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    names = ["chat_message"] * 3 + ["message_edit", "message_reaction", "message_delete"]
    assert [(e["event"], e["position"]) for e in body["events"]] == list(
        zip(names, range(1, 7), strict=True))
    assert body["position"] == 6 and body["has_more"] is False
    epoch = body["epoch"]
    assert [e["message"]["id"] for e in body["events"][:3]] == ids
    assert (await events(api, member, cid, 4, epoch)).json()["events"][0]["event"] == (
        "message_reaction")

    # Socket.IO: the missed events in the ack, then live ones with their position, once.
    sio = await chat_client(api, member)
    try:
        ack = ok(await sio.call("join", {"conversation_id": cid,
                                         "since": {"position": 2, "epoch": epoch}}))
        assert [e["position"] for e in ack["events"]] == [3, 4, 5, 6]
        assert ack["events"][0]["event"] == "chat_message" and ack["position"] == 6
        assert ack["epoch"] == epoch and ack["conversation"]["id"] == cid
        await rest_send(api, owner, cid, "live")
        live = await sio.next("chat_message")
        assert live["position"] == 7 and live["conversation_id"] == cid
        wrong = await sio.call("join", {"conversation_id": cid,
                                        "since": {"position": 2, "epoch": "nope"}})
        assert refused(wrong, "resync_required")["epoch"] == epoch
        # A plain join's page comes with the position it shows: the point to resume from.
        plain = ok(await sio.call("join", {"conversation_id": cid}))
        assert plain["position"] == 7 and plain["epoch"] == epoch
        assert plain["messages"][-1]["content"] == "live"
        await rest_send(api, owner, cid, "next")
        resumed = ok(await sio.call("join", {"conversation_id": cid,
                                             "since": {"position": plain["position"],
                                                       "epoch": epoch}}))
        assert [e["position"] for e in resumed["events"]] == [8]
    finally:
        await sio.close()

    # Raw routes: the missed events as the route's frames, before live ones.
    ws = server.ws_url
    async with (
        raw(f"{ws}/ws/chat/{cid}/?token={member.token}&since=5&epoch={epoch}") as chat,
        raw(f"{ws}/api/v1/chat/ws/{cid}?token={member.token}&since=5&epoch={epoch}") as sess,
    ):
        # The history page shows what came before the resume point; what the replay sends
        # is not in it too: each message once.
        page = [m["id"] for m in (await chat.next("recent_messages"))["messages"]]
        assert ids[:2] == page[:2], page
        deleted = await chat.next("message_delete")
        assert deleted["position"] == 6 and deleted["message_id"] == ids[2]
        message = await chat.next("chat_message")
        assert message["position"] == 7 and message["content"] == "live"
        following = await chat.next("chat_message")
        assert following["position"] == 8
        assert not {message["message_id"], following["message_id"]} & set(page), page
        assert (await sess.next("message_delete"))["position"] == 6
        assert (await sess.next("message"))["position"] == 7
        assert (await sess.next("message"))["position"] == 8
        await rest_send(api, owner, cid, "after")
        assert (await chat.next("chat_message"))["position"] == 9
        assert (await sess.next("message"))["position"] == 9
        positions = [f.get("position") for f in chat.frames if f.get("position")]
        assert positions == [6, 7, 8, 9]

    device_id, dcid = await device_conversation(api)
    agent = await api.register(role="agent")
    for n in range(2):
        await rest_send(api, agent, dcid, f"to the device {n}")
    async with raw(f"{ws}/ws/mobile/chat/{dcid}/?device_id={device_id}&since=1") as mobile:
        replayed = await mobile.next("chat_message")
        assert replayed["position"] == 2 and replayed["message"]["content"] == "to the device 1"


class EpochLock:
    """The log's epoch table locked from a PostgreSQL connection of the test's own: a join
    reads the epoch, so it waits (held there) until ``release``."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.transaction = db.transaction()

    @classmethod
    async def open(cls, database_url: str) -> EpochLock:
        import asyncpg

        return cls(await asyncpg.connect(database_url))

    async def take(self) -> None:
        await self.transaction.start()
        await self.db.execute('LOCK TABLE "event_log_epoch" IN ACCESS EXCLUSIVE MODE')

    async def waited_on(self) -> None:
        """Returns once a statement of the server waits on the lock (polled: PostgreSQL
        tells who waits only when asked)."""
        async with asyncio.timeout(10):
            while not await self.db.fetchval(  # noqa: ASYNC110
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE c.relname = 'event_log_epoch' AND NOT l.granted"):
                await asyncio.sleep(0.01)

    async def release(self) -> None:
        await self.transaction.rollback()

    async def close(self) -> None:
        if not self.db.is_closed():
            with contextlib.suppress(Exception):
                await self.transaction.rollback()
            await self.db.close()


async def test_a_resume_keeps_the_live_events_of_the_sockets_other_conversations(
        postgres_server: ServerProcess) -> None:
    """While a ``join`` with ``since`` is answered (held here on a lock of the log's epoch
    table), an event of another conversation the socket joined is kept back, then follows
    the ack: positions are per conversation, so the answer covers none of its events."""

    api = Api(postgres_server.base_url, await admin_of(postgres_server.base_url))
    owner, member = await api.register(), await api.register()
    resumed, other = await group(api, owner, member), await group(api, owner, member)
    for n in range(3):
        await rest_send(api, owner, resumed, f"missed {n}")
    sio = await chat_client(api, member)
    lock = await EpochLock.open(postgres_server.env["DATABASE_URL"])
    try:
        epoch = ok(await sio.call("join", {"conversation_id": other}))["epoch"]
        await lock.take()
        joining = asyncio.ensure_future(sio.call("join", {
            "conversation_id": resumed, "since": {"position": 0, "epoch": epoch}}))
        # Once the resume waits on the lock, the socket's live events are held.
        await lock.waited_on()
        live = await rest_send(api, owner, other, "meanwhile")  # position 1 of its log
        await lock.release()
        ack = ok(await joining)
        assert [e["position"] for e in ack["events"]] == [1, 2, 3] and ack["position"] == 3
        event = await sio.next("chat_message", lambda e: e["conversation_id"] == other,
                               within=5)
        assert event["message"]["id"] == live["id"] and event["position"] == 1
    finally:
        await lock.close()
        await sio.close()
        await api.aclose()


async def test_a_plain_join_answers_before_any_live_event_of_its_conversation(
        postgres_server: ServerProcess) -> None:
    """A ``join`` without ``since`` holds the socket's live frames while it reads the page
    (held here on a lock of the log's epoch table, read last): a message sent meanwhile
    reaches the socket after the ack, on the wire, never before it (a client taking the
    ack's page as its history would have dropped it, and one sent just before the page
    read was in both)."""
    import websockets

    api = Api(postgres_server.base_url, await admin_of(postgres_server.base_url))
    owner, member = await api.register(), await api.register()
    cid = await group(api, owner, member)
    lock = await EpochLock.open(postgres_server.env["DATABASE_URL"])
    url = f"{postgres_server.ws_url}/socket.io/?EIO=4&transport=websocket"
    try:
        async with websockets.connect(url) as ws:
            assert str(await ws.recv()).startswith("0{")
            await ws.send(f'40/chat,{{"token": "{member.token}"}}')
            assert str(await ws.recv()).startswith("40/chat,")
            await lock.take()
            await ws.send(f'42/chat,1["join",{{"conversation_id": {cid}}}]')
            await lock.waited_on()
            live = await rest_send(api, owner, cid, "meanwhile")
            await lock.release()
            frames: list[str] = []
            async with asyncio.timeout(10):
                while not any(live["content"] in frame for frame in frames):
                    frame = str(await ws.recv())
                    if frame.startswith(("43/chat,1", '42/chat,["chat_message"')):
                        frames.append(frame)
            assert frames[0].startswith("43/chat,1"), frames  # the ack first
            ack = orjson.loads(frames[0][len("43/chat,1"):])[0]
            assert ack["ok"] and ack["messages"] == [] and ack["position"] == 0, ack
            assert frames[1].startswith('42/chat,["chat_message"') and len(frames) == 2, frames
    finally:
        await lock.close()
        await api.aclose()


@pytest.fixture(scope="module")
def short_log(work_dir: Path) -> Iterator[ServerProcess]:
    """A server whose log keeps 3 events per conversation."""
    server = with_admin(start_server(work_dir / "short-log", EVENT_LOG_MAX_EVENTS="3"))
    yield server
    server.stop()


async def test_a_client_away_past_the_retention_must_resync_on_every_door(
        short_log: ServerProcess) -> None:
    api = Api(short_log.base_url, await admin_of(short_log.base_url))
    try:
        owner, member = await api.register(), await api.register()
        cid = await group(api, owner, member)
        await changes(api, owner, cid)  # 6 events: positions 1-3 are past the retention
        gone = await events(api, member, cid, 1)
        assert gone.status_code == 410, gone.text
        assert gone.json()["code"] == "resync_required" and gone.json()["position"] == 6
        assert (await events(api, member, cid, 3)).status_code == 200

        sio = await chat_client(api, member)
        try:
            refused(await sio.call("join", {"conversation_id": cid, "since": {"position": 1}}),
                    "resync_required")
        finally:
            await sio.close()
        ws = short_log.ws_url
        async with (
            raw(f"{ws}/ws/chat/{cid}/?token={member.token}&since=1") as chat,
            raw(f"{ws}/api/v1/chat/ws/{cid}?token={member.token}&since=1") as sess,
        ):
            resync = await chat.next("resync_required")
            assert resync["position"] == 6 and resync["conversation_id"] == cid
            assert (await sess.next("resync_required"))["position"] == 6
        device_id, dcid = await device_conversation(api)
        agent = await api.register(role="agent")
        for n in range(5):
            await rest_send(api, agent, dcid, f"m{n}")
        async with raw(f"{ws}/ws/mobile/chat/{dcid}/?device_id={device_id}&since=0") as mobile:
            assert (await mobile.next("resync_required"))["position"] == 5
    finally:
        await api.aclose()
