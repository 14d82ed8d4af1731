"""An ASGI app that echoes every WebSocket message back, for the RFC 6455 conformance run
(tests/test_rfc6455.py): served by uvicorn with the project's ``--ws`` protocol class and
options, it lets Autobahn|Testsuite check the protocol layer with the echo it expects.

It is a test fixture, not part of the product: the project's routes answer JSON, not echoes.
"""

from __future__ import annotations

from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

from backend.observability.logs import configure_logging

# The node's log format, so the protocol's warnings read as they do on a node.
configure_logging(json_lines=False)


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Echo text as text and binary as binary until the peer closes; 404 over HTTP."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
