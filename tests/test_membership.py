"""Group membership (CONTRACT section 10) against a real server on each database: adding members
(500 per call, up to the group's cap, lowered here to 2,001 by ``MAX_GROUP_MEMBERS``),
removing one, leaving; the role rules; ``member_added`` / ``member_removed`` on Socket.IO,
the raw route, the inbox and the event log; a removed member's access ending at once.

The 2,000 members of the large group are inserted straight into the server's database
(tests/support/bulk_users.py: one statement on PostgreSQL, one batch on SQLite): registering
them through ``/register`` would hash 2,000 passwords with Argon2id. They are only added, never
logged in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bulk_users import insert_users
from tests.support.client import Api, TestUser
from tests.support.server import ServerProcess, start_server
from tests.support.services import Postgres
from tests.test_raw_support import raw
from tests.test_socketio_helpers import (
    Client,
    chat_client,
    group,
    mobile_client,
    ok,
    refused,
    start_device_conversation,
)

CAP = 2001  # the owner and 2,000 members


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def members_server(request: pytest.FixtureRequest, work_dir: Path) -> Iterator[ServerProcess]:
    """A server of this module's own on each database, its groups capped at ``CAP``."""
    data_dir = work_dir / f"members-{request.param}"
    name = url = None
    if request.param == "postgres":
        postgres: Postgres = request.getfixturevalue("postgres")
        name, url = asyncio.run(postgres.create_database())
    server = start_server(data_dir, url, MAX_GROUP_MEMBERS=str(CAP),
                          SEND_RATE_PER_SECOND="1000", SEND_BURST="1000")
    server.extra["database_url"] = url or f"sqlite://{data_dir}/chat.sqlite3"
    yield server
    server.stop()
    if name is not None:
        asyncio.run(postgres.drop_database(name))


@pytest.fixture
async def api(members_server: ServerProcess) -> AsyncIterator[Api]:
    client = Api(members_server.base_url)
    yield client
    await client.aclose()


def database(server: ServerProcess) -> str:
    url = server.extra["database_url"]
    assert isinstance(url, str)
    return url


async def add(api: Api, by: TestUser, cid: int, user_ids: list[int],
              role: str | None = None) -> Any:
    body: dict[str, Any] = {"user_ids": user_ids}
    if role is not None:
        body["role"] = role
    return await api.http.post(f"/api/v1/chat/sessions/{cid}/participants", json=body,
                               headers=by.headers)


async def remove(api: Api, by: TestUser, cid: int, user_id: int) -> Any:
    return await api.http.delete(f"/api/v1/chat/sessions/{cid}/participants/{user_id}",
                                 headers=by.headers)


async def leave(api: Api, by: TestUser, cid: int) -> Any:
    return await api.http.post(f"/api/v1/chat/sessions/{cid}/leave", headers=by.headers)


async def roles(api: Api, by: TestUser, cid: int) -> dict[int, tuple[str, bool]]:
    """user id → (role, is_active), from GET .../participants."""
    response = await api.http.get(f"/api/v1/chat/sessions/{cid}/participants",
                                  headers=by.headers)
    assert response.status_code == 200, response.text
    return {p["user_id"]: (p["role"], p["is_active"]) for p in response.json()}


