"""Nothing silently missed across nodes (issue 18): two real nodes on PostgreSQL and a
redis-server of the test's own; a sender on node B sends over 100 messages a second, edits,
reacts and deletes, while receivers stay connected on node A through every door.

- Redis is killed (SIGKILL) and started again mid-stream: every receiver ends with every
  event of the log exactly once and in position order, without reconnecting (node A catches
  its rooms up from the log once it listens again).
- Node A is killed (SIGKILL) instead: the receivers reconnect to node B with ``since`` and end
  with every event exactly once.
- Node B stores a message it cannot publish (its link to Redis cut), then is killed: the
  receivers on node A get it once node A finds B dead, with no later event to show the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.client import Api, TestUser, admin_of, with_admin
from tests.support.cluster import Cluster
from tests.support.server import ServerProcess
from tests.support.services import PrivateRedis
from tests.support.tcp_proxy import TcpProxy
from tests.test_raw_support import RawClient, device_conversation, raw
from tests.test_socketio_helpers import Client, chat_client, group, ok

MESSAGES = 300
PER_SECOND = 120
FAST = {"SEND_RATE_PER_SECOND": "1000", "SEND_BURST": "1000"}


class Sender:
    """An agent's Socket.IO socket on node B: messages with ``client_msg_id``, retried until
    acknowledged, at ``PER_SECOND``; every 10th edited, every 7th reacted to, every 25th
    deleted."""

    def __init__(self, client: Client, cid: int) -> None:
        self.client = client
        self.cid = cid
        self.acked: list[int] = []

    async def call(self, event: str, data: dict[str, Any]) -> Any:
        while True:
            with contextlib.suppress(TimeoutError, Exception):
                ack = await asyncio.wait_for(self.client.call(event, data), 5)
                if isinstance(ack, dict) and ack.get("ok"):
                    return ack
            await asyncio.sleep(0.05)

    async def run(self, at: dict[float, Any]) -> None:
        """Send; ``at`` maps a fraction of the run to an action taken then (sync)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending = sorted(at.items())
        for n in range(MESSAGES):
            while pending and n >= pending[0][0] * MESSAGES:
                pending.pop(0)[1]()
            await asyncio.sleep(max(0.0, start + n / PER_SECOND - loop.time()))
            ack = await self.call("chat_message", {"conversation_id": self.cid,
                                                   "content": f"m{n}",
                                                   "client_msg_id": f"c{n}"})
            message_id = ack["message"]["id"]
            self.acked.append(message_id)
            if n % 10 == 9:
                await self.call("message_edit", {"message_id": message_id,
                                                 "content": f"m{n} edited"})
            if n % 7 == 6:
                await self.call("message_reaction", {"message_id": message_id, "emoji": "+1"})
            if n % 25 == 24:
                await self.call("message_delete", {"message_id": message_id})
        for _, action in pending:
            action()


def sio_positions(client: Client) -> list[int]:
    """Positions of every logged event the socket received, in order (the raw recording)."""
    return [data["position"] for _, data in client_log(client) if "position" in data]


def client_log(client: Client) -> list[tuple[str, dict[str, Any]]]:
    return client.log  # type: ignore[attr-defined, no-any-return]


def recording(client: Client) -> Client:
    """Keep every event in arrival order, whatever its name."""
    client.log = []  # type: ignore[attr-defined]

    async def record(event: str, data: Any = None) -> None:
        if isinstance(data, dict):
            client.log.append((event, data))  # type: ignore[attr-defined]
    client.sio.handlers[client.namespace]["*"] = record
    return client


def raw_positions(client: RawClient) -> list[int]:
    """Positions of the raw frames, one per event (a read splits into several frames)."""
    out: list[int] = []
    for frame in client.frames:
        position = frame.get("position")
        if isinstance(position, int) and (not out or out[-1] != position):
            out.append(position)
    return out


async def drain(client: RawClient) -> None:
    """Read whatever has arrived (the recording keeps it)."""
    with contextlib.suppress(TimeoutError):
        while True:
            await client._read(0.05)


