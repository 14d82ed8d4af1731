"""The support desk (CONTRACT section 10) against real servers: assign / transfer / unassign,
seed 001's statuses, reopen, PATCH, the queue, the audit trail, their permission rules and bad
input; and each change reaching staff inboxes (Socket.IO ``/conversations`` and raw
``/ws/conversations/``) and the conversation's members on every door, with its position."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support.client import Api, TestUser
from tests.test_raw_support import device_conversation, raw, rest_send, support_conversation
from tests.test_socketio_helpers import Client, chat_client, group, mobile_client, ok, refused

Json = dict[str, Any]


def ws(api: Api) -> str:
    return api.base_url.replace("http://", "ws://")


async def call(api: Api, who: TestUser, method: str, path: str, body: Any = None,
               params: dict[str, Any] | None = None) -> httpx.Response:
    return await api.http.request(method, path, json=body, params=params, headers=who.headers)


async def done(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refusal(response: httpx.Response, status: int) -> str:
    """A 4xx with a readable ``detail``."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail, response.text
    return str(detail)


async def assign(api: Api, who: TestUser, cid: int, agent_id: Any) -> httpx.Response:
    return await call(api, who, "POST", f"/api/v1/chat/sessions/{cid}/assign",
                      {"agent_id": agent_id})


async def set_status(api: Api, who: TestUser, cid: int, status: Any) -> httpx.Response:
    return await call(api, who, "POST", f"/api/v1/chat/sessions/{cid}/status",
                      {"status": status})


async def patch(api: Api, who: TestUser, cid: int, body: Any) -> httpx.Response:
    return await call(api, who, "PATCH", f"/api/v1/chat/sessions/{cid}", body)


async def participants(api: Api, who: TestUser, cid: int) -> dict[int, Json]:
    rows = await done(await call(api, who, "GET", f"/api/v1/chat/sessions/{cid}/participants"))
    return {row["user_id"]: row for row in rows}


async def whole_queue(api: Api, who: TestUser, limit: int = 100) -> list[int]:
    """Every conversation of the queue, page by page."""
    ids: list[int] = []
    cursor = None
    while True:
        params: Json = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await call(api, who, "GET", "/api/v1/chat/queue", params=params)
        ids += [c["id"] for c in await done(response)]
        cursor = response.headers.get("x-next-cursor")
        if not cursor:
            return ids


# -- assignment -------------------------------------------------------------------------------


async def test_assign_take_transfer_unassign(api: Api) -> None:
    agent1, agent2 = await api.register(role="agent"), await api.register(role="agent")
    customer, cid = await support_conversation(api)
    assert (await done(await call(api, customer, "GET", f"/api/v1/chat/sessions/{cid}")))[
        "assigned_agent_id"] is None

    # take it: the shape of GET /sessions/{id}, the agent now takes part
    taken = await done(await assign(api, agent1, cid, agent1.id))
    shown = await done(await call(api, agent1, "GET", f"/api/v1/chat/sessions/{cid}"))
    assert taken["assigned_agent_id"] == agent1.id == shown["assigned_agent_id"]
    assert taken.keys() == shown.keys()
    seats = await participants(api, agent1, cid)
    assert seats[agent1.id]["role"] == "agent" and seats[agent1.id]["is_active"]
    assert taken["participants_count"] == 2

    # transfer to another agent (an admin may too): the previous agent's seat goes inactive
    moved = await done(await assign(api, api.admin, cid, agent2.id))  # type: ignore[arg-type]
    assert moved["assigned_agent_id"] == agent2.id
    seats = await participants(api, agent2, cid)
    assert seats[agent1.id]["is_active"] is False
    assert seats[agent2.id]["is_active"] and seats[agent2.id]["role"] == "agent"
    assert moved["participants_count"] == 2
    # to the same agent again: nothing changes
    same = await done(await assign(api, agent2, cid, str(agent2.id)))
    assert same["assigned_agent_id"] == agent2.id

    # unassign; then take back: agent1's seat is active again
    assert (await done(await assign(api, agent2, cid, None)))["assigned_agent_id"] is None
    assert (await participants(api, agent2, cid))[agent2.id]["is_active"] is False
    await done(await assign(api, agent1, cid, agent1.id))
    seats = await participants(api, agent1, cid)
    assert seats[agent1.id]["is_active"] and not seats[agent2.id]["is_active"]
    # the assigned agent sees it among their own conversations
    mine = await done(await call(api, agent1, "GET", "/api/v1/chat/sessions",
                                 params={"limit": 100}))
    assert cid in [c["id"] for c in mine]


