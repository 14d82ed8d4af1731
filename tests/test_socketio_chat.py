"""``/chat`` over Socket.IO: every client event, its ack and its broadcast, against the real
server. Negative checks ("B got nothing") wait on a later event as a barrier: one socket's
events arrive in order, so whatever was not there before the barrier was never sent."""

from __future__ import annotations

from tests.support.client import Api
from tests.test_socketio_helpers import (
    chat_client,
    group,
    mobile_client,
    ok,
    refused,
    start_device_conversation,
)


async def test_join_send_and_broadcast(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    cid = await group(api, alice, bob, carol)
    a = await chat_client(api, alice, cid)
    b = await chat_client(api, bob)
    c = await chat_client(api, carol)
    try:
        joined = await a.next("user_joined")
        assert joined == {"conversation_id": cid, "user_id": alice.id, "device_id": None,
                          "user_name": f"{alice.first_name} {alice.last_name}",
                          "total_users": 1, "timestamp": joined["timestamp"]}
        assert (await a.next("user_status"))["status"] == "online"

        ack = ok(await b.call("join", {"conversation_id": cid}))
        assert ack["conversation"]["id"] == cid and ack["messages"] == []
        assert ack["has_more"] is False
        seen = await a.next("user_joined", lambda e: e["user_id"] == bob.id)
        assert seen["total_users"] == 2
        online = await a.next("user_status", lambda e: e["user_id"] == bob.id)
        assert online == {"conversation_id": cid, "user_id": bob.id, "status": "online",
                          "timestamp": online["timestamp"]}

        sent = ok(await a.call("chat_message", {"conversation_id": cid, "content": "hi bob",
                                                "metadata": {"k": 1}}))
        message = sent["message"]
        assert sent["duplicate"] is False
        assert message["content"] == "hi bob" and message["sender_id"] == alice.id
        assert message["conversation_id"] == cid and message["metadata"] == {"k": 1}
        got = await b.next("chat_message")
        # The event's place in the conversation's log (CONTRACT §9): the first change.
        assert got == {"conversation_id": cid, "position": 1, "message": message}

        # carol has not joined: she gets nothing, and cannot act in the conversation.
        refused(await c.call("chat_message", {"conversation_id": cid, "content": "x"}),
                "not_joined")
        refused(await c.call("typing_indicator", {"conversation_id": cid, "is_typing": True}),
                "not_joined")
        assert ok(await c.call("join", {"conversation_id": cid}))["messages"][-1]["id"] == \
            message["id"]

        # replies, history order, and the sender not echoed
        reply = ok(await b.call("chat_message", {"conversation_id": cid, "content": "hey",
                                                 "reply_to_id": message["id"]}))["message"]
        assert reply["reply_to_id"] == message["id"]
        assert (await a.next("chat_message"))["message"]["id"] == reply["id"]
        assert a.pending("chat_message") == []
        assert b.pending("chat_message") == []  # bob got alice's only; not his own echo
        # carol's first chat_message is the reply: alice's came before she joined
        assert (await c.next("chat_message"))["message"]["id"] == reply["id"]

        ok(await c.call("leave", {"conversation_id": cid}))
        left = await a.next("user_left", lambda e: e["user_id"] == carol.id)
        assert left["total_users"] == 2
        refused(await c.call("chat_message", {"conversation_id": cid, "content": "x"}),
                "not_joined")
    finally:
        for client in (a, b, c):
            await client.close()


async def test_typing_reads_status_reactions_edit_delete(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    a = await chat_client(api, alice, cid)
    b = await chat_client(api, bob, cid)
    try:
        await a.next("user_joined", lambda e: e["user_id"] == bob.id)

        # typing: to the others only
        ok(await a.call("typing_indicator", {"conversation_id": cid, "is_typing": True}))
        typing = await b.next("typing_indicator")
        assert typing["user_id"] == alice.id and typing["is_typing"] is True
        assert typing["conversation_id"] == cid and typing["user_name"]
        barrier = ok(await b.call("chat_message", {"conversation_id": cid, "content": "1"}))
        await a.next("chat_message", lambda e: e["message"]["id"] == barrier["message"]["id"])
        assert a.pending("typing_indicator") == []

        first = barrier["message"]
        # read receipt: to everyone in the room, with the ids read
        read = ok(await a.call("read_receipt", {"conversation_id": cid,
                                                "up_to_message_id": first["id"]}))
        assert read["message_ids"] == [first["id"]] and read["marked_count"] == 1
        for client in (a, b):
            receipt = await client.next("read_receipt")
            assert receipt["user_id"] == alice.id and receipt["message_ids"] == [first["id"]]

        second = ok(await b.call("chat_message", {"conversation_id": cid,
                                                  "content": "2"}))["message"]
        await a.next("chat_message")
        read = ok(await a.call("read_receipt", {"conversation_id": cid,
                                                "message_ids": [second["id"]]}))
        assert read["message_ids"] == [second["id"]]
        await b.next("read_receipt", lambda e: e["message_ids"] == [second["id"]])

        # message status: a report that changes nothing (read already) tells no one
        status = ok(await a.call("message_status", {"message_id": first["id"],
                                                    "status": "delivered"}))
        assert status["message_id"] == first["id"] and status["status"] == "read"
        fresh = ok(await b.call("chat_message", {"conversation_id": cid,
                                                 "content": "2b"}))["message"]
        await a.next("chat_message", lambda e: e["message"]["id"] == fresh["id"])
        status = ok(await a.call("message_status", {"message_id": fresh["id"],
                                                    "status": "delivered"}))
        assert status["status"] == "delivered"
        update = await b.next("message_status_update")  # the first one told is this one
        assert update["message_id"] == fresh["id"] and update["conversation_id"] == cid
        assert update["status"] == "delivered"
        refused(await a.call("message_status", {"message_id": first["id"], "status": "lost"}),
                "invalid")
        # the sender's report on their own message records and tells nothing
        own = ok(await b.call("chat_message", {"conversation_id": cid, "content": "3"}))
        own_status = ok(await b.call("message_status", {"message_id": own["message"]["id"],
                                                        "status": "read"}))
        assert own_status["status"] == "sent"
        barrier = ok(await b.call("chat_message", {"conversation_id": cid, "content": "4"}))
        await a.next("chat_message", lambda e: e["message"]["id"] == barrier["message"]["id"])
        told = [e["message_id"] for e in a.pending("message_status_update")]
        assert own["message"]["id"] not in told, told

        # reactions toggle
        added = ok(await a.call("message_reaction", {"conversation_id": cid,
                                                     "message_id": first["id"], "emoji": "👍"}))
        assert added["action"] == "added" and added["reactions"] == {"👍": [alice.id]}
        event = await b.next("message_reaction")
        assert event == {"conversation_id": cid, "message_id": first["id"], "emoji": "👍",
                         "user_id": alice.id, "device_id": None, "action": "added",
                         "timestamp": event["timestamp"], "position": event["position"]}
        removed = ok(await a.call("message_reaction", {"message_id": first["id"],
                                                       "emoji": "👍"}))
        assert removed["action"] == "removed"
        assert (await b.next("message_reaction"))["action"] == "removed"

        # edit: the sender only
        refused(await a.call("message_edit", {"message_id": first["id"], "content": "no"}),
                "forbidden")
        edited = ok(await b.call("message_edit", {"message_id": first["id"],
                                                  "content": "one"}))["message"]
        assert edited["content"] == "one" and edited["is_edited"] is True
        for client in (a, b):
            event = await client.next("message_edit")
            assert event["message_id"] == first["id"] and event["content"] == "one"
            assert event["edited_at"] and event["conversation_id"] == cid

        # delete: the sender only; keeps its id, loses its content
        refused(await a.call("message_delete", {"message_id": first["id"]}), "forbidden")
        deleted = ok(await b.call("message_delete", {"message_id": first["id"]}))["message"]
        assert deleted["id"] == first["id"] and deleted["is_deleted"] is True
        assert deleted["content"] == ""
        for client in (a, b):
            event = await client.next("message_delete")
            assert event["message_id"] == first["id"] and event["conversation_id"] == cid
    finally:
        await a.close()
        await b.close()


async def test_read_receipts_name_exactly_the_messages_marked(api: Api) -> None:
    alice, bob = await api.register(), await api.register()
    cid = await group(api, alice, bob)
    a = await chat_client(api, alice, cid)
    b = await chat_client(api, bob, cid)
    try:
        m1, m2, m3 = [ok(await b.call("chat_message", {"conversation_id": cid,
                                                       "content": f"m{i}"}))["message"]["id"]
                      for i in range(3)]

        async def unread() -> int:
            got = await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=alice.headers)
            return got.json()["unread_count"]  # type: ignore[no-any-return]

        for read, marked, left in (({"message_ids": [m1, m3]}, [m1, m3], 1),
                                   ({}, [m2], 0)):  # everything: the skipped one only
            ack = ok(await a.call("read_receipt", {"conversation_id": cid, **read}))
            assert ack["message_ids"] == marked and ack["marked_count"] == len(marked)
            receipt = await b.next("read_receipt")
            assert receipt["user_id"] == alice.id and receipt["message_ids"] == marked
            assert await unread() == left
    finally:
        await a.close()
        await b.close()


async def test_a_device_reading_some_ids_over_socketio(api: Api) -> None:
    device_id = await api.device()
    cid = await start_device_conversation(api, device_id)
    agent = await api.register(role="agent")
    staff = await chat_client(api, agent, cid)
    device = await mobile_client(api, device_id, cid)
    try:
        r1, r2, r3 = [ok(await staff.call("chat_message", {"conversation_id": cid,
                                                           "content": f"r{i}"}))["message"]["id"]
                      for i in range(3)]

        async def device_unread() -> int:
            got = await api.http.get(f"/mobile/chat/{cid}/detail/",
                                     params={"device_id": device_id})
            return got.json()["unread_count"]  # type: ignore[no-any-return]

        for read, marked, left in (({"message_ids": [r1, r3]}, [r1, r3], 1),
                                   ({"up_to_message_id": r3}, [r2], 0)):
            ack = ok(await device.call("read_receipt", {"conversation_id": cid, **read}))
            assert ack["message_ids"] == marked
            receipt = await staff.next("read_receipt")
            assert receipt["device_id"] == device_id and receipt["message_ids"] == marked
            assert await device_unread() == left
    finally:
        await device.close()
        await staff.close()


async def test_message_ops_are_scoped_to_joined_conversations(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    one = await group(api, alice, bob)
    two = await group(api, alice, bob)
    a = await chat_client(api, alice, one)
    b = await chat_client(api, bob, two)
    try:
        # alice has joined only `one`; a message of `two` is out of her reach here
        other = ok(await b.call("chat_message", {"conversation_id": two,
                                                 "content": "x"}))["message"]
        refused(await a.call("message_reaction", {"message_id": other["id"], "emoji": "x"}),
                "not_found")
        refused(await a.call("message_reaction", {"conversation_id": two,
                                                  "message_id": other["id"], "emoji": "x"}),
                "not_joined")
        # joined to both, a message op without conversation_id finds the message's own
        ok(await a.call("join", {"conversation_id": two}))
        ack = ok(await a.call("message_reaction", {"message_id": other["id"], "emoji": "x"}))
        assert ack["conversation_id"] == two
        # chat_message must name one when several are joined
        refused(await a.call("chat_message", {"content": "where?"}), "invalid")
    finally:
        await a.close()
        await b.close()


async def test_a_blocker_gets_no_reactions_or_edits_from_the_blocked(sqlite_api: Api) -> None:
    """In a group, a user who blocked another gets nothing from them: not their messages, nor
    their reactions and edits (CONTRACT section 2); the others get all of it."""
    api = sqlite_api
    alice, bob, carol = await api.register(), await api.register(), await api.register()
    cid = await group(api, alice, bob, carol)
    blocked = await api.http.post("/api/v1/chat/block", json={"user_id": bob.id},
                                  headers=carol.headers)
    assert blocked.status_code == 200
    a, b, c = [await chat_client(api, user, cid) for user in (alice, bob, carol)]
    try:
        first = ok(await a.call("chat_message", {"conversation_id": cid, "content": "hi"}))
        mine = ok(await b.call("chat_message", {"conversation_id": cid, "content": "mine"}))
        ok(await b.call("message_reaction", {"message_id": first["message"]["id"],
                                             "emoji": "👍"}))
        ok(await b.call("message_edit", {"message_id": mine["message"]["id"],
                                         "content": "edited"}))
        assert (await a.next("message_reaction"))["user_id"] == bob.id
        assert (await a.next("message_edit"))["content"] == "edited"
        barrier = ok(await a.call("chat_message", {"conversation_id": cid, "content": "bye"}))
        await c.next("chat_message", lambda e: e["message"]["id"] == barrier["message"]["id"])
        assert c.pending("message_reaction") == [] and c.pending("message_edit") == []
    finally:
        for client in (a, b, c):
            await client.close()
