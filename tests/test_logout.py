"""Logout over two real nodes (PostgreSQL and Redis): a session's sockets close on both nodes
(raw: 4002, Socket.IO: disconnected) while the user's other session's stay; its refresh and
access tokens are refused from then on on either node; ``all: true`` revokes every session,
the tokens issued before sessions existed (no ``sid``) included. The revocation's own control
closes the sockets, and a connect under way at the logout is closed once set up. A legacy
refresh token is exchanged for a session once (on one node of each database)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from backend.auth.sessions import REVOKED
from backend.auth.tokens import LEGACY_SESSION, decode_claims, issue_pair
from backend.realtime.codec import OrjsonCodec
from backend.realtime.fanout import FANOUT
from backend.settings import Settings
from tests.support.client import Api, TestUser
from tests.support.cluster import Cluster
from tests.support.server import TEST_SECRET, ServerProcess, start_server
from tests.support.services import PrivateRedis
from tests.test_raw_support import RawClient, raw
from tests.test_socketio_helpers import Client, group, ok

TIMEOUT = 10


async def login(api: Api, user: TestUser) -> TestUser:
    """A second session of ``user``: its own token pair."""
    response = await api.http.post("/api/v1/auth/login",
                                   json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    body = response.json()
    return TestUser(user.id, user.email, user.password, body["access_token"],
                    body["refresh_token"], user.role, user.first_name, user.last_name)


async def status(node: ServerProcess, method: str, path: str, token: str,
                 body: object = None) -> int:
    async with httpx.AsyncClient(base_url=node.base_url, timeout=TIMEOUT) as http:
        response = await http.request(method, path, json=body,
                                      headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def refresh_status(node: ServerProcess, refresh_token: str) -> int:
    async with httpx.AsyncClient(base_url=node.base_url, timeout=TIMEOUT) as http:
        response = await http.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    return response.status_code


async def open_sockets(stack: AsyncExitStack, nodes: list[ServerProcess], token: str,
                       cid: int) -> tuple[list[RawClient], list[Client]]:
    """On each node, a raw /ws/chat/ socket and a Socket.IO /chat client with ``token``."""
    raws, sios = [], []
    for node in nodes:
        client = await stack.enter_async_context(
            raw(f"{node.ws_url}/ws/chat/{cid}/?token={token}"))
        await client.next("recent_messages")
        raws.append(client)
        sio = await Client(node.base_url, "/chat").connect({"token": token})
        stack.push_async_callback(sio.close)
        sios.append(sio)
    return raws, sios


async def still_open(raws: list[RawClient], sios: list[Client], sender: Api,
                     bob: TestUser, cid: int, text: str) -> None:
    """Bob's message reaches every one of these sockets: they are open."""
    for sio in sios:
        ok(await sio.call("join", {"conversation_id": cid}))
    response = await sender.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                      json={"content": text}, headers=bob.headers)
    assert response.status_code in (200, 201), response.text
    for client in raws:
        await client.next(lambda f: f.get("type") == "chat_message"
                          and f["message"]["content"] == text)
    for sio in sios:
        await sio.next("chat_message", lambda e: e["message"]["content"] == text)
        assert sio.connected


async def refused_connect(node: ServerProcess, token: str, cid: int) -> None:
    """A connect with ``token`` is refused with 4002 on a raw route and on Socket.IO."""
    async with raw(f"{node.ws_url}/ws/chat/{cid}/?token={token}") as client:
        assert await client.closed() == 4002
    refusal = await Client(node.base_url, "/chat").refused({"token": token})
    assert refusal["code"] == 4002, refusal


