"""The support desk across two nodes (PostgreSQL and Redis shared): an assignment, a status
change and a reopening made over REST on node B reach a staff inbox on node A on both inbox
doors (Socket.IO ``/conversations`` and raw ``/ws/conversations/``) and the conversation's
members on node A, in position order; and a grant dropped by a close made on B is given back
on A by a reopen made on B."""

from __future__ import annotations

from tests.support.client import Api
from tests.support.cluster import Cluster
from tests.test_desk import assign, call, done, set_status
from tests.test_raw_support import Frame, RawClient, raw, support_conversation
from tests.test_socketio_helpers import Client, chat_client, ok, refused

#: Generous: two nodes, Redis between them, a loaded machine.
WITHIN = 15.0


async def test_desk_changes_cross_nodes(cluster: Cluster, apis: tuple[Api, Api]) -> None:
    on_a, on_b = apis
    node_a = cluster.nodes[0]
    agent, watcher = await on_a.register(role="agent"), await on_a.register(role="agent")
    customer, cid = await support_conversation(on_a)

    inbox_sio = await Client(node_a.base_url, "/conversations").connect(
        {"token": watcher.token})
    member = await chat_client(on_a, customer, cid)
    try:
        async with raw(f"{node_a.ws_url}/ws/conversations/?token={watcher.token}") as inbox_raw, \
                raw(f"{node_a.ws_url}/ws/chat/{cid}/?token={customer.token}") as member_raw:
            await inbox_raw.next("connection_established")
            await member_raw.next("connection_established")

            # assigned on B
            await done(await assign(on_b, agent, cid, agent.id))
            await inbox_sio.next("conversation_updated", lambda e: e["conversation_id"] == cid
                                 and e["conversation"]["assigned_agent_id"] == agent.id,
                                 within=WITHIN)
            await inbox_raw.next(lambda f: f.get("type") == "conversation_updated"
                                 and f["conversation_id"] == cid
                                 and f["conversation"]["assigned_agent_id"] == agent.id,
                                 within=WITHIN)
            first = await member.next("conversation_updated", within=WITHIN)
            assert first["changes"]["assigned_agent_id"]["to"] == agent.id
            framed = await member_raw.next("conversation_updated", within=WITHIN)
            assert framed["position"] == first["position"]

            # closed on B: A's grant goes (the member's send refused on A) ...
            await done(await set_status(on_b, agent, cid, "closed"))
            await inbox_sio.next("conversation_updated", lambda e: e["conversation_id"] == cid
                                 and e["conversation"]["status"] == "closed", within=WITHIN)
            await inbox_raw.next(lambda f: f.get("type") == "conversation_updated"
                                 and f["conversation_id"] == cid
                                 and f["conversation"]["status"] == "closed", within=WITHIN)
            closed = await member.next("conversation_updated", within=WITHIN)
            assert closed["position"] == first["position"] + 1
            assert closed["changes"] == {"status": {"from": "active", "to": "closed"}}
            refused(await member.call("chat_message", {"conversation_id": cid,
                                                       "content": "anyone?"}),
                    "conversation_closed")

            # ... and comes back with a reopen on B
            await done(await call(on_b, agent, "POST", f"/api/v1/chat/sessions/{cid}/reopen"))
            reopened = await member.next("conversation_updated", within=WITHIN)
            assert reopened["position"] == first["position"] + 2
            assert reopened["conversation"]["status"] == "active"
            assert [f["position"] for f in await _updates(member_raw, 3)] == [
                first["position"], first["position"] + 1, first["position"] + 2]
            await inbox_raw.next(lambda f: f.get("type") == "conversation_updated"
                                 and f["conversation_id"] == cid
                                 and f["conversation"]["status"] == "active", within=WITHIN)
            sent = ok(await member.call("chat_message", {"conversation_id": cid,
                                                         "content": "thanks"}))
            assert sent["message"]["content"] == "thanks"
    finally:
        await inbox_sio.close()
        await member.close()


async def _updates(client: RawClient, count: int) -> list[Frame]:
    """The first ``count`` ``conversation_updated`` frames ``client`` received."""
    while len(client.seen("conversation_updated")) < count:
        await client.next("conversation_updated", within=WITHIN)
    return client.seen("conversation_updated")[:count]
