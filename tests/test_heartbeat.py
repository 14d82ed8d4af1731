"""One heartbeat for both doors, as ``PING_INTERVAL_SECONDS`` and ``PING_TIMEOUT_SECONDS`` set
it: Engine.IO's pings (announced in its handshake) and a raw route's WebSocket pings, seen by
clients of a real node that answer them, then stop answering."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.support.client import Api
from tests.support.server import ServerProcess, start_server
from tests.test_raw_chat import chat_url
from tests.test_raw_support import support_conversation

INTERVAL, TIMEOUT = 1.0, 1.0


@pytest.fixture(scope="module")
def beating_server(work_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(work_dir / "heartbeat", PING_INTERVAL_SECONDS=str(INTERVAL),
                          PING_TIMEOUT_SECONDS=str(TIMEOUT))
    yield server
    server.stop()


class Peer:
    """A WebSocket client at the frame level (websockets' sans-I/O protocol on a TCP
    stream): it sees each ping, and answers them only while ``answering``."""

    def __init__(self, url: str) -> None:
        self.client = ClientProtocol(parse_uri(url))
        self.answering = True
        self.texts: list[str] = []
        self.pings: list[float] = []
        self.close: Close | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.client.send_request(self.client.connect())
        self.writer.write(b"".join(self.client.data_to_send()))

    def send_text(self, text: str) -> None:
        assert self.writer is not None
        self.client.send_text(text.encode())
        self.writer.write(b"".join(self.client.data_to_send()))

    async def step(self) -> bool:
        """Read once and take what came; False once the server has ended the connection."""
        assert self.reader is not None and self.writer is not None
        data = await self.reader.read(65536)
        if not data:
            return False
        self.client.receive_data(data)
        for event in self.client.events_received():
            if isinstance(event, Response):
                assert event.status_code == 101, event
            elif event.opcode is Opcode.PING:
                self.pings.append(time.monotonic())
            elif event.opcode is Opcode.TEXT:
                self.texts.append(event.data.decode())
            elif event.opcode is Opcode.CLOSE:
                self.close = Close.parse(event.data)
        answer = b"".join(self.client.data_to_send())  # the pongs websockets queued
        if self.answering and answer:
            self.writer.write(answer)
        return True

    async def until(self, done: object) -> None:
        while not callable(done) or not done():
            assert await self.step(), "the server ended the connection"

    def end(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def test_a_raw_route_pings_as_the_setting_says_and_fails_a_silent_client(
    beating_server: ServerProcess,
) -> None:
    api = Api(beating_server.base_url)
    try:
        owner, cid = await support_conversation(api)
    finally:
        await api.aclose()
    peer = Peer(chat_url(beating_server, cid, owner.token))
    try:
        await peer.open(beating_server.port)
        async with asyncio.timeout(10):
            await peer.until(lambda: len(peer.pings) >= 3)  # answered: the pings go on
        gaps = [later - earlier for earlier, later in itertools.pairwise(peer.pings)]
        # Every INTERVAL (the wheel's buckets are a tenth of it wide), not uvicorn's 20 s.
        assert all(0.7 * INTERVAL <= gap <= 2 * INTERVAL for gap in gaps), gaps
        assert peer.close is None
        peer.answering = False
        silent_since = peer.pings[-1]
        async with asyncio.timeout(10):
            while await peer.step():
                pass
        assert peer.close is not None and peer.close.code == 1011, peer.close
        # Failed once TIMEOUT has passed without the pong (after the next ping, at most).
        waited = time.monotonic() - silent_since
        assert TIMEOUT * 0.7 <= waited <= INTERVAL + TIMEOUT + 2, waited
    finally:
        peer.end()


async def test_engineio_announces_and_keeps_the_heartbeat_with_no_websocket_pings(
    beating_server: ServerProcess,
) -> None:
    api = Api(beating_server.base_url)
    try:
        user = await api.register()
    finally:
        await api.aclose()
    peer = Peer(f"{beating_server.ws_url}/socket.io/?EIO=4&transport=websocket")
    beats: list[float] = []
    try:
        await peer.open(beating_server.port)
        async with asyncio.timeout(10):
            await peer.until(lambda: bool(peer.texts))
            opened = json.loads(peer.texts[0][1:])
            assert peer.texts[0][0] == "0"
            assert (opened["pingInterval"], opened["pingTimeout"]) == (
                INTERVAL * 1000, TIMEOUT * 1000)
            peer.send_text("40/chat," + json.dumps({"token": user.token}))
            seen = 1
            while len(beats) < 3:
                assert await peer.step(), "the server ended the connection"
                for text in peer.texts[seen:]:
                    if text == "2":
                        beats.append(time.monotonic())
                        peer.send_text("3")
                seen = len(peer.texts)
        assert any(text.startswith("40/chat,") for text in peer.texts)  # connected
        gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
        assert all(0.7 * INTERVAL <= gap <= 2 * INTERVAL for gap in gaps), gaps
        # Engine.IO's heartbeat is the only one: no WebSocket ping besides.
        assert peer.pings == []
        silent_since = beats[-1]
        async with asyncio.timeout(10):  # "2" left unanswered: the server ends the session
            while await peer.step():
                pass
        waited = time.monotonic() - silent_since
        assert TIMEOUT * 0.7 <= waited <= INTERVAL + TIMEOUT + 2, waited
    finally:
        peer.end()


async def test_the_default_heartbeat_is_engineios_own(sqlite_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=sqlite_server.base_url) as http:
        response = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert response.status_code == 200, response.text
    opened = json.loads(response.text[1:])
    assert (opened["pingInterval"], opened["pingTimeout"]) == (25000, 20000)
