"""The ``/api/v1/chat/...`` family (seed 003), on both databases."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api, TestUser

V1 = "/api/v1/chat"

_shared: dict[tuple[str, str], TestUser] = {}


async def shared(api: Api, name: str) -> TestUser:
    """One user per server and ``name`` (a role, or any other label for a plain user), for
    tests where it is only an outsider or a staff member with no relations of its own.
    Registration hashes a password: it is the slow part of these tests."""
    key = (api.base_url, name)
    if key not in _shared:
        _shared[key] = await api.register(role=name if name in ("agent", "admin") else "user")
    return _shared[key]


async def send(api: Api, user: TestUser, session_id: int, content: str,
               **extra: Any) -> dict[str, Any]:
    response = await api.http.post(f"{V1}/sessions/{session_id}/messages",
                                   json={"content": content, **extra}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_create_send_and_read_history(api: Api) -> None:
    owner = await api.register()
    created = await api.http.post(f"{V1}/sessions", json={"title": "Support Chat",
                                                           "assigned_agent_id": None},
                                  headers=owner.headers)
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["title"] == "Support Chat" and session["status"] == "active"
    assert session["kind"] == "support" and session["initiator_id"] == owner.id
    assert session["total_messages"] == 0 and session["unread_count"] == 0

    first = await send(api, owner, session["id"], "Hello, I need help with my wallet")
    assert first["content"] == "Hello, I need help with my wallet"
    assert first["chat_session_id"] == session["id"] == first["conversation_id"]
    assert first["sender_id"] == owner.id and first["sender_type"] == "user"
    assert first["read_by_count"] == 0 and first["message_type"] == "text"
    second = await send(api, owner, session["id"], "Anyone?")

    history = await api.http.get(f"{V1}/sessions/{session['id']}/messages",
                                 params={"limit": 50, "offset": 0}, headers=owner.headers)
    assert history.status_code == 200
    assert [m["id"] for m in history.json()] == [first["id"], second["id"]]
    assert history.headers["x-has-more"] == "false"

    fetched = await api.http.get(f"{V1}/sessions/{session['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json()["total_messages"] == 2
    assert fetched.json()["last_message"]["id"] == second["id"]


async def test_create_validation_and_kinds(api: Api) -> None:
    owner, member, agent = await api.register(), await api.register(), await shared(api, "agent")
    group = await api.conversation(owner, title="Team", kind="group",
                                   participant_ids=[member.id])
    assert group["kind"] == "group" and group["participants_count"] == 2
    seen = await api.http.get(f"{V1}/sessions/{group['id']}", headers=member.headers)
    assert seen.status_code == 200 and seen.json()["title"] == "Team"
    people = await api.http.get(f"{V1}/sessions/{group['id']}/participants",
                                headers=member.headers)
    assert people.status_code == 200
    rows = {p["user_id"]: p for p in people.json()}
    assert rows[owner.id]["role"] == "owner" and rows[member.id]["role"] == "member"
    assert rows[member.id]["is_active"] is True and rows[member.id]["joined_at"]
    assert "last_read_at" in rows[member.id]

    assigned = await api.conversation(owner, title="Help", assigned_agent_id=agent.id)
    assert assigned["assigned_agent_id"] == agent.id

    for body, status in (
        ({"title": "x", "kind": "direct"}, 422),
        ({"title": "x", "kind": "channel"}, 422),
        ({"title": "x", "participant_ids": [2_000_000_000]}, 404),
        ({"title": "x", "assigned_agent_id": member.id}, 422),
        ({"title": "x" * 256}, 422),
        ({}, 422),
    ):
        response = await api.http.post(f"{V1}/sessions", json=body, headers=owner.headers)
        assert response.status_code == status, (body, response.text)
        assert "detail" in response.json()


async def test_auth_is_required(api: Api) -> None:
    owner = await api.register()
    session = await api.conversation(owner)
    bad = {"Authorization": "Bearer not-a-token"}
    refresh = {"Authorization": f"Bearer {owner.refresh_token}"}
    for headers in ({}, bad, refresh):
        for method, path in (("GET", f"{V1}/sessions"), ("POST", f"{V1}/sessions"),
                             ("GET", f"{V1}/sessions/{session['id']}/messages"),
                             ("GET", f"{V1}/ws-stats"), ("GET", "/api/chat/conversations/")):
            response = await api.http.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["detail"]


async def test_strangers_and_unknown_sessions(api: Api) -> None:
    owner, stranger = await api.register(), await shared(api, "stranger")
    session = await api.conversation(owner)
    message = await send(api, owner, session["id"], "private")
    sid = session["id"]
    for method, path, body in (
        ("GET", f"{V1}/sessions/{sid}", None),
        ("GET", f"{V1}/sessions/{sid}/messages", None),
        ("POST", f"{V1}/sessions/{sid}/messages", {"content": "hi"}),
        ("GET", f"{V1}/sessions/{sid}/participants", None),
        ("POST", f"{V1}/sessions/{sid}/mark-read", {}),
        ("POST", f"{V1}/sessions/{sid}/close", None),
        ("PATCH", f"{V1}/messages/{message['id']}", {"content": "hijack"}),
        ("DELETE", f"{V1}/messages/{message['id']}", None),
        ("POST", f"{V1}/messages/{message['id']}/reactions", {"emoji": "x"}),
    ):
        response = await api.http.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"]
    listed = await api.http.get(f"{V1}/sessions", headers=stranger.headers)
    assert sid not in [c["id"] for c in listed.json()]
    found = await api.http.get(f"{V1}/search", params={"q": "private"},
                               headers=stranger.headers)
    assert message["id"] not in [hit["message"]["id"] for hit in found.json()["results"]]
    for path in (f"{V1}/sessions/2000000000", f"{V1}/sessions/abc",
                 f"{V1}/sessions/0/messages", f"{V1}/sessions/99999999999999999999"):
        response = await api.http.get(path, headers=owner.headers)
        assert response.status_code == 404, (path, response.text)
    assert (await api.http.patch(f"{V1}/messages/2000000000", json={"content": "x"},
                                 headers=owner.headers)).status_code == 404


async def test_support_sessions_are_visible_to_staff(api: Api) -> None:
    owner, agent, admin_user = await api.register(), await shared(api, "agent"), api.admin
    assert admin_user is not None
    session = await api.conversation(owner, title="Need help")
    await send(api, owner, session["id"], "hello staff")
    for staff in (agent, admin_user):
        response = await api.http.get(f"{V1}/sessions/{session['id']}", headers=staff.headers)
        assert response.status_code == 200
        assert response.json()["unread_count"] >= 1
    reply = await send(api, agent, session["id"], "hi, how can I help?")
    assert reply["sender"]["role"] == "agent"
    listed = await api.http.get(f"{V1}/sessions", params={"limit": 100},
                                headers=agent.headers)
    assert session["id"] in [c["id"] for c in listed.json()]
    # a group conversation is not the staff's business
    group = await api.conversation(owner, title="Friends", kind="group")
    assert (await api.http.get(f"{V1}/sessions/{group['id']}",
                               headers=agent.headers)).status_code == 403


async def test_close_refuses_writes(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    group = await api.conversation(owner, kind="group", participant_ids=[member.id])
    message = await send(api, owner, group["id"], "before")
    denied = await api.http.post(f"{V1}/sessions/{group['id']}/close", headers=member.headers)
    assert denied.status_code == 403
    closed = await api.http.post(f"{V1}/sessions/{group['id']}/close", headers=owner.headers)
    assert closed.status_code == 200
    body = closed.json()
    assert body["success"] is True and body["message"] == "Session closed"
    assert body["status"] == "closed" and body["closed_at"] and body["id"] == group["id"]
    again = await api.http.post(f"{V1}/sessions/{group['id']}/close", headers=owner.headers)
    assert again.status_code == 200 and again.json()["closed_at"] == body["closed_at"]

    for user in (owner, member):
        write = await api.http.post(f"{V1}/sessions/{group['id']}/messages",
                                    json={"content": "after"}, headers=user.headers)
        assert write.status_code == 409 and write.json()["detail"] == "Conversation is closed"
    url = f"{V1}/messages/{message['id']}"
    edit = await api.http.patch(url, json={"content": "x"}, headers=owner.headers)
    assert edit.status_code == 409
    # reactions and deletes are writes too; reading stays open
    react = await api.http.post(f"{url}/reactions", json={"emoji": "👍"}, headers=member.headers)
    assert react.status_code == 409 and react.json()["detail"] == "Conversation is closed"
    assert (await api.http.delete(url, headers=owner.headers)).status_code == 409
    read = await api.http.post(f"{V1}/sessions/{group['id']}/mark-read", headers=member.headers)
    assert read.status_code == 200 and read.json()["message_ids"] == [message["id"]]
    history = await api.http.get(f"{V1}/sessions/{group['id']}/messages",
                                 headers=member.headers)
    assert [m["content"] for m in history.json()] == ["before"]
    active = await api.http.get(f"{V1}/sessions", params={"status": "active", "limit": 100},
                                headers=owner.headers)
    assert group["id"] not in [c["id"] for c in active.json()]
    closed_list = await api.http.get(f"{V1}/sessions", params={"status": "closed"},
                                     headers=owner.headers)
    assert [c["id"] for c in closed_list.json()] == [group["id"]]


async def test_session_list_pagination(api: Api) -> None:
    owner = await api.register()
    ids = [(await api.conversation(owner, title=f"s{i}"))["id"] for i in range(5)]
    # activity moves the oldest one to the top
    await send(api, owner, ids[0], "bump")
    expected = [ids[0], ids[4], ids[3], ids[2], ids[1]]

    everything = await api.http.get(f"{V1}/sessions", headers=owner.headers)
    assert [c["id"] for c in everything.json()] == expected
    assert "x-next-cursor" not in everything.headers

    by_offset = await api.http.get(f"{V1}/sessions", params={"limit": 2, "offset": 2},
                                   headers=owner.headers)
    assert [c["id"] for c in by_offset.json()] == expected[2:4]
    past_end = await api.http.get(f"{V1}/sessions", params={"offset": 50},
                                  headers=owner.headers)
    assert past_end.status_code == 200 and past_end.json() == []

    seen: list[int] = []
    params: dict[str, object] = {"limit": 2}
    for _ in range(5):
        page = await api.http.get(f"{V1}/sessions", params=params, headers=owner.headers)
        seen += [c["id"] for c in page.json()]
        cursor = page.headers.get("x-next-cursor")
        if cursor is None:
            break
        params = {"limit": 2, "cursor": cursor}
    assert seen == expected

    for bad in ({"cursor": "%%%not-a-cursor"}, {"limit": 0}, {"limit": 1000},
                {"offset": -1}, {"limit": "many"}, {"status": "archived"}):
        response = await api.http.get(f"{V1}/sessions", params=bad, headers=owner.headers)
        assert response.status_code == 422, (bad, response.text)


async def test_history_pagination(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    ids = [(await send(api, owner, sid, f"m{i}"))["id"] for i in range(6)]
    url = f"{V1}/sessions/{sid}/messages"

    async def page(**params: object) -> tuple[list[int], str]:
        response = await api.http.get(url, params=params, headers=owner.headers)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()], response.headers["x-has-more"]

    assert await page(limit=4) == (ids[:4], "true")
    assert await page(limit=4, offset=4) == (ids[4:], "false")
    assert await page(limit=2, offset=2) == (ids[2:4], "true")
    assert await page(offset=6) == ([], "false")
    assert await page(offset=600) == ([], "false")
    assert await page(after_id=ids[1], limit=2) == (ids[2:4], "true")
    assert await page(after_id=ids[-1]) == ([], "false")
    assert await page(before_id=ids[4], limit=2) == (ids[2:4], "true")
    assert await page(before_id=ids[2], limit=5) == (ids[:2], "false")
    assert await page(before_id=ids[0]) == ([], "false")
    assert await page(after_id=ids[0], before_id=ids[3]) == (ids[1:3], "false")
    # seed 003's clients treat ids as opaque strings: a numeric string works
    assert await page(after_id=str(ids[4])) == (ids[5:], "false")
    # a client that has seen nothing resumes from 0: the first messages
    assert await page(after_id=0, limit=4) == (ids[:4], "true")
    assert await page(after_id="0") == (ids, "false")
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -5}, {"after_id": "x"},
                {"before_id": 0}, {"after_id": -1}, {"after_id": 10**12}):
        response = await api.http.get(url, params=bad, headers=owner.headers)
        assert response.status_code == 422, (bad, response.text)


async def test_idempotent_send_over_rest(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    body = {"content": "exactly once", "client_msg_id": "abc-123"}
    first = await api.http.post(f"{V1}/sessions/{sid}/messages", json=body,
                                headers=owner.headers)
    retry = await api.http.post(f"{V1}/sessions/{sid}/messages",
                                json={**body, "content": "changed on retry"},
                                headers=owner.headers)
    assert first.status_code == retry.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["content"] == "exactly once"
    assert retry.json()["client_msg_id"] == "abc-123"
    other = await send(api, owner, sid, "another", client_msg_id="abc-124")
    assert other["id"] != first.json()["id"]
    history = await api.http.get(f"{V1}/sessions/{sid}/messages", headers=owner.headers)
    assert [m["content"] for m in history.json()] == ["exactly once", "another"]
    session = await api.http.get(f"{V1}/sessions/{sid}", headers=owner.headers)
    assert session.json()["total_messages"] == 2


async def test_message_fields_and_limits(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    parent = await send(api, owner, sid, "parent")
    reply = await send(api, owner, sid, "reply", parent_message_id=parent["id"],
                       reply_to_id=parent["id"], mentions=[owner.id], metadata={"k": 1},
                       message_type="file",
                       file={"url": "https://x/f.pdf", "name": "f.pdf", "size": 3,
                             "type": "application/pdf"})
    assert reply["parent_message_id"] == parent["id"] == reply["reply_to_id"]
    assert reply["mentions"] == [owner.id] and reply["metadata"] == {"k": 1}
    assert reply["file"]["name"] == "f.pdf" and reply["media_url"] == "https://x/f.pdf"

    url = f"{V1}/sessions/{sid}/messages"
    too_long = await api.http.post(url, json={"content": "x" * 4001}, headers=owner.headers)
    assert too_long.status_code == 413 and too_long.json()["detail"]
    assert (await api.http.post(url, json={"content": "x" * 4000},
                                headers=owner.headers)).status_code == 201
    for body in ({"content": "   "}, {}, {"content": "x", "parent_message_id": 2_000_000_000},
                 {"content": "x", "parent_message_id": 10**12},
                 {"content": "x", "message_type": "system"},
                 {"content": "x", "client_msg_id": "c" * 65}):
        response = await api.http.post(url, json=body, headers=owner.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"]


async def test_edit_delete_and_react(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    sid = (await api.conversation(owner, kind="group", participant_ids=[member.id]))["id"]
    mine = await send(api, owner, sid, "original")
    url = f"{V1}/messages/{mine['id']}"

    assert (await api.http.patch(url, json={"content": "not yours"},
                                 headers=member.headers)).status_code == 403
    assert (await api.http.delete(url, headers=member.headers)).status_code == 403
    too_long = await api.http.patch(url, json={"content": "y" * 4001}, headers=owner.headers)
    assert too_long.status_code == 413
    edited = await api.http.patch(url, json={"content": "edited"}, headers=owner.headers)
    assert edited.status_code == 200
    assert edited.json()["content"] == "edited" and edited.json()["is_edited"] is True
    assert edited.json()["edited_at"]

    added = await api.http.post(f"{url}/reactions", json={"emoji": "👍"},
                                headers=member.headers)
    assert added.status_code == 200 and added.json()["action"] == "added"
    assert added.json()["reactions"] == {"👍": [member.id]}
    both = await api.http.post(f"{url}/reactions", json={"emoji": "👍"}, headers=owner.headers)
    assert both.json()["reactions"] == {"👍": [member.id, owner.id]}
    removed = await api.http.post(f"{url}/reactions", json={"emoji": "👍"},
                                  headers=member.headers)
    assert removed.json()["action"] == "removed"
    assert removed.json()["reactions"] == {"👍": [owner.id]}
    assert (await api.http.post(f"{url}/reactions", json={"emoji": ""},
                                headers=owner.headers)).status_code == 422

    deleted = await api.http.delete(url, headers=owner.headers)
    assert deleted.status_code == 200
    assert deleted.json()["is_deleted"] is True and deleted.json()["content"] == ""
    assert deleted.json()["id"] == mine["id"]
    assert (await api.http.patch(url, json={"content": "revive"},
                                 headers=owner.headers)).status_code == 409
    history = await api.http.get(f"{V1}/sessions/{sid}/messages", headers=member.headers)
    assert history.json()[0]["is_deleted"] is True and history.json()[0]["content"] == ""

    # an admin may delete anyone's message in a conversation they see (support: staff see it)
    assert api.admin is not None
    group_message = await send(api, member, sid, "rude")
    assert (await api.http.delete(f"{V1}/messages/{group_message['id']}",
                                  headers=api.admin.headers)).status_code == 403
    ticket = (await api.conversation(member, title="Ticket"))["id"]
    theirs = await send(api, member, ticket, "rude")
    by_admin = await api.http.delete(f"{V1}/messages/{theirs['id']}", headers=api.admin.headers)
    assert by_admin.status_code == 200 and by_admin.json()["is_deleted"] is True


async def test_mark_read_forms(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    sid = (await api.conversation(owner, kind="group", participant_ids=[member.id]))["id"]
    ids = [(await send(api, owner, sid, f"m{i}"))["id"] for i in range(4)]
    url = f"{V1}/sessions/{sid}/mark-read"

    async def unread() -> int:
        got = await api.http.get(f"{V1}/sessions/{sid}", headers=member.headers)
        return got.json()["unread_count"]  # type: ignore[no-any-return]

    assert await unread() == 4
    up_to = await api.http.post(url, json={"up_to_message_id": str(ids[1])},
                                headers=member.headers)
    assert up_to.status_code == 200
    body = up_to.json()
    assert body["success"] is True and body["message"] == "Messages marked as read"
    assert body["timestamp"] and body["message_ids"] == ids[:2]
    assert await unread() == 2
    listed = await api.http.post(url, json={"message_ids": [ids[2]]}, headers=member.headers)
    assert listed.json()["message_ids"] == [ids[2]] and listed.json()["marked_count"] == 1
    assert await unread() == 1
    rest = await api.http.post(url, headers=member.headers)
    assert rest.status_code == 200 and rest.json()["message_ids"] == [ids[3]]
    assert await unread() == 0
    # the sender's own messages are never "read" by the sender
    own = await api.http.post(url, json={}, headers=owner.headers)
    assert own.json()["message_ids"] == []
    history = await api.http.get(f"{V1}/sessions/{sid}/messages", headers=owner.headers)
    assert [m["read_by_count"] for m in history.json()] == [1, 1, 1, 1]
    people = await api.http.get(f"{V1}/sessions/{sid}/participants", headers=owner.headers)
    row = next(p for p in people.json() if p["user_id"] == member.id)
    assert row["last_read_at"] and row["last_read_message_id"] == ids[3]
    both = await api.http.post(url, json={"up_to_message_id": ids[0], "message_ids": [ids[0]]},
                               headers=member.headers)
    assert both.status_code == 422
    # an id past the newest message (another conversation's) reads up to the newest only:
    # what is sent later is unread
    elsewhere = await send(api, member, (await api.conversation(member))["id"], "elsewhere")
    await send(api, member, sid, "mine")  # so that ``elsewhere`` is past this one's newest
    past = await api.http.post(url, json={"up_to_message_id": elsewhere["id"] + 1000},
                               headers=owner.headers)
    assert past.status_code == 200
    later = await send(api, member, sid, "later")
    got = await api.http.get(f"{V1}/sessions/{sid}", headers=owner.headers)
    assert got.json()["unread_count"] == 1
    people = await api.http.get(f"{V1}/sessions/{sid}/participants", headers=owner.headers)
    row = next(p for p in people.json() if p["user_id"] == owner.id)
    assert row["last_read_message_id"] < later["id"]


async def test_marking_some_ids_leaves_the_skipped_ones_unread(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    sid = (await api.conversation(owner, kind="group", participant_ids=[member.id]))["id"]
    m1, m2, m3 = [(await send(api, owner, sid, f"m{i}"))["id"] for i in range(3)]

    async def state() -> tuple[int, int, list[tuple[str, int]]]:
        """The member's unread count (one session and the list), their read position, and
        each message's status and read_by_count as the sender sees them."""
        got = (await api.http.get(f"{V1}/sessions/{sid}", headers=member.headers)).json()
        listed = (await api.http.get(f"{V1}/sessions", headers=member.headers)).json()
        assert [c["unread_count"] for c in listed if c["id"] == sid] == [got["unread_count"]]
        people = await api.http.get(f"{V1}/sessions/{sid}/participants", headers=owner.headers)
        row = next(p for p in people.json() if p["user_id"] == member.id)
        history = await api.http.get(f"{V1}/sessions/{sid}/messages", headers=owner.headers)
        return (got["unread_count"], row["last_read_message_id"],
                [(m["status"], m["read_by_count"]) for m in history.json()])

    marked = await api.http.post(f"{V1}/sessions/{sid}/mark-read",
                                 json={"message_ids": [m1, m3]}, headers=member.headers)
    assert marked.status_code == 200, marked.text
    assert marked.json()["message_ids"] == [m1, m3] and marked.json()["marked_count"] == 2
    assert await state() == (1, m1, [("read", 1), ("sent", 0), ("read", 1)])
    # a later message counts on top of the skipped one
    m4 = (await send(api, owner, sid, "m4"))["id"]
    assert (await state())[0] == 2
    # "up to m3" (the seed 004 route) marks m2 only: m1 and m3 are read already
    up_to = await api.http.post(f"/api/chat/conversations/{sid}/mark_read/",
                                json={"up_to_message_id": m3}, headers=member.headers)
    assert up_to.status_code == 200, up_to.text
    assert up_to.json()["message_ids"] == [m2]
    assert await state() == (1, m3, [("read", 1)] * 3 + [("sent", 0)])
    # reading the newest alone closes the gap: the position moves over it
    await api.http.post(f"{V1}/sessions/{sid}/mark-read", json={"message_ids": [m4]},
                        headers=member.headers)
    assert await state() == (0, m4, [("read", 1)] * 4)

    # everything after a list marks what it skipped, and names only that
    m5, m6, m7 = [(await send(api, owner, sid, f"n{i}"))["id"] for i in range(3)]
    await api.http.post(f"{V1}/sessions/{sid}/mark-read", json={"message_ids": [m6]},
                        headers=member.headers)
    assert (await state())[:2] == (2, m4)
    rest = await api.http.post(f"{V1}/sessions/{sid}/mark-read", headers=member.headers)
    assert rest.json()["message_ids"] == [m5, m7]
    assert (await state())[:2] == (0, m7)


