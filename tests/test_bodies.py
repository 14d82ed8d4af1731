"""Request bodies within a limit (``backend/rest/bodies.py``): a body that passes it stops
being read at once, whether its Content-Length says so or it comes chunked with none."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import httpx
from starlette.requests import Request

from backend.rest.bodies import capped_body
from tests.support.server import ServerProcess

CHUNK = 64 * 1024


def request_of(headers: list[tuple[bytes, bytes]], chunks: int | None) -> tuple[Request, list[int]]:
    """A POST whose body comes in ``chunks`` pieces of 64 KiB (None: without end), and the
    count of the pieces read so far."""
    read = [0]

    async def receive() -> MutableMapping[str, Any]:
        read[0] += 1
        more = chunks is None or read[0] < chunks
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": more}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers,
             "query_string": b""}
    return Request(scope, receive), read


async def test_a_chunked_body_past_the_limit_stops_being_read() -> None:
    request, read = request_of([(b"transfer-encoding", b"chunked")], None)
    assert await capped_body(request, 4 * CHUNK) is None
    assert read[0] == 5  # the piece that passed the limit was the last one read


async def test_a_declared_length_past_the_limit_is_not_read_at_all() -> None:
    request, read = request_of([(b"content-length", str(10 * CHUNK).encode())], 10)
    assert await capped_body(request, 4 * CHUNK) is None
    assert read[0] == 0


async def test_a_body_within_the_limit_is_read_whole() -> None:
    request, read = request_of([(b"transfer-encoding", b"chunked")], 3)
    assert await capped_body(request, 4 * CHUNK) == b"x" * (3 * CHUNK)
    assert read[0] == 3


async def test_a_route_refuses_a_chunked_body_past_the_limit(
        sqlite_server: ServerProcess) -> None:
    """No Content-Length (httpx sends a generator chunked): still a 413 with its detail,
    and the node carries on."""
    async def pieces() -> Any:
        for _ in range(5):  # 320 KiB, past MAX_BODY_BYTES' 256 KiB
            yield b" " * CHUNK

    async with httpx.AsyncClient(base_url=sqlite_server.base_url, timeout=20) as http:
        response = await http.post("/api/v1/auth/login", content=pieces(),
                                   headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.status_code == 413, response.text
        assert "larger than 262144 bytes" in response.json()["detail"]
        assert (await http.get("/healthz")).status_code == 200
