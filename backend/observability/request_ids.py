"""Request ids: every HTTP request and WebSocket upgrade gets one, for its log lines.

A client's (or proxy's) ``X-Request-ID`` is kept when it looks like an id, so a request can be
followed through the proxy's logs and ours; otherwise one is made. It is echoed back as a
response header (on WebSocket upgrades too) and set in ``context.REQUEST_ID`` while the request
is served, which puts it on every log line of that request, uvicorn's access line included.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, MutableMapping
from typing import Any

from starlette.types import ASGIApp

from backend.observability.context import REQUEST_ID

HEADER = b"x-request-id"
#: What a kept id may look like: short, and nothing that could forge a log line.
_SANE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class RequestIds:
    """ASGI middleware: set the request id, echo it in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "http":
            return self._request(scope, receive, send)
        if kind == "websocket":
            # Not a coroutine: each connection runs in a task of its own, whose context holds
            # the id for the connection's life, so nothing is reset at its end, and no frame of
            # this middleware stays under every open connection.
            request_id = incoming_id(scope) or new_id()
            REQUEST_ID.set(request_id)
            return self.app(scope, receive, SendWithId(send, request_id))
        return self.app(scope, receive, send)

    async def _request(self, scope: Scope, receive: Any, send: Any) -> None:
        request_id = incoming_id(scope) or new_id()
        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, SendWithId(send, request_id))
        finally:
            REQUEST_ID.reset(token)


class SendWithId:
    """An ASGI ``send`` that adds the request id header to the response or the accept."""

    __slots__ = ("request_id", "send")

    def __init__(self, send: Any, request_id: str) -> None:
        self.send = send
        # The id itself (the context holds it too), its header made once, when sent: this
        # ``send`` is held for as long as a WebSocket connection is open.
        self.request_id = request_id

    async def __call__(self, message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            headers = [h for h in message.get("headers") or () if h[0].lower() != HEADER]
            message = {**message, "headers": [*headers, (HEADER, self.request_id.encode())]}
        await self.send(message)


def new_id() -> str:
    """A request id of our own: 32 random hex digits (as ``uuid4().hex``, at a quarter of
    its cost: one is made at every connect)."""
    return os.urandom(16).hex()


def incoming_id(scope: Scope) -> str | None:
    """The request's own ``X-Request-ID``, when it is a sane id."""
    for name, value in scope.get("headers") or ():
        if name == HEADER:
            return value.decode("ascii") if _SANE.fullmatch(value) else None
    return None
