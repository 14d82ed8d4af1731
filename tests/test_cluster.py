"""Two real nodes sharing PostgreSQL and Redis: delivery across nodes on every door, exactly
once; presence and ws-stats summed over the cluster; a node killed with SIGKILL stops counting
within the documented bound (node TTL + one heartbeat)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from typing import Any

import asyncpg
import httpx
import orjson

from tests.support.client import Api, TestUser
from tests.support.cluster import NODE_TTL_SECONDS, Cluster
from tests.support.server import ServerProcess
from tests.test_raw_support import device_conversation, raw, rest_send
from tests.test_socketio_helpers import Client, chat_client, group, ok

# A dead node stops counting within its TTL; the reaper announces its users within one more
# heartbeat (TTL / 3). The slack covers a loaded test machine.
DEPARTURE_BOUND = NODE_TTL_SECONDS + NODE_TTL_SECONDS / 3 + 3


async def stats(node: ServerProcess, user: TestUser) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.base_url, timeout=10) as http:
        response = await http.get("/api/v1/chat/ws-stats", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_socketio_clients_on_two_nodes_see_each_other_once(
    apis: tuple[Api, Api]
) -> None:
    on_a, on_b = apis
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    a = await chat_client(on_a, alice, cid)
    b = await chat_client(on_b, bob, cid)
    try:
        # Bob's arrival on B is announced to Alice on A, with the cluster's count.
        joined = await a.next("user_joined", lambda e: e["user_id"] == bob.id)
        assert joined["total_users"] == 2
        for sender, receiver, text in ((a, b, "from A"), (b, a, "from B")):
            for n in range(3):
                ok(await sender.call("chat_message", {"conversation_id": cid,
                                                      "content": f"{text} {n}"}))
            got = [(await receiver.next("chat_message"))["message"]["content"]
                   for _ in range(3)]
            assert got == [f"{text} {n}" for n in range(3)]  # in order
        # A barrier: once this arrives, any duplicate of the earlier ones would have too.
        ok(await a.call("chat_message", {"conversation_id": cid, "content": "barrier"}))
        assert (await b.next("chat_message"))["message"]["content"] == "barrier"
        assert b.pending("chat_message") == []
        assert a.pending("chat_message") == []  # Socket.IO senders are not echoed
    finally:
        await a.close()
        await b.close()


async def test_every_door_on_either_node_sees_every_message_once(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    on_a, on_b = apis
    node_a, node_b = cluster.nodes[:2]
    device_id, cid = await device_conversation(on_a)
    sio_agent, ws_agent, session_agent, rest_agent, inbox_agent = [
        await on_a.register(role="agent") for _ in range(5)
    ]
    sio = await chat_client(on_a, sio_agent, cid)
    staff_inbox = await Client(node_b.base_url, "/conversations").connect(
        {"token": inbox_agent.token})
    try:
        async with (
            raw(f"{node_a.ws_url}/ws/chat/{cid}/?token={ws_agent.token}") as chat,
            raw(f"{node_b.ws_url}/ws/mobile/chat/{cid}/?device_id={device_id}") as mobile,
            raw(f"{node_b.ws_url}/api/v1/chat/ws/{cid}?token={session_agent.token}") as session,
            raw(f"{node_a.ws_url}/ws/conversations/?token={inbox_agent.token}") as raw_inbox,
        ):
            await chat.next("recent_messages")
            await mobile.next("connection_established")
            await session.next("user_joined")
            await raw_inbox.next("connection_established")

            ack = ok(await sio.call("chat_message", {"conversation_id": cid,
                                                     "content": "sio on A"}))
            sio_seen = [ack["message"]["content"]]
            await chat.send({"type": "chat_message", "content": "ws-chat on A"})
            await mobile.send({"type": "chat_message", "content": "mobile on B"})
            await session.send({"message_type": "text", "content": "session on B"})
            await rest_send(on_b, rest_agent, cid, "rest on B")
            everything = Counter({"sio on A", "ws-chat on A", "mobile on B", "session on B",
                                  "rest on B"})

            def contents(client: Any, kind: str) -> Counter[str]:
                if kind == "message":
                    return Counter(f["content"] for f in client.seen("message"))
                return Counter(f["message"]["content"] for f in client.seen(kind))

            for client, kind in ((chat, "chat_message"), (mobile, "chat_message"),
                                 (session, "message")):
                for _ in range(len(everything)):
                    await client.next(kind)
                await client.quiet(kind)
                assert contents(client, kind) == everything, kind
            for _ in range(len(everything) - 1):
                sio_seen.append((await sio.next("chat_message"))["message"]["content"])
            assert Counter(sio_seen) == everything
            assert sio.pending("chat_message") == []

            # The customer's message reached staff inboxes on both nodes, once each.
            pushed = await raw_inbox.next("new_customer_message")
            assert pushed["message"]["content"] == "mobile on B"
            await raw_inbox.quiet("new_customer_message")
            pushed = await staff_inbox.next("new_customer_message",
                                            lambda e: e["conversation_id"] == cid)
            assert pushed["message"]["content"] == "mobile on B"
            assert staff_inbox.pending("new_customer_message") == []
    finally:
        await sio.close()
        await staff_inbox.close()


async def test_a_mobile_socket_told_it_is_connected_gets_what_is_sent_after(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """``connection_established`` on the mobile route means the socket is in the room: it
    comes after the join, whose start in the log is read first (the first member of the
    conversation on the node). Here that read is held up, the conversations' table locked,
    and the welcome waits for it; a message sent once the client was told it is connected
    reaches it."""
    on_a, on_b = apis
    node_b = cluster.nodes[1]
    device_id, cid = await device_conversation(on_a)
    agent = await on_a.register(role="agent")
    # The conversation's access facts held on B (a read of its messages there), so the
    # handshake itself reads nothing of the locked table.
    response = await on_b.http.get(f"/api/v1/chat/sessions/{cid}/messages",
                                   headers=agent.headers)
    assert response.status_code == 200, response.text
    locker = await asyncpg.connect(cluster.database_url)
    try:
        locking = locker.transaction()
        await locking.start()
        await locker.execute('LOCK TABLE "conversations" IN ACCESS EXCLUSIVE MODE')
        async with raw(f"{node_b.ws_url}/ws/mobile/chat/{cid}/?device_id={device_id}") as mobile:
            try:
                await mobile.quiet("connection_established", wait=1.0)
            finally:
                await locking.rollback()
            await mobile.next("connection_established")
            await rest_send(on_b, agent, cid, "right after")
            got = await mobile.next("chat_message")
            assert got["message"]["content"] == "right after"
    finally:
        await locker.close()


async def test_presence_and_stats_add_up_across_nodes(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    on_a, on_b = apis
    node_a, node_b = cluster.nodes[:2]
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    a1 = await chat_client(on_a, alice, cid)
    a2 = await chat_client(on_b, alice, cid)  # Alice's second tab, on the other node
    b = await chat_client(on_b, bob, cid)
    try:
        joined = await a1.next("user_joined", lambda e: e["user_id"] == bob.id)
        assert joined["total_users"] == 2  # Alice's two tabs count once
        ok(await b.call("typing_indicator", {"conversation_id": cid, "is_typing": True}))
        await a1.next("typing_indicator", lambda e: e["user_id"] == bob.id)
        for node in (node_a, node_b):
            session = (await stats(node, alice))["sessions"][str(cid)]
            assert session == {"user_count": 2, "typing_count": 1, "connection_count": 3}
        totals = {(await stats(node, alice))["total_connections"] for node in (node_a, node_b)}
        assert len(totals) == 1  # both nodes see the same cluster

        # Alice closes the tab on A: still online through B, so nobody hears she left.
        await a1.close()
        ok(await b.call("chat_message", {"conversation_id": cid, "content": "still there?"}))
        await a2.next("chat_message")
        assert [e for e in b.pending("user_left") if e["user_id"] == alice.id] == []
        assert [e for e in b.pending("user_status") if e["status"] == "offline"] == []
        session = (await stats(node_a, bob))["sessions"][str(cid)]
        assert session["connection_count"] == 2 and session["user_count"] == 2

        # Her last tab closes: Bob hears she left and is offline.
        await a2.close()
        left = await b.next("user_left", lambda e: e["user_id"] == alice.id)
        assert left["total_users"] == 1
        await b.next("user_status", lambda e: e["user_id"] == alice.id
                     and e["status"] == "offline")
    finally:
        for client in (a1, a2, b):
            await client.close()


async def test_a_killed_node_stops_counting_within_the_bound(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    on_a, _ = apis
    node_a = cluster.nodes[0]
    doomed = cluster.start_node()
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    a = await chat_client(on_a, alice, cid)
    doomed_api = Api(doomed.base_url, on_a.admin)
    b = await chat_client(doomed_api, bob, cid)
    try:
        await a.next("user_joined", lambda e: e["user_id"] == bob.id)
        assert (await stats(node_a, alice))["sessions"][str(cid)]["user_count"] == 2

        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
        started = asyncio.get_running_loop().time()
        left = await a.next("user_left", lambda e: e["user_id"] == bob.id,
                            within=DEPARTURE_BOUND)
        assert left["total_users"] == 1
        await a.next("user_status", lambda e: e["user_id"] == bob.id
                     and e["status"] == "offline", within=2)
        assert asyncio.get_running_loop().time() - started <= DEPARTURE_BOUND
        session = (await stats(node_a, alice))["sessions"][str(cid)]
        assert session == {"user_count": 1, "typing_count": 0, "connection_count": 1}
        # The survivor carries on: Alice still sends and is stored.
        ok(await a.call("chat_message", {"conversation_id": cid, "content": "anyone?"}))
    finally:
        await a.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(b.close(), 3)
        await doomed_api.aclose()


async def test_a_node_drops_its_own_publishes_before_decoding_them(redis_url: str) -> None:
    """Every node hears its own publishes on the channel; its listener passes on only the
    other nodes' (and the heartbeat still counts as hearing the cluster)."""
    from backend.cluster.link import RedisLink
    from backend.cluster.manager import RedisFanoutManager
    from backend.realtime.codec import OrjsonCodec
    from tests.test_raw_connection import until

    link = RedisLink(redis_url, f"own-{asyncio.get_running_loop().time()}")
    manager = RedisFanoutManager(link, heartbeat_seconds=5)
    manager.json = OrjsonCodec  # what the server's packet class gives it
    heard = manager._listen()
    try:
        first = asyncio.ensure_future(anext(heard))
        await until(lambda: manager.listening, within=10)
        mine = {"method": "emit", "event": "e", "data": [1], "host_id": manager.host_id}
        theirs = {**mine, "host_id": "another-node"}
        for message in (mine, {"method": "ping", "host_id": manager.host_id}, theirs):
            await link.client.publish(manager.channel, OrjsonCodec.dumps(message))
        async with asyncio.timeout(10):
            assert OrjsonCodec.loads(await first) == theirs
        assert manager.last_heard > 0
    finally:
        await heard.aclose()
        await link.client.aclose()


