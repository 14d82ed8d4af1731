"""Browsers of the allowed origins only: CORS for REST, the Origin check on WebSockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import Api
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import close_code, raw
from tests.test_socketio_helpers import group

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
