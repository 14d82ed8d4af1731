"""Helpers of the Socket.IO tests (no tests here): a python-socketio client that records every
event of its namespace in per-event queues, and REST shortcuts the tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import socketio

if TYPE_CHECKING:  # not imported at run time: pytest would try to collect TestUser here
    from tests.support.client import Api, TestUser

TIMEOUT = 5.0


class Client:
    """One Socket.IO connection to one namespace."""

    def __init__(self, base_url: str, namespace: str) -> None:
        self.base_url = base_url
        self.namespace = namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: defaultdict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self.sio.on("*", self._record, namespace=namespace)
        self.sio.on("connect_error", self._refused, namespace=namespace)
        self.sio.on("disconnect", self._gone, namespace=namespace)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events[event].put_nowait(data)

    async def _refused(self, data: Any = None) -> None:
        self.connect_error = data

    async def _gone(self, *_: Any) -> None:
        self.disconnected.set()

    async def connect(self, auth: dict[str, Any] | None = None, query: str = "",
                      transports: list[str] | None = None,
                      headers: dict[str, str] | None = None) -> Client:
        await self.sio.connect(
            self.base_url + (f"?{query}" if query else ""), auth=auth, headers=headers or {},
            namespaces=[self.namespace], transports=transports or ["websocket"],
            wait_timeout=TIMEOUT,
        )
        return self

    async def refused(self, auth: dict[str, Any] | None = None, query: str = "",
                      transports: list[str] | None = None) -> Any:
        """Connect, expect a refusal, return its data ``{code, message}`` after checking the
        Socket.IO v5 shape of the CONNECT_ERROR: ``{message, data: {code, message}}``."""
        try:
            await self.connect(auth, query, transports)
        except socketio.exceptions.ConnectionError:
            error = self.connect_error
            assert isinstance(error, dict) and set(error) == {"message", "data"}, error
            assert error["data"]["message"] == error["message"], error
            return error["data"]
        await self.close()
        raise AssertionError(f"{self.namespace} accepted {auth!r} {query!r}")

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected) and self.namespace in self.sio.namespaces

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, namespace=self.namespace, timeout=TIMEOUT)

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data, namespace=self.namespace)

    async def next(self, event: str, where: Callable[[Any], bool] | None = None,
                   within: float = TIMEOUT) -> Any:
        """The next ``event`` (matching ``where``); earlier non-matching ones are dropped."""
        async with asyncio.timeout(within):
            while True:
                data = await self.events[event].get()
                if where is None or where(data):
                    return data

    def pending(self, event: str) -> list[Any]:
        """Events of this name received and not yet consumed (call after a barrier)."""
        queue = self.events[event]
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def close(self) -> None:
        if not self.sio.connected:
            return
        if self.sio.transport() == "polling":
            # python-engineio's client then waits for its pending long-poll, which the server
            # answers only at its next ping (up to 25 s later): the goodbye is sent at once,
            # so stop waiting after a moment.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sio.disconnect(), 1)
            return
        await self.sio.disconnect()


def ok(ack: Any) -> Any:
    assert isinstance(ack, dict) and ack.get("ok") is True, ack
    return ack


def refused(ack: Any, code: str) -> dict[str, Any]:
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    assert ack["error"]["code"] == code, ack
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
    return ack["error"]  # type: ignore[no-any-return]


async def chat_client(api: Api, user: TestUser, conversation_id: int | None = None,
                      namespace: str = "/chat") -> Client:
    auth: dict[str, Any] = {"token": user.token}
    if conversation_id is not None:
        auth["conversation_id"] = conversation_id
    return await Client(api.base_url, namespace).connect(auth)


async def mobile_client(api: Api, device_id: str, conversation_id: int | None = None) -> Client:
    auth: dict[str, Any] = {"device_id": device_id}
    if conversation_id is not None:
        auth["conversation_id"] = conversation_id
    return await Client(api.base_url, "/mobile").connect(auth)


async def start_device_conversation(api: Api, device_id: str, subject: str = "Help") -> int:
    response = await api.http.post("/mobile/chat/start/",
                                   json={"device_id": device_id, "subject": subject})
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def group(api: Api, owner: TestUser, *members: TestUser) -> int:
    conversation = await api.conversation(owner, kind="group",
                                          participant_ids=[m.id for m in members])
    return conversation["id"]  # type: ignore[no-any-return]
