"""Group membership across two real nodes (PostgreSQL and Redis): a member removed through
node A loses the conversation at once on node B, where its sockets are — the raw route
closes with 4004, the Socket.IO socket gets its ``member_removed`` and nothing of the
conversation after it, and its calls there are refused, REST included (node B's cached
grants are dropped through the ``service_invalidate`` control). ``member_added`` made on A
reaches B's sockets with its position."""

from __future__ import annotations

from tests.support.client import Api
from tests.support.cluster import Cluster
from tests.test_raw_support import raw
from tests.test_socketio_helpers import chat_client, group, ok, refused


async def test_a_member_removed_on_one_node_loses_the_conversation_on_the_other(
        cluster: Cluster, apis: tuple[Api, Api]) -> None:
    on_a, on_b = apis
    node_b = cluster.nodes[1]
    owner, watcher, removed, newcomer = [await on_a.register() for _ in range(4)]
    cid = await group(on_a, owner, watcher, removed)
    watching = await chat_client(on_b, watcher, cid)
    theirs = await chat_client(on_b, removed, cid)
    try:
        async with raw(f"{node_b.ws_url}/ws/chat/{cid}/?token={removed.token}") as theirs_raw:
            await theirs_raw.next("connection_established")
            # Node B has the conversation's grants at hand: the removed member wrote there.
            sent = await on_b.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                        json={"content": "before"}, headers=removed.headers)
            assert sent.status_code == 201, sent.text
            await watching.next("chat_message", lambda d: d["message"]["content"] == "before")

            # Added on A: heard on B with its position.
            added = await on_a.http.post(f"/api/v1/chat/sessions/{cid}/participants",
                                         json={"user_ids": [newcomer.id]},
                                         headers=owner.headers)
            assert added.status_code == 200, added.text
            heard = await watching.next("member_added", within=15)
            assert heard["user_id"] == newcomer.id and isinstance(heard["position"], int)
            assert (await theirs_raw.next("member_added", within=15))["position"] == (
                heard["position"])

            # Removed on A.
            gone = await on_a.http.delete(
                f"/api/v1/chat/sessions/{cid}/participants/{removed.id}", headers=owner.headers)
            assert gone.status_code == 200, gone.text
            told = await theirs.next("member_removed", within=15)
            assert told["user_id"] == removed.id and told["position"] == heard["position"] + 1
            frame = await theirs_raw.next("member_removed", within=15)
            assert frame["position"] == told["position"]
            assert await theirs_raw.closed(15) == 4004
            assert (await watching.next("member_removed", within=15))["user_id"] == removed.id

        # After it, on B: nothing of the conversation reaches them, and every call is refused.
        after = await on_a.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                     json={"content": "after"}, headers=owner.headers)
        assert after.status_code == 201, after.text
        await watching.next("chat_message", lambda d: d["message"]["content"] == "after",
                            within=15)
        refused(await theirs.call("chat_message", {"conversation_id": cid,
                                                   "content": "still here?"}), "forbidden")
        assert [m for m in theirs.pending("chat_message")
                if m["message"]["content"] == "after"] == []
        refused(await theirs.call("join", {"conversation_id": cid}), "forbidden")
        for response in (
            await on_b.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                 json={"content": "x"}, headers=removed.headers),
            await on_b.http.get(f"/api/v1/chat/sessions/{cid}", headers=removed.headers),
            await on_b.http.get(f"/api/v1/chat/sessions/{cid}/events", params={"since": 0},
                                headers=removed.headers),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["code"] == "forbidden"
        async with raw(f"{node_b.ws_url}/ws/chat/{cid}/?token={removed.token}") as again:
            assert await again.closed(15) == 4004

        # The socket itself is still connected, and the log on B has both events.
        assert theirs.connected
        ok(await theirs.call("leave", {"conversation_id": cid}))
        log = await on_b.http.get(f"/api/v1/chat/sessions/{cid}/events",
                                  params={"since": heard["position"] - 1},
                                  headers=owner.headers)
        assert log.status_code == 200, log.text
        assert [(e["event"], e["user_id"]) for e in log.json()["events"][:2]] == [
            ("member_added", newcomer.id), ("member_removed", removed.id)]
    finally:
        await theirs.close()
        await watching.close()