async def logged(api: Api, by: TestUser, cid: int) -> list[dict[str, Any]]:
    """Every event of the conversation's log (GET .../events, page by page)."""
    out: list[dict[str, Any]] = []
    since = 0
    while True:
        response = await api.http.get(f"/api/v1/chat/sessions/{cid}/events",
                                      params={"since": since, "limit": 1000},
                                      headers=by.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        out += body["events"]
        since = body["position"]
        if not body["has_more"]:
            return out


def expect(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if status >= 400:
        assert isinstance(body.get("detail"), str | list) and body["detail"], body
        if code is not None:
            assert body.get("code") == code, body
    return body


# -- a large group ----------------------------------------------------------------------------


async def test_a_group_grows_to_2000_members_500_per_call_up_to_its_cap(
        members_server: ServerProcess, api: Api) -> None:
    owner = await api.register()
    cid = await group(api, owner)
    ids = await insert_users(database(members_server), 2000)
    for start in range(0, 2000, 500):
        body = expect(await add(api, owner, cid, ids[start:start + 500]), 200)
        rows = body["participants"]
        assert sorted(p["user_id"] for p in rows) == ids[start:start + 500]
        assert all(p["role"] == "member" and p["is_active"] and p["conversation_id"] == cid
                   for p in rows)
    members = await roles(api, owner, cid)
    assert len(members) == 2001 and members[owner.id] == ("owner", True)
    view = expect(await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=owner.headers),
                  200)
    assert view["participants_count"] == 2001

    # Already members: the same rows back, nothing duplicated, nothing logged.
    before = await logged(api, owner, cid)
    assert [e["event"] for e in before] == ["member_added"] * 2000
    assert [e["position"] for e in before] == list(range(1, 2001))
    assert sorted(e["user_id"] for e in before) == ids
    again = expect(await add(api, owner, cid, ids[:500]), 200)
    assert sorted(p["user_id"] for p in again["participants"]) == ids[:500]
    assert len(await roles(api, owner, cid)) == 2001
    assert len(await logged(api, owner, cid)) == 2000

    # 501 ids in one call: refused before anything is read.
    extra = await insert_users(database(members_server), 501)
    expect(await add(api, owner, cid, extra), 422)
    # The cap: the group is full.
    full = expect(await add(api, owner, cid, extra[:1]), 409, "group_full")
    assert str(CAP) in full["detail"]
    # One leaves: there is room for one again, not two.
    expect(await remove(api, owner, cid, ids[0]), 200)
    expect(await add(api, owner, cid, extra[:2]), 409, "group_full")
    expect(await add(api, owner, cid, extra[:1]), 200)


# -- who may do what --------------------------------------------------------------------------


async def test_roles_decide_who_adds_and_removes_and_an_owner_hands_the_group_on(
        members_server: ServerProcess, api: Api) -> None:
    owner, admin, admin2, member, member2, outsider = [await api.register() for _ in range(6)]
    cid = await group(api, owner, member)
    # Roles are given when added: adding an active member again leaves its role as it is.
    expect(await add(api, owner, cid, [admin.id]), 200)
    expect(await add(api, owner, cid, [admin.id], "admin"), 200)
    assert (await roles(api, owner, cid))[admin.id] == ("member", True)
    expect(await remove(api, owner, cid, admin.id), 200)
    expect(await add(api, owner, cid, [admin.id, admin2.id], "admin"), 200)
    assert (await roles(api, owner, cid))[admin.id] == ("admin", True)

    # A member adds and removes nobody.
    expect(await add(api, member, cid, [member2.id]), 403, "forbidden")
    expect(await remove(api, member, cid, admin.id), 403, "forbidden")
    # An admin adds members, not admins; removes members, not admins nor the owner.
    expect(await add(api, admin, cid, [member2.id], "admin"), 403, "forbidden")
    expect(await add(api, admin, cid, [member2.id]), 200)
    expect(await remove(api, admin, cid, owner.id), 403, "forbidden")
    expect(await remove(api, admin, cid, admin2.id), 403, "forbidden")
    expect(await remove(api, admin, cid, member2.id), 200)
    # Removing someone who is not a member.
    expect(await remove(api, admin, cid, member2.id), 404, "not_found")
    # Someone outside the group does nothing to it.
    expect(await add(api, outsider, cid, [outsider.id]), 403, "forbidden")
    expect(await leave(api, outsider, cid), 403, "forbidden")
    # Bad input: unknown or inactive users, a role that cannot be given, an empty list.
    inactive = await insert_users(database(members_server), 1, active=False)
    unknown = expect(await add(api, owner, cid, [2_000_000_000, *inactive]), 404, "not_found")
    assert "2000000000" in unknown["detail"] and str(inactive[0]) in unknown["detail"]
    expect(await add(api, owner, cid, [member2.id], "owner"), 422)
    expect(await add(api, owner, cid, []), 422)

    # Only groups: a support conversation's parties are fixed.
    support = await api.conversation(member)
    expect(await add(api, member, support["id"], [member2.id]), 409, "not_a_group")
    expect(await leave(api, member, support["id"]), 409, "not_a_group")

    # The owner removes an admin; then leaves: the longest-standing admin owns the group.
    expect(await remove(api, owner, cid, admin2.id), 200)
    expect(await leave(api, owner, cid), 200)
    now = await roles(api, admin, cid)
    assert now[owner.id] == ("owner", False) and now[admin.id] == ("owner", True)
    events = await logged(api, admin, cid)
    assert [(e["event"], e["user_id"], e.get("role"), e.get("reason"))
            for e in events[-2:]] == [("member_removed", owner.id, None, "left"),
                                      ("member_added", admin.id, "owner", None)]
    # Who left has lost the group; added back, they see it again.
    expect(await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=owner.headers), 403)
    expect(await add(api, admin, cid, [owner.id]), 200)
    expect(await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=owner.headers), 200)
    # Naming oneself is leaving; the last one out leaves an empty group.
    expect(await remove(api, member, cid, member.id), 200)
    assert (await roles(api, admin, cid))[member.id] == ("member", False)
    # The group is closed by its owner now, not by its creator who left and came back.
    expect(await api.http.post(f"/api/v1/chat/sessions/{cid}/close", headers=owner.headers),
           403, "forbidden")
    closed = expect(await api.http.post(f"/api/v1/chat/sessions/{cid}/close",
                                        headers=admin.headers), 200)
    assert closed["status"] == "closed"