async def log_top(api: Api, user: TestUser, cid: int) -> tuple[int, list[tuple[str, int]]]:
    """The conversation's log as the database has it: its last position and every event."""
    events: list[tuple[str, int]] = []
    since = 0
    while True:
        response = await api.http.get(f"/api/v1/chat/sessions/{cid}/events",
                                      params={"since": since, "limit": 1000},
                                      headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        events += [(e["event"], e["position"]) for e in body["events"]]
        since = body["position"]
        if not body["has_more"]:
            return since, events


@contextlib.asynccontextmanager
async def two_nodes(work_dir: Path, database: str, redis: PrivateRedis
                    ) -> AsyncIterator[tuple[Cluster, ServerProcess, ServerProcess]]:
    nodes = Cluster(work_dir / f"log-{uuid.uuid4().hex[:6]}", database, redis.url)
    try:
        node_a, node_b = nodes.start_node(**FAST), nodes.start_node(**FAST)
        with_admin(node_b)
        yield nodes, node_a, node_b
    finally:
        nodes.stop()


async def until(what: str, check: Any, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.2)


async def test_receivers_that_stay_connected_miss_nothing_when_redis_is_killed(
        work_dir: Path, cluster_database: str, redis: PrivateRedis) -> None:
    async with two_nodes(work_dir, cluster_database, redis) as (_, node_a, node_b):
        on_a, on_b = Api(node_a.base_url), Api(node_b.base_url, await admin_of(
            node_b.base_url))
        device_id, cid = await device_conversation(on_b)
        agent, watcher, raw_agent, session_agent = [await on_b.register(role="agent")
                                                    for _ in range(4)]
        sender = Sender(await chat_client(on_b, agent, cid), cid)
        sio = recording(await chat_client(on_a, watcher, cid))
        ws = node_a.ws_url
        try:
            async with (
                raw(f"{ws}/ws/chat/{cid}/?token={raw_agent.token}") as chat,
                raw(f"{ws}/api/v1/chat/ws/{cid}?token={session_agent.token}") as session,
                raw(f"{ws}/ws/mobile/chat/{cid}/?device_id={device_id}") as mobile,
            ):
                await chat.next("recent_messages")
                await mobile.next("connection_established")
                await session.next("user_joined")
                raws = (chat, session, mobile)
                readers = [asyncio.ensure_future(_keep_reading(c)) for c in raws]
                try:
                    await sender.run({0.25: redis.stop, 0.6: redis.start})
                    top, logged = await log_top(on_b, agent, cid)
                    assert len(sender.acked) == MESSAGES == len(set(sender.acked))
                    names = [name for name, _ in logged]
                    assert names.count("chat_message") == MESSAGES
                    assert names.count("message_edit") == MESSAGES // 10
                    assert names.count("message_delete") == MESSAGES // 25
                    assert [p for _, p in logged] == list(range(1, top + 1))
                    everything = list(range(1, top + 1))

                    async def all_there() -> bool:
                        return all(raw_positions(c)[-1:] == [top] for c in raws) and (
                            sio_positions(sio)[-1:] == [top])
                    await until("every receiver on node A has the whole log", all_there)
                finally:
                    for reader in readers:
                        reader.cancel()
                # Exactly once, in order, on every door, without a reconnect.
                assert sio_positions(sio) == everything
                for client in raws:
                    assert raw_positions(client) == everything, client.frames[:3]
                assert not sio.disconnected.is_set()
                sent = {m for m in sender.acked}
                got = {data["message"]["id"] for name, data in client_log(sio)
                       if name == "chat_message"}
                assert got == sent
            assert "catching rooms up from the event log" in node_a.log()
        finally:
            await sender.client.close()
            await sio.close()
            await on_a.aclose()
            await on_b.aclose()


async def _keep_reading(client: RawClient) -> None:
    with contextlib.suppress(Exception):
        while True:
            await client._read(3600)


async def test_receivers_of_a_killed_node_resume_on_the_other_with_since(
        work_dir: Path, cluster_database: str, redis: PrivateRedis) -> None:
    async with two_nodes(work_dir, cluster_database, redis) as (_, node_a, node_b):
        on_a, on_b = Api(node_a.base_url), Api(node_b.base_url, await admin_of(
            node_b.base_url))
        _, cid = await device_conversation(on_b)
        agent, watcher, raw_agent = [await on_b.register(role="agent") for _ in range(3)]
        sender = Sender(await chat_client(on_b, agent, cid), cid)
        sio = recording(await chat_client(on_a, watcher, cid))
        epoch = (await on_b.http.get(f"/api/v1/chat/sessions/{cid}/events",
                                     params={"since": 0}, headers=agent.headers)).json()["epoch"]
        chat_frames: list[dict[str, Any]] = []
        try:
            async with raw(f"{node_a.ws_url}/ws/chat/{cid}/?token={raw_agent.token}") as chat:
                await chat.next("recent_messages")
                reader = asyncio.ensure_future(_keep_reading(chat))
                await sender.run({0.4: lambda: node_a.stop(signal.SIGKILL)})
                reader.cancel()
                chat_frames = list(chat.frames)
        except Exception:  # the connection died with node A
            pass
        try:
            top, _ = await log_top(on_b, agent, cid)
            before_sio = sio_positions(sio)
            before_raw = raw_positions(_frames(chat_frames))
            assert before_sio and before_sio == list(range(1, before_sio[-1] + 1))
            # Reconnect to node B from the last position each had.
            again = await chat_client(on_b, watcher)
            ack = ok(await again.call("join", {"conversation_id": cid, "since": {
                "position": before_sio[-1], "epoch": epoch}}))
            resumed = [e["position"] for e in ack["events"]]
            assert before_sio + resumed == list(range(1, top + 1))
            await again.close()
            since = before_raw[-1] if before_raw else 0
            async with raw(f"{node_b.ws_url}/ws/chat/{cid}/?token={raw_agent.token}"
                           f"&since={since}&epoch={epoch}") as chat_b:
                await chat_b.next("recent_messages")
                await chat_b.next(lambda f: f.get("position") == top)
                assert before_raw + raw_positions(chat_b) == list(range(1, top + 1))
        finally:
            await sender.client.close()
            with contextlib.suppress(Exception):
                await sio.close()
            await on_a.aclose()
            await on_b.aclose()


def _frames(frames: list[dict[str, Any]]) -> RawClient:
    holder = RawClient.__new__(RawClient)
    holder.frames = frames
    return holder


async def test_what_a_killed_node_stored_and_never_published_reaches_the_others(
        work_dir: Path, cluster_database: str, redis: PrivateRedis) -> None:
    """Node B reaches Redis through a proxy. Cut there, it still stores a message sent to it
    (acknowledged: 201) but cannot publish it; then it is killed (SIGKILL). Nothing else is
    sent in the conversation, so no later event shows node A the gap: node A gets the message
    to its receivers (raw and Socket.IO) once it finds node B dead, once and in order. Those
    who connect to node A before that get it in their history page (raw ``recent_messages``,
    the Socket.IO ``join`` ack), and not again from the catch-up."""
    proxy = TcpProxy(port=redis.port).start()
    nodes = Cluster(work_dir / f"lost-{uuid.uuid4().hex[:6]}", cluster_database, redis.url)
    try:
        node_a = nodes.start_node(**FAST)
        # Its heartbeat outlives it by 6 s: time for the late connects below.
        node_b = nodes.start_node(**FAST, REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
                                  NODE_TTL_SECONDS="6")
        on_a, on_b = Api(node_a.base_url), Api(node_b.base_url)
        alice, bob = await on_a.register(), await on_a.register()
        cid = await group(on_a, alice, bob)
        sio = await chat_client(on_a, bob, cid)
        late_sio = await Client(node_a.base_url, "/chat").connect({"token": bob.token})
        try:
            async with raw(f"{node_a.ws_url}/ws/chat/{cid}/?token={bob.token}") as chat:
                await chat.next("recent_messages")

                async def send(api: Api, content: str) -> int:
                    response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                                   json={"content": content},
                                                   headers=alice.headers)
                    assert response.status_code == 201, response.text
                    return int(response.json()["id"])

                first = await send(on_b, "published")
                await chat.next(lambda f: f.get("message_id") == first)
                await sio.next("chat_message", lambda e: e["message"]["id"] == first)

                proxy.cut()
                lost = await send(on_b, "stored, never published")
                node_b.stop(signal.SIGKILL)
                async with raw(f"{node_a.ws_url}/ws/chat/{cid}/?token={bob.token}") as late:
                    page = await late.next("recent_messages")
                    assert [m["id"] for m in page["messages"]] == [first, lost]
                    joined = ok(await late_sio.call("join", {"conversation_id": cid}))
                    assert [m["id"] for m in joined["messages"]] == [first, lost]
                    assert "is gone" not in node_a.log()  # they came before the catch-up
                    # Within node B's TTL and a heartbeat; far less than the wait here.
                    await chat.next(lambda f: f.get("message_id") == lost, within=20)
                    await sio.next("chat_message", lambda e: e["message"]["id"] == lost,
                                   within=20)

                    # A message after it, through node A: the end of what each one gets.
                    last = await send(on_a, "after")
                    for client in (chat, late):
                        await client.next(lambda f: f.get("message_id") == last)
                    await sio.next("chat_message", lambda e: e["message"]["id"] == last)
                    late_got = [(await late_sio.next("chat_message"))["message"]["id"]]
                    while late_got[-1] != last:
                        late_got.append((await late_sio.next("chat_message"))["message"]["id"])
                    got = [f["message_id"] for f in chat.frames
                           if f.get("type") == "chat_message"]
                    assert got == [first, lost, last]
                    assert [f["message_id"] for f in late.frames
                            if f.get("type") == "chat_message"] == [last]
                    assert late_got == [last]
                assert "is gone: catching rooms up from the event log" in node_a.log()
        finally:
            await late_sio.close()
            await sio.close()
            await on_a.aclose()
            await on_b.aclose()
    finally:
        nodes.stop()
        proxy.close()