async def test_assign_refusals(api: Api) -> None:
    agent = await api.register(role="agent")
    user = await api.register()
    customer, cid = await support_conversation(api)
    # the customer side and other users are not staff
    assert "agents and admins" in refusal(await assign(api, customer, cid, agent.id), 403)
    refusal(await assign(api, user, cid, user.id), 403)
    # the assignee must be an active agent or admin
    assert "agent" in refusal(await assign(api, agent, cid, user.id), 422)
    refusal(await assign(api, agent, cid, 2_000_000_000), 422)
    # bad bodies
    refusal(await call(api, agent, "POST", f"/api/v1/chat/sessions/{cid}/assign", {}), 422)
    refusal(await assign(api, agent, cid, "someone"), 422)
    refusal(await assign(api, agent, cid, True), 422)
    refusal(await assign(api, agent, cid, -3), 422)
    refusal(await call(api, agent, "POST", f"/api/v1/chat/sessions/{cid}/assign", [1]), 422)
    # unknown conversation; a group is no support conversation
    refusal(await assign(api, agent, 999_999_999, agent.id), 404)
    owner = await api.register()
    gid = await group(api, owner, agent)
    assert "support" in refusal(await assign(api, agent, gid, agent.id), 409)
    # a closed one is reopened first
    await done(await set_status(api, agent, cid, "closed"))
    assert "reopen" in refusal(await assign(api, agent, cid, agent.id), 409)
    # an agent demoted since loses the desk at once, and cannot be assigned
    other_customer, other = await support_conversation(api)
    demoted = await api.register(role="agent")
    await done(await call(api, api.admin, "PATCH",  # type: ignore[arg-type]
                          f"/api/v1/auth/users/{demoted.id}/role", {"role": "user"}))
    refusal(await assign(api, demoted, other, demoted.id), 403)
    refusal(await assign(api, agent, other, demoted.id), 422)
    assert (await done(await call(api, other_customer, "GET",
                                  f"/api/v1/chat/sessions/{other}")))["assigned_agent_id"] is None


# -- statuses, reopen -------------------------------------------------------------------------


async def test_status_and_reopen(api: Api) -> None:
    agent = await api.register(role="agent")
    customer, cid = await support_conversation(api)
    path = f"/api/v1/chat/sessions/{cid}"
    for status in ("support_active", "marketing_active", "active"):
        changed = await done(await set_status(api, agent, cid, status))
        assert changed["status"] == status and changed["closed_at"] is None
        if status == "marketing_active":
            listed = await done(await call(api, customer, "GET", "/api/v1/chat/sessions",
                                           params={"status": status}))
            assert [c["id"] for c in listed] == [cid]
    listed = await done(await call(api, agent, "GET", "/api/v1/chat/sessions",
                                   params={"status": "active", "limit": 100}))
    assert cid in [c["id"] for c in listed]

    closed = await done(await set_status(api, agent, cid, "closed"))
    assert closed["status"] == "closed" and closed["closed_at"]
    # closed as the close route closes: no more writes
    refusal(await call(api, customer, "POST", f"{path}/messages", {"content": "hello?"}), 409)
    refusal(await call(api, agent, "POST", f"{path}/messages", {"content": "hi"}), 409)

    # reopen: staff only for a support conversation
    refusal(await call(api, customer, "POST", f"{path}/reopen"), 403)
    reopened = await done(await call(api, agent, "POST", f"{path}/reopen"))
    assert reopened["status"] == "active" and reopened["closed_at"] is None
    await done(await call(api, customer, "POST", f"{path}/messages", {"content": "back"}), 201)
    assert "not closed" in refusal(await call(api, agent, "POST", f"{path}/reopen"), 409)
    # leaving "closed" through the status route reopens too
    await done(await call(api, customer, "POST", f"{path}/close"))
    again = await done(await set_status(api, agent, cid, "support_active"))
    assert again["status"] == "support_active" and again["closed_at"] is None

    # refusals: not staff, bad status, not support, unknown
    refusal(await set_status(api, customer, cid, "closed"), 403)
    refusal(await set_status(api, agent, cid, "archived"), 422)
    refusal(await set_status(api, agent, cid, None), 422)
    refusal(await call(api, agent, "POST", f"{path}/status", {}), 422)
    refusal(await set_status(api, agent, 999_999_999, "active"), 404)
    owner, member = await api.register(), await api.register()
    gid = await group(api, owner, member, agent)
    refusal(await set_status(api, agent, gid, "active"), 409)

    # a group's owner reopens the group; a member may not
    await done(await call(api, owner, "POST", f"/api/v1/chat/sessions/{gid}/close"))
    refusal(await call(api, member, "POST", f"/api/v1/chat/sessions/{gid}/reopen"), 403)
    stranger = await api.register()
    refusal(await call(api, stranger, "POST", f"/api/v1/chat/sessions/{gid}/reopen"), 403)
    assert (await done(await call(api, owner, "POST",
                                  f"/api/v1/chat/sessions/{gid}/reopen")))["status"] == "active"
    await done(await call(api, member, "POST", f"/api/v1/chat/sessions/{gid}/messages",
                          {"content": "open again"}), 201)
    # staff reopen a group they are in too (CONTRACT §10: "staff, or a group's owner")
    await done(await call(api, owner, "POST", f"/api/v1/chat/sessions/{gid}/close"))
    assert (await done(await call(api, agent, "POST",
                                  f"/api/v1/chat/sessions/{gid}/reopen")))["status"] == "active"


