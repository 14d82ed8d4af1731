"""The benchmark's reference server: a bare ``websockets`` broadcast (no protocol, no storage).

``python3 bench/run.py --transport ref`` runs the scenarios against it, with the same generator,
pinning and figures as the project's node, so that the figures of the project can be read
against a well-known floor measured on the same machine the same day (the issue's reference
figures come from another machine of this kind). It speaks just enough of ``/ws/chat/{id}/``
for the generator: a ``recent_messages`` frame on connect, and every ``chat_message`` frame
broadcast to the conversation's sockets, the sender included, with one ``send`` per socket.
Tokens are not checked and nothing is stored.

Run as ``python bench/reference.py PORT``; ``GET /readyz`` answers 200.
"""

from __future__ import annotations

import asyncio
import http
import json
import sys
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

ROOMS: dict[str, set[ServerConnection]] = {}
WELCOME = '{"type":"recent_messages","messages":[]}'


def ready(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/readyz":
        return connection.respond(http.HTTPStatus.OK, "ok\n")
    return None


async def chat(connection: ServerConnection) -> None:
    path = connection.request.path if connection.request else ""
    room = ROOMS.setdefault(path.split("?")[0], set())
    room.add(connection)
    try:
        await connection.send(WELCOME)
        async for frame in connection:
            content = json.loads(frame)["content"]
            out = json.dumps({"type": "chat_message", "message": {"content": content}},
                             separators=(",", ":"))
            broadcast(room, out)
    finally:
        room.discard(connection)


async def main(port: int) -> None:
    kwargs: dict[str, Any] = {"compression": None, "process_request": ready}
    async with serve(chat, "127.0.0.1", port, **kwargs):
        await asyncio.Future()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