async def test_logout_closes_that_session_on_every_node_and_refuses_its_tokens(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    on_a, on_b = apis
    nodes = cluster.nodes[:2]
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    phone = await login(on_b, alice)  # alice's second session
    async with AsyncExitStack() as stack:
        gone_raws, gone_sios = await open_sockets(stack, nodes, alice.token, cid)
        kept_raws, kept_sios = await open_sockets(stack, nodes, phone.token, cid)
        # Both nodes have now checked (and cached) alice's first session as live.
        assert await status(nodes[0], "GET", "/api/v1/auth/me", alice.token) == 200
        assert await status(nodes[1], "GET", "/api/v1/auth/me", alice.token) == 200

        # A refresh rotates within the session: logging out with the new refresh token
        # revokes the access token issued at registration too.
        async with httpx.AsyncClient(base_url=nodes[1].base_url, timeout=TIMEOUT) as http:
            rotated = await http.post("/api/v1/auth/refresh",
                                      json={"refresh_token": alice.refresh_token})
            assert rotated.status_code == 200, rotated.text
            new_access = rotated.json()["access_token"]
            new_refresh = rotated.json()["refresh_token"]
            out = await http.post("/api/v1/auth/logout", json={"refresh_token": new_refresh},
                                  headers={"Authorization": f"Bearer {new_access}"})
        assert out.status_code == 200, out.text
        assert out.json() == {"ok": True, "revoked": "one"}

        for client in gone_raws:
            assert await client.closed() == 4002
        for sio in gone_sios:
            await asyncio.wait_for(sio.disconnected.wait(), TIMEOUT)
        await still_open(kept_raws, kept_sios, on_a, bob, cid, "after the logout")

    for node in nodes:
        for refresh_token in (alice.refresh_token, new_refresh):
            assert await refresh_status(node, refresh_token) == 401
        for token in (alice.token, new_access):
            assert await status(node, "GET", "/api/v1/auth/me", token) == 401
            await refused_connect(node, token, cid)
        assert await status(node, "GET", "/api/v1/auth/me", phone.token) == 200
    assert await refresh_status(nodes[0], phone.refresh_token) == 200


async def test_logout_all_closes_every_session_legacy_tokens_included(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    on_a, on_b = apis
    nodes = cluster.nodes[:2]
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    phone = await login(on_b, alice)
    # Tokens issued before sessions existed carry no ``sid``: still accepted.
    legacy = issue_pair(Settings.from_env({"DATA_DIR": str(cluster.root),
                                           "JWT_SECRET": TEST_SECRET}), alice.id)
    assert await status(nodes[0], "GET", "/api/v1/auth/me", legacy.access_token) == 200
    async with AsyncExitStack() as stack:
        sockets = [await open_sockets(stack, nodes, token, cid)
                   for token in (alice.token, phone.token, legacy.access_token)]
        out = await status(nodes[0], "POST", "/api/v1/auth/logout", phone.token, {"all": True})
        assert out == 200
        for raws, sios in sockets:
            for client in raws:
                assert await client.closed() == 4002
            for sio in sios:
                await asyncio.wait_for(sio.disconnected.wait(), TIMEOUT)

    for node in nodes:
        for pair in ((alice.token, alice.refresh_token), (phone.token, phone.refresh_token),
                     (legacy.access_token, legacy.refresh_token)):
            assert await refresh_status(node, pair[1]) == 401
            assert await status(node, "GET", "/api/v1/auth/me", pair[0]) == 401
        await refused_connect(node, legacy.access_token, cid)
    # A new login is a new session, live.
    again = await login(on_b, alice)
    assert await status(nodes[0], "GET", "/api/v1/auth/me", again.token) == 200


async def test_logout_refuses_another_users_refresh_token(apis: tuple[Api, Api]) -> None:
    on_a, _ = apis
    alice, mallory = await on_a.register(), await on_a.register()
    response = await on_a.http.post("/api/v1/auth/logout",
                                    json={"refresh_token": alice.refresh_token},
                                    headers=mallory.headers)
    assert response.status_code == 403, response.text
    assert await status_of(on_a, alice) == 200
    bad = await on_a.http.post("/api/v1/auth/logout", json={"refresh_token": alice.token},
                               headers=alice.headers)
    assert bad.status_code == 401, bad.text  # an access token is no refresh token
    assert bad.json()["detail"].endswith("expected a refresh token"), bad.text
    for loose in ("yes", "true", 1, None):
        # ``all`` is a JSON boolean: a typo never logs every session out
        response = await on_a.http.post("/api/v1/auth/logout", json={"all": loose},
                                        headers=alice.headers)
        assert response.status_code == 422, (loose, response.text)
    assert await status_of(on_a, alice) == 200


async def status_of(api: Api, user: TestUser) -> int:
    response = await api.http.get("/api/v1/auth/me", headers=user.headers)
    return response.status_code


def settings_of(cluster: Cluster) -> Settings:
    """The nodes' token settings (to read and make tokens as they do)."""
    return Settings.from_env({"DATA_DIR": str(cluster.root), "JWT_SECRET": TEST_SECRET})


async def broadcast_control(cluster: Cluster, name: str, data: dict[str, object]) -> None:
    """Publish the control ``name`` on the cluster's channel, as a node's broadcast does."""
    message = {"method": "emit", "event": name, "data": [data], "binary": False,
               "namespace": FANOUT, "room": None, "skip_sid": None, "callback": None,
               "host_id": "a-node-of-the-test"}
    redis = Redis.from_url(cluster.redis_url)
    try:
        assert await redis.publish(f"{cluster.prefix}:events", OrjsonCodec.dumps(message)) >= 2
    finally:
        await redis.aclose()


async def test_the_revocation_control_alone_closes_the_sessions_sockets(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """A node that hears a session was revoked closes its sockets of that session: no second
    control (that could be lost on its own) is needed."""
    on_a, _ = apis
    nodes = cluster.nodes[:2]
    alice, bob = await on_a.register(), await on_a.register()
    cid = await group(on_a, alice, bob)
    phone = await login(on_a, alice)
    session_id = decode_claims(settings_of(cluster), alice.token, "access").session_id
    async with AsyncExitStack() as stack:
        gone_raws, gone_sios = await open_sockets(stack, nodes, alice.token, cid)
        kept_raws, kept_sios = await open_sockets(stack, nodes, phone.token, cid)
        await broadcast_control(cluster, REVOKED, {"user_id": alice.id, "session_id": session_id})
        for client in gone_raws:
            assert await client.closed() == 4002
        for sio in gone_sios:
            await asyncio.wait_for(sio.disconnected.wait(), TIMEOUT)
        await still_open(kept_raws, kept_sios, on_a, bob, cid, "after the revocation")


async def waiting_for_lock(database: asyncpg.Connection, table: str) -> int:
    """How many other sessions of the database wait for a lock on ``table`` (asked of the
    locks themselves: ``pg_stat_activity`` keeps only a query's first kilobyte of text,
    which a statement of many columns fills before it names its table)."""
    count = await database.fetchval(
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = $1::regclass "
        "AND NOT granted AND pid <> pg_backend_pid()", table)
    return int(count)


async def test_a_logout_during_a_connect_closes_it_once_set_up(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """A connect whose session check passed before a logout, and whose connection was
    registered only after the logout's close ran on its node, is closed once set up: raw with
    4002, Socket.IO disconnected."""
    on_a, _ = apis
    node = cluster.nodes[1]
    alice, bob = await on_a.register(), await on_a.register()
    # Two conversations: the node loads each one's facts once for every connect that asks,
    # and each connect must wait on a read of its own.
    cid, other = await group(on_a, alice, bob), await group(on_a, alice, bob)
    # A socket of the session open on the node already: its close tells the logout's close
    # ran there.
    witness = await Client(node.base_url, "/chat").connect({"token": alice.token})
    sio = Client(node.base_url, "/chat")
    database = await asyncpg.connect(cluster.database_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(database.close)
        stack.push_async_callback(witness.close)
        stack.push_async_callback(sio.close)
        lock = database.transaction()
        await lock.start()
        try:
            # Both connects stop at their read of the conversation, past the session check.
            await database.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
            client = await stack.enter_async_context(
                raw(f"{node.ws_url}/ws/chat/{cid}/?token={alice.token}"))
            connecting = asyncio.ensure_future(
                sio.connect({"token": alice.token, "conversation_id": other}))
            async with asyncio.timeout(TIMEOUT):
                # PostgreSQL tells who waits for a lock only when asked.
                while await waiting_for_lock(database, "conversations") < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            out = await on_a.http.post("/api/v1/auth/logout", json={}, headers=alice.headers)
            assert out.status_code == 200, out.text
            await asyncio.wait_for(witness.disconnected.wait(), TIMEOUT)
        finally:
            await lock.rollback()
        await connecting
        assert await client.closed() == 4002
        await asyncio.wait_for(sio.disconnected.wait(), TIMEOUT)


async def test_a_legacy_refresh_token_is_exchanged_for_a_session_once(
    api: Api, tmp_path: Path
) -> None:
    """A refresh token issued before sessions existed gets a pair of a new session, once: from
    then on it (and the legacy access token) is refused, and of two concurrent refreshes with
    one, one gets the session."""
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "JWT_SECRET": TEST_SECRET})
    alice, bob = await api.register(), await api.register()
    legacy = issue_pair(settings, alice.id)
    exchanged = await api.http.post("/api/v1/auth/refresh",
                                    json={"refresh_token": legacy.refresh_token})
    assert exchanged.status_code == 200, exchanged.text
    pair = exchanged.json()
    assert decode_claims(settings, pair["access_token"], "access").session_id != LEGACY_SESSION
    again = await api.http.post("/api/v1/auth/refresh",
                                json={"refresh_token": legacy.refresh_token})
    assert again.status_code == 401, again.text
    for token, expected in ((legacy.access_token, 401), (pair["access_token"], 200)):
        response = await api.http.get("/api/v1/auth/me",
                                      headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == expected, response.text
    renewed = await api.http.post("/api/v1/auth/refresh",
                                  json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200, renewed.text

    legacy = issue_pair(settings, bob.id)
    both = await asyncio.gather(*(
        api.http.post("/api/v1/auth/refresh", json={"refresh_token": legacy.refresh_token})
        for _ in range(2)))
    assert sorted(response.status_code for response in both) == [200, 401]


async def test_a_logout_while_redis_is_down_closes_the_sockets_of_every_node(
    work_dir: Path, cluster_database: str, redis: PrivateRedis
) -> None:
    """Redis killed (SIGKILL) before the logout, so its control reaches no node through it:
    the node that made the logout closes its own sockets of the session at once, and the other
    node closes its own at its next check of its sockets' sessions (every
    ``SESSION_RECHECK_SECONDS``, 2 here), and refuses the access token from then on."""
    nodes = Cluster(work_dir / f"logout-{uuid.uuid4().hex[:6]}", cluster_database, redis.url)
    try:
        node_a, node_b = (nodes.start_node(SESSION_RECHECK_SECONDS="2"),
                          nodes.start_node(SESSION_RECHECK_SECONDS="2"))
        on_a = Api(node_a.base_url)
        alice, bob = await on_a.register(), await on_a.register()
        cid = await group(on_a, alice, bob)
        phone = await login(on_a, alice)  # a second session, which stays
        async with AsyncExitStack() as stack:
            gone_raws, gone_sios = await open_sockets(stack, [node_a, node_b], alice.token, cid)
            kept_raws, kept_sios = await open_sockets(stack, [node_a, node_b], phone.token, cid)
            assert await status(node_b, "GET", "/api/v1/auth/me", alice.token) == 200

            redis.stop()
            async with httpx.AsyncClient(base_url=node_a.base_url, timeout=TIMEOUT) as http:
                out = await http.post("/api/v1/auth/logout",
                                      json={"refresh_token": alice.refresh_token},
                                      headers=alice.headers)
            assert out.status_code == 200, out.text

            # Node A's own: at once (its raw socket's close comes before B's could).
            assert await gone_raws[0].closed() == 4002
            await asyncio.wait_for(gone_sios[0].disconnected.wait(), TIMEOUT)
            # Node B's: at its next check, with no word from Redis.
            assert await gone_raws[1].closed(TIMEOUT) == 4002
            await asyncio.wait_for(gone_sios[1].disconnected.wait(), TIMEOUT)
            assert await status(node_b, "GET", "/api/v1/auth/me", alice.token) == 401

            redis.start()
            await still_open(kept_raws, kept_sios, on_a, bob, cid, "the phone stays")
        await on_a.aclose()
    finally:
        nodes.stop()


async def test_a_user_deactivated_on_the_command_line_loses_their_sockets(
    work_dir: Path,
) -> None:
    """``confab deactivate-user`` runs in a process of its own, with no word to the node: the
    node closes the user's sockets (4002) at its next session check and refuses the user's
    tokens at once; another user's socket stays."""
    node = start_server(work_dir / f"deactivate-{uuid.uuid4().hex[:6]}",
                        SESSION_RECHECK_SECONDS="2")
    api = Api(node.base_url)
    try:
        alice, bob = await api.register(), await api.register()
        cid = await group(api, alice, bob)
        async with AsyncExitStack() as stack:
            gone_raws, gone_sios = await open_sockets(stack, [node], alice.token, cid)
            kept_raws, kept_sios = await open_sockets(stack, [node], bob.token, cid)
            result = node.cli("deactivate-user", "--email", alice.email)
            assert result.returncode == 0, result.stderr
            assert await status(node, "GET", "/api/v1/auth/me", alice.token) == 401
            assert await refresh_status(node, alice.refresh_token) == 401
            assert await gone_raws[0].closed(TIMEOUT) == 4002
            await asyncio.wait_for(gone_sios[0].disconnected.wait(), TIMEOUT)
            await still_open(kept_raws, kept_sios, api, bob, cid, "bob stays")
        missing = node.cli("deactivate-user", "--email", "nobody@example.com")
        assert missing.returncode == 1 and "not found" in missing.stderr
    finally:
        await api.aclose()
        node.stop()