# -- events and access on one node ----------------------------------------------------------


async def test_member_events_reach_every_door_and_the_removed_lose_access_at_once(
        members_server: ServerProcess, api: Api) -> None:
    owner, watcher, newcomer = [await api.register() for _ in range(3)]
    cid = await group(api, owner, watcher)
    ws = members_server.ws_url
    async with contextlib.AsyncExitStack() as stack:
        async def sio(user: TestUser, namespace: str = "/chat",
                      conversation_id: int | None = cid) -> Client:
            auth: dict[str, Any] = {"token": user.token}
            if conversation_id is not None:
                auth["conversation_id"] = conversation_id
            client = await Client(api.base_url, namespace).connect(auth)
            stack.push_async_callback(client.close)
            return client

        watching = await sio(watcher)
        watcher_raw = await stack.enter_async_context(
            raw(f"{ws}/ws/chat/{cid}/?token={watcher.token}"))
        await watcher_raw.next("connection_established")
        watcher_session = await stack.enter_async_context(
            raw(f"{ws}/api/v1/chat/ws/{cid}?token={watcher.token}"))
        inbox = await sio(newcomer, "/conversations", None)
        raw_inbox = await stack.enter_async_context(
            raw(f"{ws}/ws/conversations/?token={newcomer.token}"))

        # Added (over Socket.IO, by the owner's socket, which need not join): the room hears
        # it on every door at one position, and the newcomer's inboxes too.
        owner_sio = await sio(owner, conversation_id=None)
        ack = ok(await owner_sio.call("add_members", {"conversation_id": cid,
                                                      "user_ids": [newcomer.id]}))
        assert [p["user_id"] for p in ack["participants"]] == [newcomer.id]
        heard = await watching.next("member_added")
        assert heard["user_id"] == newcomer.id and heard["role"] == "member"
        assert heard["conversation_id"] == cid and heard["by_user_id"] == owner.id
        added_at = heard["position"]
        assert isinstance(added_at, int)
        frame = await watcher_raw.next("member_added")
        assert frame["user_id"] == newcomer.id and frame["position"] == added_at
        frame = await watcher_session.next("member_added")
        assert frame["chat_session_id"] == cid and frame["user_id"] == newcomer.id
        assert frame["metadata"]["role"] == "member" and frame["position"] == added_at
        assert (await inbox.next("member_added"))["position"] == added_at
        assert (await raw_inbox.next("member_added"))["position"] == added_at
        listed = await inbox.next("conversation_updated", lambda d: d["conversation_id"] == cid)
        assert listed["conversation"]["participants_count"] == 3

        # The newcomer connects on every door of the conversation, then is removed.
        theirs = await sio(newcomer)
        theirs_raw = await stack.enter_async_context(
            raw(f"{ws}/ws/chat/{cid}/?token={newcomer.token}"))
        await theirs_raw.next("connection_established")
        theirs_session = await stack.enter_async_context(
            raw(f"{ws}/api/v1/chat/ws/{cid}?token={newcomer.token}"))
        expect(await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                   json={"content": "hello newcomer"},
                                   headers=newcomer.headers), 201)
        await theirs_session.next(lambda f: f.get("content") == "hello newcomer")
        expect(await remove(api, owner, cid, newcomer.id), 200)
        gone = await theirs.next("member_removed")
        assert gone["user_id"] == newcomer.id and gone["reason"] == "removed"
        removed_at = gone["position"]
        assert removed_at == added_at + 2  # after the newcomer's message
        assert (await theirs_raw.next("member_removed"))["position"] == removed_at
        assert await theirs_raw.closed(10) == 4004
        frame = await theirs_session.next("member_removed")
        assert frame["user_id"] == newcomer.id and frame["position"] == removed_at
        assert await theirs_session.closed(10) == 4004
        assert (await watching.next("member_removed"))["position"] == removed_at
        assert (await watcher_raw.next("member_removed"))["user_id"] == newcomer.id
        assert (await inbox.next("member_removed"))["position"] == removed_at
        assert (await raw_inbox.next("member_removed"))["position"] == removed_at

        # From now on: nothing of the conversation reaches them, and every call is refused.
        ok(await watching.call("chat_message", {"conversation_id": cid, "content": "after"}))
        await watcher_raw.next(lambda f: f.get("content") == "after")
        refused(await theirs.call("chat_message", {"conversation_id": cid,
                                                   "content": "still here?"}), "forbidden")
        # (after that ack, anything written to the socket before it has arrived)
        assert [m for m in theirs.pending("chat_message")
                if m["message"]["content"] == "after"] == []
        refused(await theirs.call("join", {"conversation_id": cid}), "forbidden")
        for call in (
            api.http.get(f"/api/v1/chat/sessions/{cid}", headers=newcomer.headers),
            api.http.get(f"/api/v1/chat/sessions/{cid}/messages", headers=newcomer.headers),
            api.http.post(f"/api/v1/chat/sessions/{cid}/messages", json={"content": "x"},
                          headers=newcomer.headers),
        ):
            expect(await call, 403, "forbidden")
        async with raw(f"{ws}/ws/chat/{cid}/?token={newcomer.token}") as again:
            assert await again.closed(10) == 4004

        # The log replays both, where the live events had them.
        replay = [e for e in await logged(api, owner, cid)
                  if e["event"] in ("member_added", "member_removed")]
        assert [(e["event"], e["user_id"], e["position"]) for e in replay] == [
            ("member_added", newcomer.id, added_at), ("member_removed", newcomer.id, removed_at)]

        # Added back: the same socket joins again and hears the room.
        expect(await add(api, owner, cid, [newcomer.id]), 200)
        ok(await theirs.call("join", {"conversation_id": cid}))
        ok(await watching.call("chat_message", {"conversation_id": cid, "content": "welcome"}))
        await theirs.next("chat_message", lambda d: d["message"]["content"] == "welcome")

        # Leaving over Socket.IO: the watcher's own raw sockets close too.
        ok(await watching.call("leave_conversation", {"conversation_id": cid}))
        assert (await watching.next("member_removed"))["reason"] == "left"
        assert await watcher_raw.closed(10) == 4004
        assert await watcher_session.closed(10) == 4004


