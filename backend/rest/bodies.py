"""Request bodies read within a limit: the read stops as soon as the body passes it, whether
its Content-Length said so or it came chunked, so that no route buffers more than its limit
(the JSON routes, the platforms' webhooks, uploads and their chunks)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.types import Receive


class BodyTooLarge(Exception):
    """The request's body passed the route's limit while it was read."""


def capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that fails with BodyTooLarge once more than ``limit`` body bytes came."""
    seen = 0

    async def wrapped() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped


def declared_length(request: Request) -> int | None:
    """The request's Content-Length, None when it has none (or not a plain number)."""
    raw = request.headers.get("content-length", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


async def capped_body(request: Request, limit: int) -> bytes | None:
    """The request's whole body, or None once it is (or says it is) over ``limit`` bytes:
    refused before it is read, or as it comes in."""
    length = declared_length(request)
    if length is not None and length > limit:
        return None
    try:
        return await Request(request.scope, capped(request.receive, limit)).body()
    except BodyTooLarge:
        return None