async def test_an_event_from_another_node_is_decoded_and_framed_once_for_all_its_members(
        redis_url: str, monkeypatch: Any) -> None:
    """An event published by another node reaches this node's listener as one message on the
    channel: it is decoded once and encoded once per dialect, whatever the number of members
    it reaches here, and every member of a dialect is handed the same frames."""
    from backend.cluster.link import RedisLink
    from backend.cluster.manager import RedisFanoutManager
    from backend.realtime import dialects
    from backend.realtime.codec import OrjsonCodec
    from backend.realtime.fanout import FANOUT
    from backend.realtime.members import Member
    from backend.realtime.wire import Outgoing
    from backend.service.actors import SYSTEM
    from tests.test_raw_connection import until

    decoded: list[Any] = []
    encoded: Counter[str] = Counter()

    class Counting(OrjsonCodec):
        @staticmethod
        def loads(text: str | bytes, **_: Any) -> Any:
            decoded.append(text)
            return orjson.loads(text)

    def counting(encode: Any) -> Any:
        def wrapper(self: Any, name: str, payload: Any, member: Any) -> Any:
            encoded[type(self).__name__] += 1
            return encode(self, name, payload, member)
        return wrapper

    used = (dialects.WS_CHAT, dialects.WS_SESSION, dialects.CHAT)
    for dialect in used:
        monkeypatch.setattr(type(dialect), "encode", counting(type(dialect).encode))

    class Recorder(Member):
        __slots__ = ("got",)

        def __init__(self, n: int, dialect: Any) -> None:
            super().__init__(f"test:{n}", SYSTEM, dialect, "test")
            self.got: list[Outgoing] = []

        def write(self, out: Outgoing) -> None:
            self.got.append(out)

    link = RedisLink(redis_url, f"once-{asyncio.get_running_loop().time()}")
    manager = RedisFanoutManager(link, heartbeat_seconds=5)
    manager.json = Counting
    members = [Recorder(n, used[n % len(used)]) for n in range(300)]
    for member in members:
        manager.add_member(member)
        manager.join(member, "conversation:7")
    listener = asyncio.ensure_future(manager._thread())  # the stock listener loop
    try:
        await until(lambda: manager.listening, within=10)
        envelope = {"payload": {"conversation_id": 7, "message_id": 1}, "rooms":
                    ["conversation:7"], "skip": [], "origin": None, "published_at": None}
        await link.client.publish(manager.channel, OrjsonCodec.dumps({
            "method": "emit", "event": "message_delete", "data": [envelope], "binary": False,
            "namespace": FANOUT, "room": None, "skip_sid": None, "callback": None,
            "host_id": "another-node"}))
        await until(lambda: all(member.got for member in members), within=10)
        assert len(decoded) == 1
        assert encoded == {type(dialect).__name__: 1 for dialect in used}
        for dialect in used:
            outs = {id(member.got[0]) for member in members if member.dialect is dialect}
            assert len(outs) == 1  # one Outgoing, its frame bytes built once, for them all
        assert all(len(member.got) == 1 for member in members)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await link.client.aclose()