# -- PATCH ------------------------------------------------------------------------------------


async def test_patch_title_and_priority(api: Api) -> None:
    agent = await api.register(role="agent")
    customer, cid = await support_conversation(api)
    edited = await done(await patch(api, agent, cid, {"title": "Card blocked", "priority": 7}))
    assert edited["title"] == "Card blocked" and edited["priority"] == 7
    assert (await done(await patch(api, agent, cid, {"priority": 0})))["priority"] == 0
    assert (await done(await patch(api, agent, cid, {"title": "  Padded  "})))["title"] == \
        "Padded"

    refusal(await patch(api, customer, cid, {"title": "mine"}), 403)
    for bad in ({"priority": 11}, {"priority": -1}, {"priority": "3"}, {"priority": True},
                {"priority": 2.5}, {"title": ""}, {"title": "   "}, {"title": "x" * 256},
                {"title": 5}, {}, {"title": None}, {"title": "nul\u0000"}):
        refusal(await patch(api, agent, cid, bad), 422)
    assert (await done(await call(api, agent, "GET", f"/api/v1/chat/sessions/{cid}")))[
        "title"] == "Padded"
    refusal(await patch(api, agent, 999_999_999, {"title": "x"}), 404)

    # a group: its owner (or a group admin) renames it; members and outsiders may not
    owner, member = await api.register(), await api.register()
    gid = await group(api, owner, member)
    assert (await done(await patch(api, owner, gid, {"title": "Team"})))["title"] == "Team"
    refusal(await patch(api, member, gid, {"title": "Mine now"}), 403)
    refusal(await patch(api, agent, gid, {"title": "Staff"}), 403)
    assert "support" in refusal(await patch(api, owner, gid, {"priority": 3}), 422)


# -- the queue --------------------------------------------------------------------------------


