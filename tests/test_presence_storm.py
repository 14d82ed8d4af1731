"""Presence that scales: a room's joins past PRESENCE_DETAIL_MAX_MEMBERS cost each member one
``presence_diff`` per window, not one event per join (docs/realtime.md, "Presence")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.support.bulk_users import insert_users, with_tokens
from tests.support.client import Api, TestUser, admin_of, with_admin
from tests.support.server import ServerProcess, start_server

N = 200
PRESENCE = frozenset({"user_joined", "user_left", "user_status", "presence_diff",
                      "mobile_user_joined", "mobile_user_left"})


@dataclass
class Watcher:
    """One raw /ws/chat/ client counting the presence frames it gets."""

    user: TestUser
    frames: int = 0
    total_users: int | None = None
    seen: list[str] = field(default_factory=list)
    barriers: list[str] = field(default_factory=list)
    #: Users this client was told are online (``user_status``).
    online: set[int] = field(default_factory=set)
    ws: Any = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Room:
    """N users of one support conversation, each on its own raw connection."""

    def __init__(self, server: ServerProcess, cid: int, users: list[TestUser]) -> None:
        self.server = server
        self.cid = cid
        self.watchers = [Watcher(user) for user in users]
        self.tasks: list[asyncio.Task[None]] = []

    def connect_all(self) -> None:
        """Every client connects at once."""
        self.tasks = [asyncio.create_task(self._client(w)) for w in self.watchers]

    async def _client(self, watcher: Watcher) -> None:
        url = f"{self.server.ws_url}/ws/chat/{self.cid}/?token={watcher.user.token}"
        async with websockets.connect(url, max_size=None) as ws:
            watcher.ws = ws
            async for raw in ws:
                frame: dict[str, Any] = json.loads(raw)
                kind = frame.get("type", "")
                if kind == "chat_message":
                    watcher.barriers.append(frame["content"])
                elif kind in PRESENCE:
                    watcher.frames += 1
                    watcher.seen.append(kind)
                    watcher.total_users = frame.get("total_users", watcher.total_users)
                    if kind == "user_status" and frame.get("status") == "online":
                        watcher.online.add(frame["user_id"])
                elif kind == "recent_messages":
                    watcher.seen.append(kind)
                watcher.changed.set()

    async def until(self, watchers: list[Watcher], done: Callable[[Watcher], bool]) -> None:
        """Wait (bounded) until ``done`` holds for every watcher."""
        async def one(w: Watcher) -> None:
            while not done(w):
                w.changed.clear()
                await w.changed.wait()
        await asyncio.wait_for(asyncio.gather(*(one(w) for w in watchers)), 120)

    async def barrier(self, watchers: list[Watcher], name: str) -> None:
        """A message from the first watcher, received by all: whatever was sent to them before
        it has arrived."""
        await self.watchers[0].ws.send(json.dumps({"type": "chat_message", "content": name}))
        await self.until(watchers, lambda w: name in w.barriers)

    async def close(self) -> None:
        """Every connection closed by its client, then the readers' tasks ended. (A reader
        task cancelled while its connection is open left websockets waiting out its close
        timeout, 10 s, once many were.)"""
        await asyncio.gather(*(w.ws.close() for w in self.watchers if w.ws is not None),
                             return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _room(server: ServerProcess, n: int = N) -> Room:
    """A customer's support conversation (which every agent may open) and ``n`` - 1 agents."""
    api = Api(server.base_url, await admin_of(server.base_url))
    try:
        customer = await api.register()
        # Written straight into the database: registering hashes each password (slow on
        # purpose), and these agents only connect.
        agents = with_tokens(await insert_users(str(server.extra["database_url"]), n - 1,
                                                role="agent"), "agent")
        conversation = await api.conversation(customer)
    finally:
        await api.aclose()
    return Room(server, conversation["id"], [customer, *agents])


async def _storm(room: Room) -> list[str]:
    """Every client connects at once; returns once each has been told the room holds them all
    and has received what was sent before a barrier; the event names seen."""
    room.connect_all()
    await room.until(room.watchers, lambda w: w.total_users == len(room.watchers))
    await room.until(room.watchers[:1], lambda w: w.ws is not None and "recent_messages" in w.seen)
    await room.barrier(room.watchers, "barrier")
    return sorted({name for w in room.watchers for name in w.seen})


@pytest.fixture(scope="module")
def coalescing_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = with_admin(start_server(work_dir / "presence-coalescing",
                                     PRESENCE_WINDOW_MS="200"))
    server.extra["database_url"] = f"sqlite://{work_dir}/presence-coalescing/chat.sqlite3"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def detailed_server(work_dir: Path) -> Iterator[ServerProcess]:
    """The previous behaviour: every room is small enough for per-user events."""
    server = with_admin(start_server(work_dir / "presence-detailed",
                                     PRESENCE_DETAIL_MAX_MEMBERS="100000"))
    server.extra["database_url"] = f"sqlite://{work_dir}/presence-detailed/chat.sqlite3"
    yield server
    server.stop()


async def test_a_join_storm_costs_frames_linear_in_the_room(
        coalescing_server: ServerProcess) -> None:
    room = await _room(coalescing_server)
    try:
        names = await _storm(room)
        total = sum(w.frames for w in room.watchers)
        # The first 100 joins are detailed (at most 100·101 frames: user_joined and
        # user_status to everyone there); the rest, one diff per member per 200 ms window.
        assert total <= 100 * 101 + 60 * N, total
        assert "presence_diff" in names

        # Half of them leave at once, the first arrivals among them (the clients connected
        # in this order; the first one stays, it sends the barriers): the others are told in
        # diffs, and end knowing N/2; nobody by name, not even that those told online when
        # the room was small are offline now (the room is past the limit).
        leave = room.watchers[1:N // 2 + 1]
        stay = [room.watchers[0], *room.watchers[N // 2 + 1:]]
        told_online = set.union(*(w.online for w in stay))
        assert told_online & {w.user.id for w in leave}
        before = sum(w.frames for w in stay)
        statuses = [w.seen.count("user_status") for w in stay]
        for watcher in leave:
            await watcher.ws.close()
        await room.until(stay, lambda w: w.total_users == N // 2)
        await room.barrier(stay, "after leaving")
        assert sum(w.frames for w in stay) - before <= 60 * len(stay)
        assert all(w.seen.count("user_left") == 0 for w in stay)
        assert [w.seen.count("user_status") for w in stay] == statuses
    finally:
        await room.close()


async def test_the_same_storm_with_per_user_events_is_quadratic(
        detailed_server: ServerProcess) -> None:
    # Fewer clients than the linear test's: N(N+1) frames grow fast, and the test's own
    # clients are what it spends its time on.
    n = N // 2
    room = await _room(detailed_server, n)
    try:
        names = await _storm(room)
        total = sum(w.frames for w in room.watchers)
        # user_joined and user_status of each arrival to everyone already there: n(n+1).
        assert total >= n * n, total
        assert "presence_diff" not in names
    finally:
        await room.close()
