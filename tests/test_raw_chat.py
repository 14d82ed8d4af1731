"""``/ws/chat/{id}/`` (seeds 001, 002, 004) against the real server: handshake, every inbound
frame type and the frames it produces, refusals, and bad frames."""

from __future__ import annotations

import json

from tests.support.client import Api
from tests.support.server import ServerProcess
from tests.test_raw_support import (
    close_code,
    device_conversation,
    raw,
    rest_send,
    support_conversation,
)


def chat_url(server: ServerProcess, cid: int | str, token: str | None = None) -> str:
    query = f"?token={token}" if token is not None else ""
    return f"{server.ws_url}/ws/chat/{cid}/{query}"


async def test_connect_sends_established_then_recent_then_presence(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    first = await rest_send(sqlite_api, owner, cid, "before you came")
    async with raw(chat_url(sqlite_server, cid, owner.token)) as client:
        established = await client.next(lambda f: True)
        assert established["type"] == "connection_established"
        assert established["message"] == "Connected to chat"
        assert established["conversation_id"] == cid
        assert established["user_id"] == owner.id
        assert established["timestamp"].endswith("Z")
        recent = await client.next(lambda f: True)
        assert recent["type"] == "recent_messages"
        assert [m["id"] for m in recent["messages"]] == [first["id"]]
        message = recent["messages"][0]
        assert message["content"] == "before you came"
        assert {"type", "customer", "sender", "created_at"} <= message.keys()
        joined = await client.next(lambda f: True)
        assert joined["type"] == "user_joined"
        assert joined["user_id"] == owner.id and joined["total_users"] == 1
        status = await client.next("user_status")
        assert status == {**status, "user_id": owner.id, "status": "online"}


async def test_bearer_header_authenticates(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    owner, cid = await support_conversation(sqlite_api)
    async with raw(chat_url(sqlite_server, cid), additional_headers=owner.headers) as client:
        assert (await client.next("connection_established"))["user_id"] == owner.id


async def test_refusals_close_with_their_codes(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    stranger = await sqlite_api.register()
    assert await close_code(chat_url(sqlite_server, cid)) == 4001
    assert await close_code(chat_url(sqlite_server, cid, "not-a-jwt")) == 4002
    assert await close_code(chat_url(sqlite_server, cid, owner.refresh_token)) == 4002
    assert await close_code(chat_url(sqlite_server, 999_999, owner.token)) == 4003
    assert await close_code(chat_url(sqlite_server, "abc123", owner.token)) == 4003
    assert await close_code(chat_url(sqlite_server, cid, stranger.token)) == 4004
    evil = {"origin": "https://evil.example"}
    assert await close_code(chat_url(sqlite_server, cid, owner.token), additional_headers=evil,
                            ) == 4004
    # The server's own origin is allowed.
    own = {"origin": sqlite_server.base_url}
    async with raw(chat_url(sqlite_server, cid, owner.token), additional_headers=own) as client:
        await client.next("connection_established")


async def test_every_inbound_event(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    owner, cid = await support_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")
    async with (
        raw(chat_url(sqlite_server, cid, owner.token)) as me,
        raw(chat_url(sqlite_server, cid, agent.token)) as other,
    ):
        await me.next("user_status")
        await other.next(lambda f: f.get("type") == "user_joined" and f["user_id"] == agent.id)
        await me.next(lambda f: f.get("type") == "user_joined" and f["user_id"] == agent.id)

        # chat_message: everyone, the sender included, gets the union frame.
        await me.send({"type": "chat_message", "content": "Hello!", "parent_message_id": None})
        mine = await me.next("chat_message")
        theirs = await other.next("chat_message")
        assert mine == theirs
        message_id = mine["message_id"]
        assert mine["message"]["id"] == message_id and mine["content"] == "Hello!"
        assert mine["sender_id"] == owner.id
        assert mine["sender_name"] == f"{owner.first_name} {owner.last_name}"
        assert {"sender_avatar", "created_at"} <= mine.keys()
        assert mine["message"]["sender"]["first_name"] == owner.first_name
        assert mine["message"]["is_edited"] is False

        # typing (seed 001) and typing_indicator (002, 004): to the others only.
        for kind in ("typing", "typing_indicator"):
            await me.send({"type": kind, "is_typing": True})
            typing = await other.next("typing_indicator")
            assert typing["user_id"] == owner.id and typing["is_typing"] is True
            assert typing["user_name"] == f"{owner.first_name} {owner.last_name}"
            assert typing["username"]

        # Reads by the agent: messages_read plus one read_receipt per message, to everyone.
        await other.send({"type": "mark_read"})
        read = await me.next("messages_read")
        assert read["user_id"] == agent.id and read["message_ids"] == [message_id]
        assert read["read_at"]
        receipt = await me.next("read_receipt")
        assert receipt["message_id"] == message_id and receipt["user_id"] == agent.id
        await other.next("messages_read")

        await me.send({"type": "chat_message", "content": "second"})
        second = (await other.next("chat_message"))["message_id"]
        await other.send({"type": "message_read", "message_ids": [second]})
        assert (await me.next("messages_read"))["message_ids"] == [second]
        await me.send({"type": "chat_message", "content": "third"})
        third = (await other.next("chat_message"))["message_id"]
        await other.send({"type": "read_receipt", "message_id": third})
        receipt = await me.next(lambda f: f.get("type") == "read_receipt"
                                and f["message_id"] == third)
        assert receipt["user_id"] == agent.id

        # message_status (seed 000's vocabulary, accepted here too); a report that changes
        # nothing (the message is read already) tells no one.
        await other.send({"type": "message_status", "message_id": message_id,
                          "status": "delivered"})
        await me.send({"type": "chat_message", "content": "fourth"})
        fourth = (await other.next("chat_message"))["message_id"]
        await other.send({"type": "message_status", "message_id": fourth,
                          "status": "delivered"})
        status = await me.next("message_status_update")
        assert status["message_id"] == fourth and status["status"] == "delivered"

        # Reactions toggle.
        await other.send({"type": "message_reaction", "message_id": message_id, "emoji": "👍"})
        added = await me.next("message_reaction")
        assert added == {**added, "message_id": message_id, "emoji": "👍", "user_id": agent.id,
                         "action": "added"}
        await other.send({"type": "message_reaction", "message_id": message_id, "emoji": "👍"})
        assert (await me.next("message_reaction"))["action"] == "removed"

        # Edit and delete: the sender only, seen by everyone.
        await me.send({"type": "message_edit", "message_id": message_id, "content": "Edited"})
        edit = await other.next("message_edit")
        assert edit["content"] == "Edited" and edit["edited_at"] and edit["timestamp"]
        await other.send({"type": "message_edit", "message_id": message_id, "content": "no"})
        assert (await other.next("error"))["message"]
        await me.send({"type": "message_delete", "message_id": message_id})
        deleted = await other.next("message_delete")
        assert deleted["message_id"] == message_id and deleted["timestamp"]
        await me.next("message_delete")

    history = await sqlite_api.http.get(f"/api/v1/chat/sessions/{cid}/messages",
                                        headers=owner.headers)
    first = history.json()[0] if isinstance(history.json(), list) else None
    if first is not None:
        assert first["is_deleted"] is True and first["content"] == ""


async def test_client_msg_id_retry_is_echoed_once_to_the_sender_only(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")
    async with (
        raw(chat_url(sqlite_server, cid, owner.token)) as me,
        raw(chat_url(sqlite_server, cid, agent.token)) as other,
    ):
        await me.next("recent_messages")
        await other.next("recent_messages")
        frame = {"type": "chat_message", "content": "once", "client_msg_id": "c-1"}
        await me.send(frame)
        first = await me.next("chat_message")
        await other.next("chat_message")
        await me.send(frame)
        again = await me.next("chat_message")
        assert again["message_id"] == first["message_id"]
        assert again["message"]["client_msg_id"] == "c-1"
        await me.send({"type": "chat_message", "content": "sync"})
        await other.next(lambda f: f.get("type") == "chat_message" and f["content"] == "sync")
        assert len(other.seen("chat_message")) == 2


async def test_bad_frames_get_errors_and_the_connection_stays_open(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    _, other_cid = await support_conversation(sqlite_api, owner)
    foreign = await rest_send(sqlite_api, owner, other_cid, "elsewhere")
    async with raw(chat_url(sqlite_server, cid, owner.token)) as client:
        await client.next("recent_messages")
        bad: list[tuple[object, str | None]] = [
            ("{not json", "Invalid JSON format"),
            ("[1, 2]", None),
            ({"type": "no_such_event"}, None),
            ({"content": "no type"}, None),
            ({"type": "chat_message", "content": "   "}, "Message content cannot be empty"),
            ({"type": "chat_message"}, "Message content cannot be empty"),
            ({"type": "chat_message", "content": "x" * 4001}, None),
            ({"type": "chat_message", "content": 5}, None),
            (b'{"type": "chat_message", "content": "binary"}', None),
            ({"type": "chat_message", "content": "y" * 70_000}, None),
            ({"type": "message_edit", "message_id": foreign["id"], "content": "hijack"}, None),
            ({"type": "message_delete", "message_id": "abc"}, None),
            ({"type": "message_read", "message_ids": "all"}, None),
            ({"type": "typing", "is_typing": "yes"}, None),
            ({"type": "message_reaction", "message_id": 1}, None),
        ]
        for frame, text in bad:
            await client.send(frame)
            error = await client.next("error")
            assert error["message"] and error["error"] == error["message"], (frame, error)
            if text is not None:
                assert error["message"] == text
        await client.send({"type": "chat_message", "content": "still here"})
        echo = await client.next("chat_message")
        assert echo["content"] == "still here"
    history = await sqlite_api.http.get(f"/api/v1/chat/sessions/{cid}/messages",
                                        headers=owner.headers)
    assert [m["content"] for m in history.json()] == ["still here"]
    assert json.loads(json.dumps(foreign))["content"] == "elsewhere"


async def test_send_rate_is_limited_per_connection(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    async with raw(chat_url(sqlite_server, cid, owner.token)) as client:
        await client.next("recent_messages")
        for n in range(60):
            await client.send({"type": "chat_message", "content": f"m{n}"})
        await client.send({"type": "sentinel"})
        await client.next(lambda f: f.get("type") == "error" and "sentinel" in f["message"],
                          within=15)
        limited = client.seen(lambda f: f.get("code") == "rate_limited")
        sent = client.seen("chat_message")
        assert limited and "retry after" in limited[0]["message"]
        assert len(sent) + len(limited) == 60 and len(sent) >= 40


async def test_leaving_tells_the_others(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    owner, cid = await support_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")
    async with raw(chat_url(sqlite_server, cid, owner.token)) as me:
        await me.next("user_status")
        async with raw(chat_url(sqlite_server, cid, agent.token)) as other:
            await other.next("recent_messages")
            await me.next(lambda f: f.get("type") == "user_joined" and f["user_id"] == agent.id)
        left = await me.next("user_left")
        assert left["user_id"] == agent.id and left["total_users"] == 1
        offline = await me.next(lambda f: f.get("type") == "user_status"
                                and f["user_id"] == agent.id)
        assert offline["status"] == "offline"


async def test_reads_name_exactly_the_messages_marked(server: ServerProcess, api: Api) -> None:
    owner, member = await api.register(), await api.register()
    cid = (await api.conversation(owner, kind="group", participant_ids=[member.id]))["id"]
    m1, m2, m3, m4, m5 = [(await rest_send(api, owner, cid, f"m{i}"))["id"] for i in range(5)]

    async def unread() -> int:
        got = await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=member.headers)
        return got.json()["unread_count"]  # type: ignore[no-any-return]

    async with (
        raw(chat_url(server, cid, owner.token)) as me,
        raw(chat_url(server, cid, member.token)) as other,
    ):
        await other.next("recent_messages")
        for frame, marked, left in (
            ({"type": "message_read", "message_ids": [m1, m3]}, [m1, m3], 3),
            ({"type": "read_receipt", "message_ids": [m5]}, [m5], 2),
            # the range marks what the lists skipped, and nothing twice
            ({"type": "mark_read", "up_to_message_id": m4}, [m2, m4], 0),
        ):
            await other.send(frame)
            read = await me.next("messages_read")
            assert read["user_id"] == member.id and read["message_ids"] == marked, frame
            receipts = [await me.next("read_receipt") for _ in marked]
            assert [r["message_id"] for r in receipts] == marked
            assert await unread() == left
    history = await api.history(owner, cid)
    assert [m["read_by_count"] for m in history] == [1] * 5


async def test_a_device_reading_some_ids_leaves_the_rest_unread(
    server: ServerProcess, api: Api
) -> None:
    device_id, cid = await device_conversation(api)
    agent = await api.register(role="agent")
    r1, r2, r3 = [(await rest_send(api, agent, cid, f"r{i}"))["id"] for i in range(3)]
    mobile_url = f"{server.ws_url}/ws/mobile/chat/{cid}/?device_id={device_id}"

    async def device_unread() -> int:
        got = await api.http.get(f"/mobile/chat/{cid}/detail/", params={"device_id": device_id})
        return got.json()["unread_count"]  # type: ignore[no-any-return]

    assert await device_unread() == 3
    async with (
        raw(chat_url(server, cid, agent.token)) as staff,
        raw(mobile_url) as mobile,
    ):
        await mobile.next("mobile_user_joined")
        for frame, marked, left in (
            ({"type": "read_receipt", "message_ids": [r1, r3]}, [r1, r3], 1),
            ({"type": "read_receipt", "message_id": r2}, [r2], 0),
        ):
            await mobile.send(frame)
            receipt = await mobile.next("read_receipt")
            assert receipt["device_id"] == device_id and receipt["message_ids"] == marked
            seen = [await staff.next("read_receipt") for _ in marked]
            assert [r["message_id"] for r in seen] == marked
            assert await device_unread() == left