async def test_queue_order_and_leaving(api: Api) -> None:
    agent = await api.register(role="agent")
    made: list[int] = []
    for priority in (0, 5, 5, 0, 10):
        _, cid = await support_conversation(api)
        if priority:
            await done(await patch(api, agent, cid, {"priority": priority}))
        made.append(cid)
    c0, c5a, c5b, c0b, c10 = made
    expected = [c10, c5a, c5b, c0, c0b]  # highest priority first, then oldest first

    queue = await whole_queue(api, agent)
    assert [i for i in queue if i in made] == expected
    # paged by two, the same order, nothing twice
    paged = await whole_queue(api, agent, limit=2)
    assert [i for i in paged if i in made] == expected
    assert len(paged) == len(set(paged))

    # assigned and closed ones leave the queue; unassigned and reopened ones come back
    await done(await assign(api, agent, c5a, agent.id))
    await done(await set_status(api, agent, c0, "closed"))
    assert [i for i in await whole_queue(api, agent) if i in made] == [c10, c5b, c0b]
    await done(await assign(api, agent, c5a, None))
    await done(await call(api, agent, "POST", f"/api/v1/chat/sessions/{c0}/reopen"))
    assert [i for i in await whole_queue(api, agent) if i in made] == expected
    # a group is never in it
    owner = await api.register()
    gid = await group(api, owner)
    assert gid not in await whole_queue(api, agent)

    # the same list on both inbox doors
    sio = await Client(api.base_url, "/conversations").connect({"token": agent.token})
    try:
        first = ok(await sio.call("get_queue", {"limit": 100}))
        pushed = await sio.next("queue_list")
        assert pushed["conversations"] == first["conversations"]
        ids = [c["id"] for c in first["conversations"]]
        cursor = first["next_cursor"]
        while cursor:
            page = ok(await sio.call("get_queue", {"limit": 100, "cursor": cursor}))
            ids += [c["id"] for c in page["conversations"]]
            cursor = page["next_cursor"]
        assert [i for i in ids if i in made] == expected
        refused(await sio.call("get_queue", {"limit": 0}), "invalid")
        refused(await sio.call("get_queue", {"cursor": "%%%"}), "invalid")
    finally:
        await sio.close()
    async with raw(f"{ws(api)}/ws/conversations/?token={agent.token}") as inbox:
        await inbox.next("connection_established")
        ids = []
        cursor = None
        while True:
            await inbox.send({"type": "get_queue", "limit": 100,
                              **({"cursor": cursor} if cursor else {})})
            page = await inbox.next("queue_list")
            ids += [c["id"] for c in page["conversations"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert [i for i in ids if i in made] == expected
        await inbox.send({"type": "get_queue", "cursor": "bm90IGEgY3Vyc29y"})
        assert "cursor" in (await inbox.next("error"))["message"]

    # not for users, on any door
    user = await api.register()
    refusal(await call(api, user, "GET", "/api/v1/chat/queue"), 403)
    refusal(await call(api, agent, "GET", "/api/v1/chat/queue", params={"limit": 0}), 422)
    refusal(await call(api, agent, "GET", "/api/v1/chat/queue", params={"cursor": "@@"}), 422)
    user_sio = await Client(api.base_url, "/conversations").connect({"token": user.token})
    try:
        refused(await user_sio.call("get_queue"), "forbidden")
    finally:
        await user_sio.close()
    async with raw(f"{ws(api)}/ws/conversations/?token={user.token}") as inbox:
        await inbox.next("connection_established")
        await inbox.send({"type": "get_queue"})
        assert (await inbox.next("error"))["message"]
        await inbox.send({"type": "get_conversations"})
        await inbox.next("conversations_list")  # the connection carries on


# -- the audit trail --------------------------------------------------------------------------


async def test_audit_trail(api: Api) -> None:
    agent1, agent2 = await api.register(role="agent"), await api.register(role="agent")
    customer, cid = await support_conversation(api)
    path = f"/api/v1/chat/sessions/{cid}"
    await done(await assign(api, agent1, cid, agent1.id))
    await done(await assign(api, agent1, cid, agent1.id))  # no change: no entry
    await done(await assign(api, agent1, cid, agent2.id))
    await done(await set_status(api, agent2, cid, "support_active"))
    await done(await patch(api, agent2, cid, {"title": "Refund", "priority": 4}))
    await done(await assign(api, agent2, cid, None))
    await done(await call(api, customer, "POST", f"{path}/close"))
    await done(await call(api, agent1, "POST", f"{path}/reopen"))

    entries = await done(await call(api, agent1, "GET", f"{path}/audit"))
    assert [(e["actor_id"], e["action"], e["from"], e["to"]) for e in entries] == [
        (agent1.id, "assigned", None, str(agent1.id)),
        (agent1.id, "transferred", str(agent1.id), str(agent2.id)),
        (agent2.id, "status", "active", "support_active"),
        (agent2.id, "title", "Test conversation", "Refund"),
        (agent2.id, "priority", "0", "4"),
        (agent2.id, "unassigned", str(agent2.id), None),
        (customer.id, "status", "support_active", "closed"),
        (agent1.id, "reopened", "closed", "active"),
    ]
    assert all(e["conversation_id"] == cid and e["at"] for e in entries)
    later = await done(await call(api, agent1, "GET", f"{path}/audit",
                                  params={"after_id": entries[5]["id"], "limit": 1}))
    assert [e["id"] for e in later] == [entries[6]["id"]]

    refusal(await call(api, customer, "GET", f"{path}/audit"), 403)
    refusal(await call(api, agent1, "GET", f"{path}/audit", params={"limit": 0}), 422)
    refusal(await call(api, agent1, "GET", "/api/v1/chat/sessions/999999999/audit"), 404)


# -- live: inboxes and members on every door --------------------------------------------------


async def test_changes_reach_inboxes_and_members_live(sqlite_api: Api) -> None:
    api = sqlite_api
    agent, watcher = await api.register(role="agent"), await api.register(role="agent")
    customer, cid = await support_conversation(api)
    device_id, dcid = await device_conversation(api)
    base = ws(api)

    sio_inbox = await Client(api.base_url, "/conversations").connect({"token": watcher.token})
    member_sio = await chat_client(api, customer, cid)
    device_sio = await mobile_client(api, device_id, dcid)
    try:
        async with raw(f"{base}/ws/conversations/?token={watcher.token}") as raw_inbox, \
                raw(f"{base}/ws/chat/{cid}/?token={customer.token}") as member_raw, \
                raw(f"{base}/api/v1/chat/ws/{cid}?token={watcher.token}") as member_session, \
                raw(f"{base}/ws/mobile/chat/{dcid}/?device_id={device_id}") as device_raw:
            await raw_inbox.next("connection_established")
            await member_raw.next("connection_established")
            await device_raw.next("connection_established")
            # (staff with the conversation open: a new person, so a presence event says when)
            await member_session.next(lambda f: f.get("message_type") == "user_joined"
                                      and f["user_id"] == watcher.id)

            # assignment: the staff inbox on both doors, with the new agent
            await done(await assign(api, agent, cid, agent.id))

            def assigned(conversation: Json) -> bool:
                return bool(conversation["id"] == cid
                            and conversation["assigned_agent_id"] == agent.id)

            pushed = await sio_inbox.next("conversation_updated",
                                          lambda e: assigned(e["conversation"]))
            assert "unread_count" in pushed["conversation"]
            framed = await raw_inbox.next(lambda f: f.get("type") == "conversation_updated"
                                          and assigned(f["conversation"]))
            assert framed["conversation"]["unread_count"] == pushed["conversation"][
                "unread_count"]

            # ... and the members, on every door, at its position
            live = await member_sio.next("conversation_updated")
            assert assigned(live["conversation"]) and "unread_count" not in live["conversation"]
            assert live["changes"] == {"assigned_agent_id": {"from": None, "to": agent.id}}
            assert live["user_id"] == agent.id
            position = live["position"]
            assert isinstance(position, int) and position > 0
            frame = await member_raw.next("conversation_updated")
            assert frame["position"] == position and assigned(frame["conversation"])
            session_frame = await member_session.next("conversation_updated")
            assert session_frame["position"] == position
            assert session_frame["chat_session_id"] == cid
            assert assigned(session_frame["metadata"]["conversation"])

            # status: the same ways, the next position
            await done(await set_status(api, agent, cid, "support_active"))
            status = await member_sio.next("conversation_updated")
            assert status["position"] == position + 1
            assert status["changes"] == {"status": {"from": "active", "to": "support_active"}}
            assert (await member_raw.next("conversation_updated"))["position"] == position + 1
            await member_session.next("conversation_updated")
            await sio_inbox.next("conversation_updated", lambda e: e["conversation_id"] == cid
                                 and e["conversation"]["status"] == "support_active")
            await raw_inbox.next(lambda f: f.get("type") == "conversation_updated"
                                 and f["conversation_id"] == cid
                                 and f["conversation"]["status"] == "support_active")

            # a device's conversation: its socket and raw route get it in their dialect
            await done(await patch(api, agent, dcid, {"priority": 9}))
            on_device = await device_sio.next("conversation_updated")
            assert on_device["conversation"]["priority"] == 9
            device_frame = await device_raw.next("conversation_updated")
            assert device_frame["position"] == on_device["position"]
            await sio_inbox.next("conversation_updated", lambda e: e["conversation_id"] == dcid
                                 and e["conversation"]["priority"] == 9)

            # the inbox doors get no member form, the members no inbox form
            await member_raw.quiet("conversation_updated")
            assert not [e for e in sio_inbox.pending("conversation_updated") if "changes" in e]
            assert not raw_inbox.seen(lambda f: "changes" in f)
            assert all("position" in f for f in member_raw.seen("conversation_updated"))

        # the log replays them (REST), in order with their positions
        replay = await done(await call(api, customer, "GET", f"/api/v1/chat/sessions/{cid}/events",
                                       params={"since": position - 1}))
        updates = [e for e in replay["events"] if e["event"] == "conversation_updated"]
        assert [e["position"] for e in updates] == [position, position + 1]
        assert updates[1]["conversation"]["status"] == "support_active"
        # ... and a Socket.IO join from a position
        rejoin = await chat_client(api, customer)
        try:
            ack = ok(await rejoin.call("join", {"conversation_id": cid, "since": {
                "position": position, "epoch": replay["epoch"]}}))
            assert [(e["event"], e["position"]) for e in ack["events"]] == [
                ("conversation_updated", position + 1)]
        finally:
            await rejoin.close()
    finally:
        for client in (sio_inbox, member_sio, device_sio):
            await client.close()


async def test_two_takes_at_once_are_applied_in_turn(api: Api) -> None:
    agent1, agent2 = await api.register(role="agent"), await api.register(role="agent")
    _, cid = await support_conversation(api)
    first, second = await asyncio.gather(assign(api, agent1, cid, agent1.id),
                                         assign(api, agent2, cid, agent2.id))
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    final = (await done(await call(api, agent1, "GET", f"/api/v1/chat/sessions/{cid}")))[
        "assigned_agent_id"]
    trail = await done(await call(api, agent1, "GET", f"/api/v1/chat/sessions/{cid}/audit"))
    assert [e["action"] for e in trail] == ["assigned", "transferred"]
    assert trail[0]["to"] == trail[1]["from"] and trail[1]["to"] == str(final)
    seats = await participants(api, agent1, cid)
    assert [uid for uid, seat in seats.items() if seat["role"] == "agent" and seat["is_active"]] \
        == [final]
    replay = await done(await call(api, agent1, "GET", f"/api/v1/chat/sessions/{cid}/events",
                                   params={"since": 0}))
    updates = [e for e in replay["events"] if e["event"] == "conversation_updated"]
    assert [e["changes"]["assigned_agent_id"]["to"] for e in updates] == [
        int(trail[0]["to"]), final]
    assert updates[1]["position"] == updates[0]["position"] + 1


async def test_a_colleague_reading_leaves_the_replies_to_the_customer(sqlite_api: Api) -> None:
    """Staff read a support conversation for its customer: a colleague's reply stays the
    customer's to read (no receipt, status or read count from staff), the customer's
    messages are read."""
    api = sqlite_api
    customer, cid = await support_conversation(api)
    alice, bob = await api.register(role="agent"), await api.register(role="agent")
    path = f"/api/v1/chat/sessions/{cid}/mark-read"
    asked = await rest_send(api, customer, cid, "help")
    reply = await rest_send(api, alice, cid, "here")
    read = await done(await call(api, bob, "POST", path, {}))
    assert read["message_ids"] == [asked["id"]], read
    named = await done(await call(api, bob, "POST", path, {"message_ids": [reply["id"]]}))
    assert named["message_ids"] == [], named
    sio = await chat_client(api, bob, cid)
    try:
        told = ok(await sio.call("message_status", {"message_id": reply["id"],
                                                    "status": "read"}))
        assert told["status"] == "sent", told
    finally:
        await sio.close()
    history = {m["id"]: m for m in await done(await call(
        api, alice, "GET", f"/api/v1/chat/sessions/{cid}/messages"))}
    assert history[reply["id"]]["status"] == "sent" and history[reply["id"]]["read_by_count"] == 0
    assert history[asked["id"]]["status"] == "read"
    # The customer reading it marks it.
    read = await done(await call(api, customer, "POST", path, {}))
    assert read["message_ids"] == [reply["id"]], read