async def test_membership_events_on_socketio_are_refused_clearly(
        members_server: ServerProcess, api: Api) -> None:
    owner, member = await api.register(), await api.register()
    cid = await group(api, owner, member)
    sio = await chat_client(api, member)
    try:
        refused(await sio.call("add_members", {"conversation_id": cid,
                                               "user_ids": [owner.id]}), "forbidden")
        refused(await sio.call("add_members", {"conversation_id": cid,
                                               "user_ids": list(range(1, 502))}), "invalid")
        refused(await sio.call("add_members", {"conversation_id": cid}), "invalid")
        refused(await sio.call("remove_member", {"conversation_id": cid,
                                                 "user_id": owner.id}), "forbidden")
        refused(await sio.call("remove_member", {"conversation_id": cid}), "invalid")
        refused(await sio.call("leave_conversation", {}), "invalid")
        support = await api.conversation(member)
        refused(await sio.call("leave_conversation", {"conversation_id": support["id"]}),
                "not_a_group")
        # A device's conversation is a support one: not a group, whoever asks.
        device = await api.device()
        device_cid = await start_device_conversation(api, device)
        phone = await mobile_client(api, device, device_cid)
        try:
            for event, data in (("add_members", {"user_ids": [owner.id]}),
                                ("remove_member", {"user_id": owner.id}),
                                ("leave_conversation", {})):
                refused(await phone.call(event, {"conversation_id": device_cid, **data}),
                        "not_a_group")
        finally:
            await phone.close()
        # The connection carries on.
        ack = ok(await sio.call("leave_conversation", {"conversation_id": cid}))
        assert ack["user_id"] == member.id
    finally:
        await sio.close()
