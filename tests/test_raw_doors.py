"""``/ws/mobile/chat/`` (seed 000), ``/ws/conversations/`` (seed 001) and
``/api/v1/chat/ws/`` (seed 003) against the real server."""

from __future__ import annotations

from tests.support.client import Api
from tests.support.server import ServerProcess
from tests.test_raw_support import (
    close_code,
    device_conversation,
    raw,
    rest_send,
    support_conversation,
)


def mobile_url(server: ServerProcess, cid: int | str, device_id: str | None) -> str:
    query = f"?device_id={device_id}" if device_id is not None else ""
    return f"{server.ws_url}/ws/mobile/chat/{cid}/{query}"


def session_url(server: ServerProcess, cid: int | str, token: str | None) -> str:
    query = f"?token={token}" if token is not None else ""
    return f"{server.ws_url}/api/v1/chat/ws/{cid}{query}"


# -- /ws/mobile/chat/ ----------------------------------------------------------------------


async def test_mobile_close_codes(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    device_id, cid = await device_conversation(sqlite_api)
    other_device, _ = await device_conversation(sqlite_api)
    assert await close_code(mobile_url(sqlite_server, cid, None)) == 4001
    assert await close_code(mobile_url(sqlite_server, cid, "unknown-device-id")) == 4002
    assert await close_code(mobile_url(sqlite_server, 999_999, device_id)) == 4003
    assert await close_code(mobile_url(sqlite_server, cid, other_device)) == 4004
    evil = {"origin": "https://evil.example"}
    assert await close_code(mobile_url(sqlite_server, cid, device_id),
                            additional_headers=evil) == 4004


async def test_mobile_events_both_ways(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    device_id, cid = await device_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")
    async with raw(mobile_url(sqlite_server, cid, device_id)) as mobile:
        established = await mobile.next(lambda f: True)
        assert set(established) == {"type", "conversation_id", "device_id", "timestamp"}
        assert established["type"] == "connection_established"
        assert established["conversation_id"] == cid and established["device_id"] == device_id
        joined = await mobile.next("mobile_user_joined")
        assert joined["device_id"] == device_id and joined["timestamp"]
        async with raw(f"{sqlite_server.ws_url}/ws/chat/{cid}/?token={agent.token}") as staff:
            await staff.next("recent_messages")
            await mobile.next(lambda f: f.get("type") == "user_joined"
                              and f["user_id"] == agent.id)

            await mobile.send({"type": "chat_message", "content": "Check this image",
                               "message_type": "image", "media_url": "https://example.com/i.jpg",
                               "is_urgent": True, "metadata": {"k": "v"},
                               "client_msg_id": "m-1"})
            echo = await mobile.next("chat_message")
            message = echo["message"]
            assert message["message_id"] == message["id"]
            assert message["message_type"] == "image" and message["is_urgent"] is True
            assert message["media_url"] == "https://example.com/i.jpg"
            assert message["sender_type"] == "mobile"
            assert message["sender_info"] == {"type": "mobile_user", "device_id": device_id}
            assert message["sent_at"] and message["status"] == "sent"
            assert message["metadata"] == {"k": "v"}
            seen = await staff.next("chat_message")
            assert seen["message_id"] == message["id"]
            # Seed 000's frames, in turn: no presence it does not name (user_status).
            assert [f["type"] for f in mobile.frames] == [
                "connection_established", "mobile_user_joined", "user_joined", "chat_message"]

            await staff.send({"type": "chat_message", "content": "How can I help?"})
            reply = (await mobile.next(lambda f: f.get("type") == "chat_message"
                                       and f["message"]["content"] == "How can I help?"))
            reply_id = reply["message"]["id"]

            await mobile.send({"type": "message_status", "message_id": reply_id,
                               "status": "delivered"})
            update = await staff.next("message_status_update")
            assert update["message_id"] == reply_id and update["status"] == "delivered"
            await mobile.next("message_status_update")

            await mobile.send({"type": "typing_indicator", "is_typing": True})
            typing = await staff.next("typing_indicator")
            assert typing["device_id"] == device_id and typing["is_typing"] is True

            await staff.send({"type": "typing_indicator", "is_typing": True})
            typing = await mobile.next("typing_indicator")
            assert typing["user_id"] == agent.id and typing["is_typing"] is True

            await mobile.send({"type": "read_receipt", "message_ids": [reply_id]})
            receipt = await mobile.next("read_receipt")
            assert receipt["device_id"] == device_id and receipt["message_ids"] == [reply_id]
            assert (await staff.next("read_receipt"))["message_id"] == reply_id

            await mobile.send({"type": "chat_message", "content": ""})
            error = await mobile.next("error")
            assert error["message"] == "Message content cannot be empty"
            await mobile.send({"type": "message_edit", "message_id": reply_id, "content": "x"})
            assert (await mobile.next("error"))["message"]
        left = await mobile.next(lambda f: f.get("type") == "user_left"
                                 and f["user_id"] == agent.id)
        assert left["total_users"] == 1


async def test_mobile_device_deactivation_closes_with_4002(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    device_id, cid = await device_conversation(sqlite_api)
    async with raw(mobile_url(sqlite_server, cid, device_id)) as mobile:
        await mobile.next("mobile_user_joined")
        response = await sqlite_api.http.delete(f"/mobile/sessions/{device_id}/")
        assert response.status_code == 200, response.text
        assert await mobile.closed() == 4002
    assert await close_code(mobile_url(sqlite_server, cid, device_id)) == 4002


# -- /ws/conversations/ --------------------------------------------------------------------


async def test_conversations_list_and_pushes(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    url = f"{sqlite_server.ws_url}/ws/conversations/"
    assert await close_code(url) == 4001
    assert await close_code(f"{url}?token=garbage") == 4002
    agent = await sqlite_api.register(role="agent")
    owner, cid = await support_conversation(sqlite_api)
    async with raw(f"{url}?token={agent.token}") as inbox, raw(
        f"{url}?token={owner.token}"
    ) as mine:
        # The list comes on connect, right after the greeting (seed 001's example renders the
        # list it is sent and never asks), and again when asked.
        greeting = await inbox.next("connection_established")
        welcome = await inbox.next("conversations_list")
        assert inbox.frames[:2] == [greeting, welcome], inbox.frames
        assert cid in [c["id"] for c in welcome["conversations"]]
        await inbox.send({"type": "get_conversations"})
        listing = await inbox.next("conversations_list")
        assert cid in [c["id"] for c in listing["conversations"]]
        # A conversation's last message has the type the message itself has (seed 001's).
        reply = await rest_send(sqlite_api, agent, cid, "staff here")
        assert reply["type"] == "support"
        await inbox.send({"type": "get_conversations"})
        shown = next(c for c in (await inbox.next("conversations_list"))["conversations"]
                     if c["id"] == cid)
        assert shown["last_message"]["id"] == reply["id"], shown
        assert shown["last_message"]["type"] == "support", shown
        assert [c["id"] for c in (await mine.next("conversations_list"))["conversations"]] == [cid]
        await mine.send({"type": "refresh_conversations", "limit": 5})
        listing = await mine.next("conversations_list")
        assert [c["id"] for c in listing["conversations"]] == [cid]
        assert {"title", "status", "customer", "priority", "last_message",
                "unread_count"} <= listing["conversations"][0].keys()

        device_id, device_cid = await device_conversation(sqlite_api)
        async with raw(mobile_url(sqlite_server, device_cid, device_id)) as mobile:
            await mobile.next("connection_established")
            await mobile.send({"type": "chat_message", "content": "Help!"})
            pushed = await inbox.next("new_customer_message")
            assert pushed["conversation_id"] == device_cid
            assert pushed["message"]["content"] == "Help!"
            updated = await inbox.next(lambda f: f.get("type") == "conversation_updated"
                                       and f["conversation_id"] == device_cid
                                       and f["conversation"]["total_messages"] == 1)
            assert updated["conversation"]["unread_count"] >= 1

        await inbox.send({"type": "get_conversations", "limit": "many"})
        assert (await inbox.next("error"))["message"]
        await inbox.send("not json")
        assert (await inbox.next("error"))["message"] == "Invalid JSON format"
        await inbox.send({"type": "chat_message", "content": "wrong door"})
        assert (await inbox.next("error"))["message"]
        await mine.quiet("new_customer_message")


# -- /api/v1/chat/ws/{session_id} ----------------------------------------------------------


async def test_session_refusals_close_with_1008(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    stranger = await sqlite_api.register()
    assert await close_code(session_url(sqlite_server, cid, None)) == 1008
    assert await close_code(session_url(sqlite_server, cid, "bad")) == 1008
    assert await close_code(session_url(sqlite_server, cid, stranger.token)) == 1008
    assert await close_code(session_url(sqlite_server, 999_999, owner.token)) == 1008
    assert await close_code(session_url(sqlite_server, "no-such", owner.token)) == 1008
    evil = {"origin": "https://evil.example"}
    assert await close_code(session_url(sqlite_server, cid, owner.token),
                            additional_headers=evil) == 1008


async def test_session_message_type_dialect(sqlite_server: ServerProcess, sqlite_api: Api) -> None:
    owner, cid = await support_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")
    async with raw(session_url(sqlite_server, cid, owner.token)) as me:
        joined = await me.next("user_joined")
        assert joined["chat_session_id"] == cid and joined["user_id"] == owner.id
        assert joined["metadata"]["total_users"] == 1 and joined["timestamp"]
        async with raw(session_url(sqlite_server, cid, agent.token)) as other:
            joined = await me.next(lambda f: f.get("message_type") == "user_joined"
                                   and f["user_id"] == agent.id)
            assert joined["metadata"]["total_users"] == 2

            await me.send({"message_type": "text", "content": "Hello, how can I help you?",
                           "reply_to_id": None, "mentions": ["user-id-1", agent.id]})
            message = await other.next("message")
            assert message["chat_session_id"] == cid and message["user_id"] == owner.id
            assert message["content"] == "Hello, how can I help you?" and message["timestamp"]
            assert message["metadata"]["reply_to_id"] is None
            assert message["metadata"]["mentions"] == ["user-id-1", agent.id]
            first_id = message["metadata"]["message_id"]
            assert (await me.next("message"))["metadata"]["message_id"] == first_id
            # Seed 003's frames only, in turn: no presence it does not name (user_status).
            assert [f["message_type"] for f in me.frames] == [
                "user_joined", "user_joined", "message"], me.frames

            await other.send({"message_type": "text", "content": "reply",
                              "reply_to_id": str(first_id)})
            reply = await me.next(lambda f: f.get("message_type") == "message"
                                  and f["content"] == "reply")
            assert reply["metadata"]["reply_to_id"] == first_id

            await me.send({"message_type": "file", "content": "Receipt.pdf",
                           "file_url": "https://bucket.example/receipt.pdf",
                           "file_name": "Receipt.pdf", "file_size": 245000,
                           "file_type": "application/pdf"})
            sent = await other.next(lambda f: f.get("message_type") == "message"
                                    and f["content"] == "Receipt.pdf")
            assert sent["metadata"]["file"]["url"] == "https://bucket.example/receipt.pdf"
            assert sent["metadata"]["file"]["size"] == 245000

            for value in ("true", "false"):
                await me.send({"message_type": "typing", "content": value})
                typing = await other.next("typing_indicator")
                assert typing["user_id"] == owner.id and typing["chat_session_id"] == cid
                assert typing["metadata"]["is_typing"] is (value == "true")

            await me.send("{oops")
            error = await me.next("error")
            assert error["message"] == "Invalid JSON format"
            await me.send({"message_type": "video", "content": "x"})
            assert (await me.next("error"))["message"]
            await me.send({"message_type": "text", "content": ""})
            assert (await me.next("error"))["message"] == "Message content cannot be empty"
            await me.send({"message_type": "typing", "content": "maybe"})
            assert (await me.next("error"))["message"]
            await me.send({"type": "chat_message", "content": "wrong dialect"})
            assert (await me.next("error"))["message"]
        left = await me.next("user_left")
        assert left["user_id"] == agent.id and left["metadata"]["total_users"] == 1
