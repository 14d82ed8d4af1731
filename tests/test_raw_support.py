"""Helpers for the raw WebSocket tests (no tests here): a client that waits for specific
frames with timeouts, and fixtures for a user, a conversation and a device."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:  # imported names starting with "Test" would be collected as tests
    from tests.support.client import Api, TestUser

Frame = dict[str, Any]
TIMEOUT = 5.0


class RawClient:
    """A raw WebSocket client keeping every frame it received, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self._cursor = 0

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def _read(self, within: float) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame  # type: ignore[no-any-return]

    async def next(self, match: Callable[[Frame], bool] | str, within: float = TIMEOUT) -> Frame:
        """The next frame (after the last one returned) that ``match`` accepts; a string
        matches the frame's ``type`` (or ``message_type``)."""
        test = _matcher(match)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            while self._cursor < len(self.frames):
                frame = self.frames[self._cursor]
                self._cursor += 1
                if test(frame):
                    return frame
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no frame matching {match!r}; got {self._tail()}")
            try:
                await self._read(left)
            except TimeoutError:
                raise AssertionError(f"no frame matching {match!r}; got {self._tail()}") from None

    def _tail(self) -> str:
        return "\n".join(json.dumps(f)[:300] for f in self.frames[-8:])

    async def quiet(self, match: Callable[[Frame], bool] | str, wait: float = 0.3) -> None:
        """Assert no matching frame arrives within ``wait`` seconds (after a sync point)."""
        test = _matcher(match)
        deadline = asyncio.get_running_loop().time() + wait
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                frame = await self._read(left)
            except TimeoutError:
                break
            assert not test(frame), f"unexpected frame {frame}"

    def seen(self, match: Callable[[Frame], bool] | str) -> list[Frame]:
        test = _matcher(match)
        return [f for f in self.frames if test(f)]

    async def closed(self, within: float = TIMEOUT) -> int | None:
        """Read until the server closes; returns the close code."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self._read(within)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


def _matcher(match: Callable[[Frame], bool] | str) -> Callable[[Frame], bool]:
    if isinstance(match, str):
        return lambda f: f.get("type", f.get("message_type")) == match
    return match


@asynccontextmanager
async def raw(url: str, **kwargs: Any) -> AsyncIterator[RawClient]:
    async with connect(url, open_timeout=TIMEOUT, close_timeout=2, **kwargs) as ws:
        yield RawClient(ws)


async def close_code(url: str, **kwargs: Any) -> int | None:
    """Connect and return the code the server closes with (the upgrade must succeed)."""
    async with raw(url, **kwargs) as client:
        return await client.closed()


async def support_conversation(api: Api, owner: TestUser | None = None) -> tuple[TestUser, int]:
    owner = owner or await api.register()
    conversation = await api.conversation(owner)
    return owner, int(conversation["id"])


async def device_conversation(api: Api) -> tuple[str, int]:
    device_id = await api.device()
    response = await api.http.post("/mobile/chat/start/",
                                   json={"device_id": device_id, "subject": "Help needed"})
    assert response.status_code in (200, 201), response.text
    return device_id, int(response.json()["conversation_id"])


async def rest_send(api: Api, user: TestUser, conversation_id: int, content: str) -> Frame:
    response = await api.http.post(f"/api/v1/chat/sessions/{conversation_id}/messages",
                                    json={"content": content}, headers=user.headers)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]
