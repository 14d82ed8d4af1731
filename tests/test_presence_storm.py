"""Presence that scales: a room's joins past PRESENCE_DETAIL_MAX_MEMBERS cost each member one
``presence_diff`` per window, not one event per join (docs/realtime.md, "Presence")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.support.client import Api, TestUser, admin_of, with_admin
from tests.support.server import ServerProcess, start_server

N = 200
PRESENCE = frozenset({"user_joined", "user_left", "user_status", "presence_diff",
                      "mobile_user_joined", "mobile_user_left"})


@dataclass
class Watcher:
    """One raw /ws/chat/ client counting the presence frames it gets."""

    frames: int = 0
    total_users: int | None = None
    seen: list[str] = field(default_factory=list)


async def _storm(server: ServerProcess) -> tuple[list[Watcher], list[str]]:
    """N users connect to one group conversation at once; returns each one's watcher once
    every client has been told the room holds N, and the event names seen."""
    # A customer's support conversation, which every agent may open.
    api = Api(server.base_url, await admin_of(server.base_url))
    try:
        customer = await api.register()
        gate = asyncio.Semaphore(8)  # password hashing is slow on purpose

        async def agent() -> TestUser:
            async with gate:
                return await api.register("agent")

        agents = await asyncio.gather(*(agent() for _ in range(N - 1)))
        users: list[TestUser] = [customer, *agents]
        conversation = await api.conversation(customer)
    finally:
        await api.aclose()
    cid = conversation["id"]
    watchers = [Watcher() for _ in users]
    everyone_knows = asyncio.Event()
    barrier = asyncio.Event()

    async def client(user: TestUser, watcher: Watcher) -> None:
        url = f"{server.ws_url}/ws/chat/{cid}/?token={user.token}"
        async with websockets.connect(url, max_size=None) as ws:
            async for raw in ws:
                frame: dict[str, Any] = json.loads(raw)
                kind = frame.get("type", "")
                if kind == "chat_message" and frame["content"] == "barrier":
                    return
                if kind in PRESENCE:
                    watcher.frames += 1
                    watcher.seen.append(kind)
                    if "total_users" in frame:
                        watcher.total_users = frame["total_users"]
                        if all(w.total_users == N for w in watchers):
                            everyone_knows.set()
                if kind == "recent_messages" and user is users[0]:
                    barrier_sender.append(ws)
                    barrier.set()

    barrier_sender: list[Any] = []
    tasks = [asyncio.create_task(client(u, w)) for u, w in zip(users, watchers, strict=True)]
    try:
        await asyncio.wait_for(everyone_knows.wait(), 120)
        # Whatever was sent before the barrier message arrives before it on each connection.
        await barrier.wait()
        await barrier_sender[0].send(json.dumps({"type": "chat_message", "content": "barrier"}))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        for task in tasks:
            task.cancel()
    return watchers, sorted({name for w in watchers for name in w.seen})


@pytest.fixture(scope="module")
def coalescing_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = with_admin(start_server(work_dir / "presence-coalescing",
                                     PRESENCE_WINDOW_MS="200"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def detailed_server(work_dir: Path) -> Iterator[ServerProcess]:
    """The previous behaviour: every room is small enough for per-user events."""
    server = with_admin(start_server(work_dir / "presence-detailed",
                                     PRESENCE_DETAIL_MAX_MEMBERS="100000"))
    yield server
    server.stop()


async def test_a_join_storm_costs_frames_linear_in_the_room(
        coalescing_server: ServerProcess) -> None:
    watchers, names = await _storm(coalescing_server)
    total = sum(w.frames for w in watchers)
    # The first 100 joins are detailed (at most 100·101 frames: user_joined and user_status
    # to everyone there); the rest, one diff per member per 200 ms window.
    assert total <= 100 * 101 + 60 * N, total
    assert all(w.total_users == N for w in watchers)
    assert "presence_diff" in names


async def test_the_same_storm_with_per_user_events_is_quadratic(
        detailed_server: ServerProcess) -> None:
    watchers, names = await _storm(detailed_server)
    total = sum(w.frames for w in watchers)
    # user_joined and user_status of each arrival to everyone already there: N(N+1) frames.
    assert total >= N * N, total
    assert all(w.total_users == N for w in watchers)
    assert "presence_diff" not in names