async def test_staff_count_follows_the_messages_staff_marks(api: Api) -> None:
    customer, agent = await api.register(), await shared(api, "agent")
    sid = (await api.conversation(customer))["id"]
    m1, m2, m3 = [(await send(api, customer, sid, f"help {i}"))["id"] for i in range(3)]

    async def staff_count() -> int:
        got = await api.http.get(f"{V1}/sessions/{sid}", headers=agent.headers)
        return got.json()["unread_count"]  # type: ignore[no-any-return]

    assert await staff_count() == 3
    url = f"{V1}/sessions/{sid}/mark-read"
    marked = await api.http.post(url, json={"message_ids": [m1, m3]}, headers=agent.headers)
    assert marked.json()["message_ids"] == [m1, m3]
    assert await staff_count() == 1
    assert (await api.http.post(url, json={"up_to_message_id": m2},
                                headers=agent.headers)).json()["message_ids"] == [m2]
    assert await staff_count() == 0


async def test_search(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    token = f"needle{owner.id}"
    hit = await send(api, owner, sid, f"a {token.upper()} in a haystack")
    await send(api, owner, sid, "nothing here")
    found = await api.http.get(f"{V1}/search", params={"q": token}, headers=owner.headers)
    assert found.status_code == 200
    assert [h["message"]["id"] for h in found.json()["results"]] == [hit["id"]]
    for params in ({}, {"q": ""}, {"q": "   "}):
        response = await api.http.get(f"{V1}/search", params=params, headers=owner.headers)
        assert response.status_code == 422, params


async def test_block_in_direct_conversation(api: Api) -> None:
    from tests.test_rest_connections import direct_conversation

    a, b = await api.register(), await api.register()
    cid = await direct_conversation(api, a, b)
    early = await send(api, b, cid, "before the block")
    # Read before the block: what the node remembers of whom a blocked must not stay.
    seen = await api.http.get(f"{V1}/sessions/{cid}/messages", headers=a.headers)
    assert early["id"] in [m["id"] for m in seen.json()]
    blocked = await api.http.post(f"{V1}/block", json={"user_id": b.id}, headers=a.headers)
    assert blocked.status_code == 200
    assert blocked.json() == {"success": True, "message": "User blocked", "user_id": b.id}
    # blocking twice is harmless
    assert (await api.http.post(f"{V1}/block", json={"user_id": b.id},
                                headers=a.headers)).status_code == 200

    refused = await api.http.post(f"{V1}/sessions/{cid}/messages", json={"content": "hey"},
                                  headers=b.headers)
    assert refused.status_code == 403 and refused.json()["detail"]
    # nor edit or react there (edits, reactions and deletes are writes)
    early_url = f"{V1}/messages/{early['id']}"
    assert (await api.http.patch(early_url, json={"content": "x"},
                                 headers=b.headers)).status_code == 403
    assert (await api.http.post(f"{early_url}/reactions", json={"emoji": "👍"},
                                headers=b.headers)).status_code == 403
    assert (await api.http.delete(early_url, headers=b.headers)).status_code == 403
    # the blocker still writes, and no longer sees the blocked user's messages
    await send(api, a, cid, "I can still talk")
    seen = await api.http.get(f"{V1}/sessions/{cid}/messages", headers=a.headers)
    assert early["id"] not in [m["id"] for m in seen.json()]

    for body, status in (({"user_id": a.id}, 422), ({"user_id": 2_000_000_000}, 404)):
        response = await api.http.post(f"{V1}/block", json=body, headers=a.headers)
        assert response.status_code == status

    unblocked = await api.http.post(f"{V1}/unblock", json={"user_id": b.id}, headers=a.headers)
    assert unblocked.status_code == 200 and unblocked.json()["message"] == "User unblocked"
    await send(api, b, cid, "thanks")
    seen = await api.http.get(f"{V1}/sessions/{cid}/messages", headers=a.headers)
    assert early["id"] in [m["id"] for m in seen.json()]


async def test_ws_stats(api: Api) -> None:
    user = await shared(api, "user")
    stats = await api.http.get(f"{V1}/ws-stats", headers=user.headers)
    assert stats.status_code == 200
    body = stats.json()
    assert {"total_sessions", "total_connections", "average_users_per_session",
            "sessions"} <= body.keys()
    assert isinstance(body["sessions"], dict)


async def test_every_familys_conversation_list_pages_by_its_headers(api: Api) -> None:
    """Seed 003's, seed 004's and seed 000's conversation lists are bare arrays, a page at a
    time (`limit`): ``X-Has-More`` tells whether more lie beyond it and ``X-Next-Cursor``
    where the next page starts (its ``cursor``), so that no conversation is out of reach."""
    owner = await api.register()
    made = []
    for n in range(3):
        created = await api.http.post(f"{V1}/sessions", json={"title": f"page {n}"},
                                      headers=owner.headers)
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
    device_id = await api.device()
    for n in range(3):
        started = await api.http.post("/mobile/chat/start/",
                                      json={"device_id": device_id, "subject": f"s{n}"})
        assert started.status_code in (200, 201), started.text
    lists = ((f"{V1}/sessions", owner.headers, {}),
             ("/api/chat/conversations/", owner.headers, {}),
             ("/mobile/chat/list/", {}, {"device_id": device_id}))
    for path, headers, query in lists:
        first = await api.http.get(path, params={**query, "limit": 2}, headers=headers)
        assert first.status_code == 200, (path, first.text)
        assert len(first.json()) == 2 and first.headers["X-Has-More"] == "true", path
        cursor = first.headers["X-Next-Cursor"]
        rest = await api.http.get(path, params={**query, "limit": 2, "cursor": cursor},
                                  headers=headers)
        assert rest.status_code == 200, (path, rest.text)
        assert len(rest.json()) == 1 and rest.headers["X-Has-More"] == "false", path
        assert "X-Next-Cursor" not in rest.headers, path
        ids = [c["id"] for c in first.json() + rest.json()]
        assert len(set(ids)) == 3, (path, ids)  # all of them, once, newest first
        if path != "/mobile/chat/list/":
            assert ids == made[::-1], (path, ids)
