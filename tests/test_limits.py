"""Abuse limits on a server started with small ones: logins and registrations per address and
email (429 with ``Retry-After``), sockets per user and per device on every door, conversations
joined per socket, and typing events that only repeat what the others already know."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.client import Api, TestUser
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import close_code, raw
from tests.test_socketio_helpers import Client, chat_client, group, ok, refused

LIMITS = {
    "LOGIN_ATTEMPTS_PER_MINUTE": "3",
    "REGISTRATIONS_PER_HOUR": "3",
    "MAX_SOCKETS_PER_USER": "2",
    "MAX_SOCKETS_PER_DEVICE": "1",
    "MAX_JOINED_PER_SOCKET": "2",
    "TYPING_INTERVAL_SECONDS": "60",
    "SEND_RATE_PER_SECOND": "2",  # events: 10/s, burst 50
    "SEND_BURST": "10",
}


@pytest.fixture(scope="module")
def limited_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(work_dir / "limits", **LIMITS)
    yield server
    server.stop()


@dataclass
class World:
    api: Api
    alice: TestUser
    bob: TestUser
    device_id: str
    conversations: list[int]


@pytest.fixture(scope="module")
async def world(limited_server: ServerProcess) -> AsyncIterator[World]:
    """Spends the address's three registrations: two users and a device."""
    api = Api(limited_server.base_url)
    alice, bob = await api.register(), await api.register()
    device_id = await api.device()
    conversations = [await group(api, alice, bob) for _ in range(3)]
    yield World(api, alice, bob, device_id, conversations)
    await api.aclose()


async def test_registrations_are_limited_per_address(world: World) -> None:
    http = world.api.http
    for attempt in (
        http.post("/api/v1/auth/register", json={"email": "late@example.com",
                                                 "password": "password123"}),
        http.post("/mobile/sessions/", json={"platform": "ios"}),
    ):
        response = await attempt
        assert response.status_code == 429, response.text
        body = response.json()
        assert body["code"] == "rate_limited" and "registrations" in body["detail"]
        assert body["retry_after"] > 0
        assert int(response.headers["Retry-After"]) >= 1


async def test_logins_are_limited_per_email(world: World) -> None:
    http = world.api.http
    wrong = {"email": world.alice.email, "password": "not-the-password"}
    for _ in range(3):
        assert (await http.post("/api/v1/auth/login", json=wrong)).status_code == 401
    right = {"email": world.alice.email, "password": world.alice.password}
    response = await http.post("/api/v1/auth/login", json=right)
    assert response.status_code == 429, response.text
    assert "login attempts" in response.json()["detail"]
    assert "Retry-After" in response.headers
    # Another account from the same address is not locked out by Alice's.
    other = {"email": world.bob.email, "password": world.bob.password}
    assert (await http.post("/api/v1/auth/login", json=other)).status_code == 200


async def test_sockets_per_user_and_device_are_capped_on_every_door(
    limited_server: ServerProcess, world: World
) -> None:
    api, alice = world.api, world.alice
    cid = world.conversations[0]
    first = await chat_client(api, alice)
    second = await Client(api.base_url, "/conversations").connect({"token": alice.token})
    try:
        error = await Client(api.base_url, "/chat").refused({"token": alice.token})
        assert error["code"] == 4004 and "Too many connections" in error["message"]
        ws = limited_server.ws_url
        assert await close_code(f"{ws}/ws/chat/{cid}/?token={alice.token}") == 4004
        assert await close_code(f"{ws}/api/v1/chat/ws/{cid}?token={alice.token}") == 1008
        # Bob is not affected by Alice's cap.
        bob = await chat_client(api, world.bob)
        await bob.close()
    finally:
        await second.close()
    # One closed: a new connection is admitted again (the close is processed promptly).
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            third = await chat_client(api, alice)
            break
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
    await third.close()
    await first.close()

    start = await api.http.post("/mobile/chat/start/", json={"device_id": world.device_id,
                                                             "subject": "Caps"})
    device_cid = start.json()["conversation_id"]
    mobile_url = f"{limited_server.ws_url}/ws/mobile/chat/{device_cid}/?device_id="
    async with raw(mobile_url + world.device_id) as phone:
        await phone.next("connection_established")
        assert await close_code(mobile_url + world.device_id) == 4004
        error = await Client(api.base_url, "/mobile").refused({"device_id": world.device_id})
        assert error["code"] == 4004


async def test_conversations_joined_per_socket_are_capped(world: World) -> None:
    one, two, three = world.conversations
    alice = await chat_client(world.api, world.alice)
    try:
        ok(await alice.call("join", {"conversation_id": one}))
        ok(await alice.call("join", {"conversation_id": two}))
        ok(await alice.call("join", {"conversation_id": two}))  # joining again is harmless
        refused(await alice.call("join", {"conversation_id": three}), "too_many_joined")
        ok(await alice.call("leave", {"conversation_id": one}))
        ok(await alice.call("join", {"conversation_id": three}))
    finally:
        await alice.close()


async def test_repeated_typing_is_throttled(world: World) -> None:
    cid = world.conversations[2]
    alice = await chat_client(world.api, world.alice, cid)
    bob = await chat_client(world.api, world.bob, cid)
    try:
        for _ in range(5):  # a client that reports typing on every keystroke
            ok(await alice.call("typing_indicator", {"conversation_id": cid, "is_typing": True}))
        ok(await alice.call("typing_indicator", {"conversation_id": cid, "is_typing": False}))
        ok(await alice.call("typing_indicator", {"conversation_id": cid, "is_typing": True}))
        ok(await alice.call("chat_message", {"conversation_id": cid, "content": "barrier"}))
        await bob.next("chat_message")
        states = [e["is_typing"] for e in bob.pending("typing_indicator")]
        # Every change of state; of the five repeats, the burst of three.
        assert states == [True, True, True, False, True]
    finally:
        await alice.close()
        await bob.close()


async def test_socketio_events_are_rate_limited(world: World) -> None:
    """Every event counts against the connection's event rate, not only chat messages."""
    cid = world.conversations[1]
    bob = await chat_client(world.api, world.bob, cid)
    try:
        acks = [await bob.call("read_receipt", {"conversation_id": cid}) for _ in range(60)]
        refusals = [a for a in acks if not a.get("ok")]
        assert refusals, "no event was refused"
        assert all(a["error"]["code"] == "rate_limited" for a in refusals)
        assert "retry after" in refusals[0]["error"]["message"]
        assert bob.connected
    finally:
        await bob.close()
