"""Redis goes away and comes back under two live nodes (a redis-server of the test's own).

While it is away each node keeps serving its own sockets and REST, says so once in its log and
in /readyz; when it is back, cross-node delivery resumes by itself, and what a client on the
other node missed is there to catch up with ``after_message_id``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import Api
from tests.support.cluster import Cluster
from tests.support.server import ServerProcess
from tests.support.services import PrivateRedis, free_port
from tests.test_socketio_helpers import chat_client, group, ok

OUTAGE_LOGGED = "redis unavailable"
RECOVERY_LOGGED = "redis is back"


@pytest.fixture
def redis(work_dir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), str(work_dir / "outage-redis")).start()
    yield server
    server.stop()


async def ready(node: ServerProcess) -> tuple[int, dict[str, bool]]:
    async with httpx.AsyncClient(base_url=node.base_url, timeout=5) as http:
        response = await http.get("/readyz")
    return response.status_code, response.json()["checks"]


async def until(condition_name: str, check: object, within: float = 15.0) -> None:
    """Poll an async predicate until it holds, failing after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {condition_name}")
        await asyncio.sleep(0.1)


async def test_delivery_resumes_after_redis_restarts(
    work_dir: Path, cluster_database: str, redis: PrivateRedis
) -> None:
    nodes = Cluster(work_dir / "outage", cluster_database, redis.url)
    try:
        node_a, node_b = nodes.start_node(), nodes.start_node()
        on_a, on_b = Api(node_a.base_url), Api(node_b.base_url)
        alice, bob, carol = [await on_a.register() for _ in range(3)]
        cid = await group(on_a, alice, bob, carol)
        a = await chat_client(on_a, alice, cid)
        c = await chat_client(on_a, carol, cid)  # on the same node as Alice
        b = await chat_client(on_b, bob, cid)
        try:
            first = ok(await a.call("chat_message", {"conversation_id": cid,
                                                     "content": "before"}))["message"]
            assert (await b.next("chat_message"))["message"]["id"] == first["id"]
            assert (await c.next("chat_message"))["message"]["id"] == first["id"]

            redis.stop()
            # Node A carries on for its own sockets and REST while Redis is away.
            during = ok(await a.call("chat_message", {"conversation_id": cid,
                                                      "content": "during"}))["message"]
            assert (await c.next("chat_message"))["message"]["id"] == during["id"]
            response = await on_a.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                            json={"content": "during, by REST"},
                                            headers=alice.headers)
            assert response.status_code == 201, response.text
            assert (await c.next("chat_message"))["message"]["content"] == "during, by REST"

            async def a_unready() -> bool:
                status, checks = await ready(node_a)
                return status == 503 and checks["redis"] is False and checks["database"]
            await until("node A reports Redis down", a_unready)
            healthz = await on_a.http.get("/healthz")
            assert healthz.status_code == 200
            await until("the outage logged", lambda: _logged(node_a, OUTAGE_LOGGED))
            await asyncio.sleep(2.5)  # a quiet window of heartbeats: no second outage line
            assert node_a.log().count(OUTAGE_LOGGED) == 1, node_a.log()

            redis.start()

            async def both_ready() -> bool:
                return [(await ready(node))[0] for node in (node_a, node_b)] == [200, 200]
            await until("both nodes ready again", both_ready)
            assert node_a.log().count(RECOVERY_LOGGED) >= 1

            # Delivery across nodes resumes by itself...
            after = ok(await a.call("chat_message", {"conversation_id": cid,
                                                     "content": "after"}))["message"]
            resumed = await b.next("chat_message", lambda e: e["message"]["id"] == after["id"])
            assert resumed["message"]["content"] == "after"
            # ...and Bob catches up with what he missed while Redis was away.
            caught_up = ok(await b.call("join", {"conversation_id": cid,
                                                 "after_message_id": first["id"]}))
            assert [m["content"] for m in caught_up["messages"]] == [
                "during", "during, by REST", "after"]
        finally:
            for client in (a, b, c):
                await client.close()
            await on_a.aclose()
            await on_b.aclose()
    finally:
        nodes.stop()


async def _logged(node: ServerProcess, text: str) -> bool:
    return text in node.log()
