"""Browsers of the allowed origins only: CORS for REST, the Origin check on WebSockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio
import websockets
from websockets.typing import Origin

from tests.support.client import Api
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import close_code, raw
from tests.test_socketio_helpers import Client, group

ALLOWED = "https://app.example"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def cors_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(work_dir / "cors", ALLOWED_ORIGINS=ALLOWED)
    yield server
    server.stop()


async def test_rest_answers_allowed_origins_only(cors_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=cors_server.base_url) as http:
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        good = await http.options("/api/v1/auth/login", headers={"Origin": ALLOWED, **preflight})
        assert good.status_code == 200
        assert good.headers["access-control-allow-origin"] == ALLOWED
        assert "authorization" in good.headers["access-control-allow-headers"].lower()
        bad = await http.options("/api/v1/auth/login", headers={"Origin": EVIL, **preflight})
        assert "access-control-allow-origin" not in bad.headers
        simple = await http.get("/healthz", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in simple.headers
        simple = await http.get("/healthz", headers={"Origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED


async def test_websockets_refuse_other_origins(cors_server: ServerProcess) -> None:
    api = Api(cors_server.base_url)
    try:
        alice, bob = await api.register(), await api.register()
        cid = await group(api, alice, bob)
        url = f"{cors_server.ws_url}/ws/chat/{cid}/?token={alice.token}"
        assert await close_code(url, origin=EVIL) == 4004
        async with raw(url, origin=ALLOWED) as chat:
            assert (await chat.next("connection_established"))["type"] == "connection_established"
    finally:
        await api.aclose()


LOCAL = ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080")


async def greeted(url: str, origin: str) -> bool:
    """Whether a raw WebSocket from ``origin`` is let in (its first frame is the greeting),
    not closed (4004)."""
    async with websockets.connect(url, origin=Origin(origin)) as ws:
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4004, closed
            return False
        return bool(first["type"] == "connection_established")


async def rest_and_websocket_origins(server: ServerProcess) -> dict[str, tuple[bool, bool]]:
    """For each origin tried: whether REST's preflight allows it, and whether a raw
    WebSocket from it opens."""
    api = Api(server.base_url)
    seen: dict[str, tuple[bool, bool]] = {}
    try:
        alice, bob = await api.register(), await api.register()
        cid = await group(api, alice, bob)
        url = f"{server.ws_url}/ws/chat/{cid}/?token={alice.token}"
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        for origin in (*LOCAL, EVIL, "null", "http://localhost.evil.example"):
            answer = await api.http.options("/api/v1/auth/login",
                                            headers={"Origin": origin, **preflight})
            allowed = answer.headers.get("access-control-allow-origin") == origin
            seen[origin] = (allowed, await greeted(url, origin))
    finally:
        await api.aclose()
    return seen


async def test_development_lets_in_the_pages_of_this_machine(
        sqlite_server: ServerProcess) -> None:
    """In development with no ALLOWED_ORIGINS, a page served from this machine (a front
    end's dev server on its own port, a seed's example page) uses REST and the WebSockets;
    another site does not, nor an opaque origin."""
    seen = await rest_and_websocket_origins(sqlite_server)
    assert {origin: seen[origin] for origin in LOCAL} == dict.fromkeys(LOCAL, (True, True))
    assert seen[EVIL] == seen["null"] == seen["http://localhost.evil.example"] == (False, False)
    # Socket.IO's handshake too.
    api = Api(sqlite_server.base_url)
    try:
        client = await Client(sqlite_server.base_url, "/chat").connect(
            {"token": (await api.register()).token}, headers={"Origin": LOCAL[0]})
        assert client.connected
        await client.close()
        refusal = Client(sqlite_server.base_url, "/chat")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refusal.connect({"token": (await api.register()).token},
                                  headers={"Origin": EVIL})
    finally:
        await api.aclose()


async def test_production_keeps_to_the_same_origin(work_dir: Path) -> None:
    server = start_server(work_dir / "cors-production", ENVIRONMENT="production")
    try:
        seen = await rest_and_websocket_origins(server)
    finally:
        server.stop()
    assert set(seen.values()) == {(False, False)}, seen