async def test_events_dropped_for_a_full_outbox_are_announced_once_publishing_works(
        redis_url: str) -> None:
    """An event the outbox had no room for is announced like a failed publish: the others
    hear ``eventlog_advanced`` up to its position and catch its room up from the log."""
    from redis.asyncio import Redis

    from backend.cluster.link import RedisLink
    from backend.cluster.manager import RedisFanoutManager
    from backend.realtime.codec import OrjsonCodec
    from backend.realtime.fanout import FANOUT, LOG_ADVANCED

    link = RedisLink(redis_url, f"full-{asyncio.get_running_loop().time()}")
    manager = RedisFanoutManager(link, heartbeat_seconds=5)
    manager.json = OrjsonCodec
    manager.outbox = asyncio.Queue(1)  # full after one event: the writer is not running yet
    redis = Redis.from_url(redis_url)
    channel = redis.pubsub()
    await channel.subscribe(manager.channel)
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):  # subscribed before anything is published
            while (await channel.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                pass
        for position in (1, 2, 3):
            await manager.emit("message_delete", {
                "payload": {"conversation_id": 7, "message_id": 1, "position": position},
                "rooms": ["conversation:7"], "skip": [], "origin": None,
                "position": position, "published_at": None}, namespace=FANOUT)
        assert manager.dropped == 2
        drain = asyncio.ensure_future(manager._drain_outbox())
        heard: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not any(m["event"] == LOG_ADVANCED for m in heard):
                message = await channel.get_message(ignore_subscribe_messages=True,
                                                    timeout=1.0)
                if message is not None:
                    heard.append(orjson.loads(message["data"]))
        assert [m["event"] for m in heard] == ["message_delete", LOG_ADVANCED]
        assert heard[1]["data"] == [{"positions": {"7": 3}}]
        assert manager.lost == {}
    finally:
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        await channel.aclose()
        await redis.aclose()
        await link.client.aclose()


async def test_inbox_changes_cross_redis_batched(cluster: Cluster, apis: tuple[Api, Api]) -> None:
    """Sends to several conversations at once cross Redis in shared inbox controls (one
    control names several conversations); an inbox on the other node hears of every one."""
    from redis.asyncio import Redis

    on_a, _ = apis
    alice, bob = await on_a.register(), await on_a.register()
    bob_on_b = await Client(cluster.nodes[1].base_url, "/conversations").connect(
        {"token": bob.token})
    redis = Redis.from_url(cluster.redis_url)
    channel = redis.pubsub()
    try:
        conversations = [await group(on_a, alice, bob) for _ in range(4)]
        # A new conversation reaches its members' inboxes at creation: take those updates
        # first (the inbox opens before them, so each comes, once; their controls have
        # crossed before the subscription); what comes next is the sends'.
        created = [(await bob_on_b.next("conversation_updated", within=10))["conversation_id"]
                   for _ in conversations]
        assert sorted(created) == sorted(conversations), created
        await channel.subscribe(f"{cluster.prefix}:events")
        await asyncio.gather(*(rest_send(on_a, alice, cid, "hi") for cid in conversations))
        updated: set[int] = set()
        while updated != set(conversations):
            event = await bob_on_b.next("conversation_updated")
            assert event["conversation"]["unread_count"] == 1, event
            updated.add(event["conversation_id"])
        named: list[list[int]] = []
        while (message := await channel.get_message(timeout=0.5)) is not None:
            if message["type"] == "message" and b"service_inbox_changed" in message["data"]:
                ids = orjson.loads(message["data"])["data"][0]["conversation_ids"]
                named.append([cid for cid in ids if cid in conversations])
        assert {cid for ids in named for cid in ids} == set(conversations), named
        assert max(map(len, named)) > 1, named
    finally:
        await channel.aclose()
        await redis.aclose()
        await bob_on_b.close()
