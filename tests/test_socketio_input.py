"""Bad input and retries on Socket.IO: refusals come back as ``{ok: false, error}`` acks (or an
``error`` event without an ack) and the socket stays connected; a retried ``client_msg_id``
returns the first message and is not broadcast again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.support.client import Api
from tests.support.server import ServerProcess
from tests.test_socketio_helpers import chat_client, group, ok, refused


async def test_idempotent_retries(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    a = await chat_client(api, alice, cid)
    b = await chat_client(api, bob, cid)
    try:
        body = {"conversation_id": cid, "content": "once", "client_msg_id": "c-1"}
        first = ok(await a.call("chat_message", body))
        assert first["duplicate"] is False
        again = ok(await a.call("chat_message", body))
        assert again["duplicate"] is True and again["message"]["id"] == first["message"]["id"]
        assert again["message"]["client_msg_id"] == "c-1"
        # a retry from another tab of the same user is the same send, too
        a2 = await chat_client(api, alice, cid)
        third = ok(await a2.call("chat_message", body))
        assert third["duplicate"] is True and third["message"]["id"] == first["message"]["id"]
        await a2.close()
        # the same key from another sender is another message
        other = ok(await b.call("chat_message", body))
        assert other["duplicate"] is False and other["message"]["id"] != first["message"]["id"]

        barrier = ok(await a.call("chat_message", {"conversation_id": cid, "content": "next"}))
        got = [(await b.next("chat_message"))["message"]["id"] for _ in range(2)]
        assert got == [first["message"]["id"], barrier["message"]["id"]]
    finally:
        await a.close()
        await b.close()


async def test_bad_input_keeps_the_socket(sqlite_api: Api, sqlite_server: ServerProcess) -> None:
    api = sqlite_api
    log_start = len(sqlite_server.log())
    alice, stranger = await api.register(), await api.register()
    cid = await group(api, alice)
    private = await group(api, stranger)
    a = await chat_client(api, alice, cid)
    try:
        cases = [
            ("chat_message", "just a string", "invalid"),
            ("chat_message", None, "invalid"),
            ("chat_message", [cid, "x"], "invalid"),
            ("chat_message", {"conversation_id": cid}, "empty_content"),
            ("chat_message", {"conversation_id": cid, "content": "   "}, "empty_content"),
            ("chat_message", {"conversation_id": cid, "content": 5}, "invalid"),
            ("chat_message", {"conversation_id": cid, "content": "x" * 4001}, "too_large"),
            ("chat_message", {"conversation_id": "abc", "content": "x"}, "invalid"),
            ("chat_message", {"conversation_id": True, "content": "x"}, "invalid"),
            ("chat_message", {"conversation_id": private, "content": "x"}, "not_joined"),
            ("chat_message", {"conversation_id": cid, "content": "x",
                              "message_type": "video"}, "invalid"),
            ("chat_message", {"conversation_id": cid, "content": "x",
                              "reply_to_id": 987654321}, "invalid"),
            ("chat_message", {"conversation_id": cid, "content": "x",
                              "client_msg_id": "k" * 65}, "invalid"),
            ("join", {}, "invalid"),
            ("join", {"conversation_id": 987654321}, "not_found"),
            ("join", {"conversation_id": private}, "forbidden"),
            ("join", {"conversation_id": cid, "after_message_id": "later"}, "invalid"),
            ("leave", 7, "invalid"),
            ("typing_indicator", {"conversation_id": cid, "is_typing": "yes"}, "invalid"),
            ("read_receipt", {"conversation_id": cid, "message_ids": "all"}, "invalid"),
            ("read_receipt", {"conversation_id": cid, "message_ids": [1, "x"]}, "invalid"),
            ("message_status", {"message_id": 987654321, "status": "read"}, "not_found"),
            ("message_status", {"status": "read"}, "invalid"),
            ("message_reaction", {"message_id": 987654321, "emoji": "x"}, "not_found"),
            ("message_edit", {"message_id": 987654321, "content": "x"}, "not_found"),
            ("message_delete", {"message_id": [1]}, "invalid"),
            ("no_such_event", {}, "unknown_event"),
        ]
        for event, data, code in cases:
            refused(await a.call(event, data), code)
        assert a.connected

        message = ok(await a.call("chat_message", {"conversation_id": cid,
                                                   "content": "fine"}))["message"]
        refused(await a.call("message_reaction", {"message_id": message["id"], "emoji": ""}),
                "invalid")
        refused(await a.call("message_edit", {"message_id": message["id"], "content": None}),
                "invalid")

        # without an ack, a refusal arrives as an `error` event
        await a.emit("chat_message", {"conversation_id": cid, "content": ""})
        error = await a.next("error")
        assert error["code"] == "empty_content" and error["event"] == "chat_message"
        assert error["message"] == "Message content cannot be empty"
        await a.emit("bogus")
        assert (await a.next("error"))["code"] == "unknown_event"
        assert a.connected
        ok(await a.call("chat_message", {"conversation_id": cid, "content": "still fine"}))
        assert "Traceback" not in sqlite_server.log()[log_start:]
    finally:
        await a.close()


async def test_send_rate_limit(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.register()
    cid = await group(api, alice)
    a = await chat_client(api, alice, cid)
    try:
        acks = await asyncio.gather(*(
            a.call("chat_message", {"conversation_id": cid, "content": str(i)})
            for i in range(60)))
        limited = [ack for ack in acks if not ack["ok"]]
        assert limited, "the burst (40 by default) was not enforced"
        error = refused(limited[0], "rate_limited")
        assert error["retry_after"] > 0
        assert a.connected
    finally:
        await a.close()


async def test_oversize_frame_is_refused_and_the_socket_stays(sqlite_api: Api) -> None:
    """A frame over the 64 KiB limit gets a too_large error, in the ack or as an event."""
    api = sqlite_api
    alice = await api.register()
    cid = await group(api, alice)
    a = await chat_client(api, alice, cid)
    try:
        big = {"conversation_id": cid, "content": "hi", "metadata": {"blob": "x" * 70_000}}
        error = refused(await a.call("chat_message", big), "too_large")
        assert "65536" in error["message"]
        await a.emit("chat_message", big)
        assert (await a.next("error"))["code"] == "too_large"
        assert a.connected
        ok(await a.call("chat_message", {"conversation_id": cid, "content": "small again"}))
        history = await api.http.get(f"/api/v1/chat/sessions/{cid}/messages",
                                     headers=alice.headers)
        assert [m["content"] for m in history.json()] == ["small again"]
    finally:
        await a.close()


async def test_an_event_packet_without_a_name_is_refused(
    sqlite_api: Api, sqlite_server: ServerProcess
) -> None:
    """``42/chat,{}`` or ``42/chat,5[1]`` is no event (its data must be ``[name, ...]``): the
    answer is an ``invalid`` error (in the ack when it asked for one), no traceback is logged,
    and the socket carries on. Spoken as raw Engine.IO, which no client library would send."""
    alice = await sqlite_api.register()
    log_start = len(sqlite_server.log())
    url = f"{sqlite_server.ws_url}/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url) as ws:
        async with asyncio.timeout(5):
            assert (await ws.recv()).startswith("0")
            await ws.send("40/chat," + json.dumps({"token": alice.token}))
            while not (await ws.recv()).startswith("40/chat,"):
                pass

            async def answer() -> list[Any]:
                while True:
                    frame = await ws.recv()
                    if isinstance(frame, str) and frame.startswith(("42/chat,", "43/chat,")):
                        return list(json.loads(frame[frame.index("[", 6):]))

            await ws.send("42/chat,{}")
            name, error = await answer()
            assert name == "error" and error["code"] == "invalid" and error["event"] is None
            await ws.send("42/chat,5[1]")
            [reply] = await answer()
            assert reply["ok"] is False and reply["error"]["code"] == "invalid"
            await ws.send("42/chat,7[]")
            [reply] = await answer()
            assert reply["error"]["code"] == "invalid"
            await ws.send('42/chat,6["no_such_event",{}]')
            [reply] = await answer()
            assert reply["error"]["code"] == "unknown_event"  # the socket still answers
    assert "Traceback" not in sqlite_server.log()[log_start:]
