"""The server the Socket.IO protocol suite (socketio/socket.io-protocol) is run against.

The node's own Socket.IO stack, as production builds it (``backend/realtime/hub.py``): the
project's ``Server`` (with its ``EngineServer``), the fan-out manager, ``EngineEntry`` in front
of python-socketio's ASGI app, and uvicorn with the options of ``confab serve``
(``UVICORN_OPTIONS``); only the handlers are the suite's, configured as its authors document
for their reference server:

- pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1,000,000 bytes, CORS origin ``*``;
- namespace ``/``: on connection emit ``auth`` with the handshake's auth object; on
  ``message`` emit ``message-back`` with the same arguments; on ``message-with-ack``
  acknowledge with the same arguments;
- namespace ``/custom``: on connection emit ``auth`` with the handshake's auth object.

``message`` and ``message-with-ack`` carry whatever the client sends, binary attachments
included, so this app is also where the node's emits and acks of bytes are tested.

Run: ``python -m tests.support.conformance_app PORT`` (the suite itself wants 3000).
"""

from __future__ import annotations

import sys
from typing import Any

import socketio
import uvicorn

from backend.realtime.codec import OrjsonCodec
from backend.realtime.engine import EngineEntry
from backend.realtime.fanout import FanoutManager
from backend.realtime.protocol import UVICORN_OPTIONS
from backend.realtime.server import Server

MAX_PAYLOAD = 1_000_000


def create_server() -> Server:
    """The Socket.IO server with the suite's configuration and handlers."""
    manager = FanoutManager()
    sio = Server(
        async_mode="asgi",
        client_manager=manager,
        json=OrjsonCodec,
        cors_allowed_origins="*",
        frame_limit=MAX_PAYLOAD,
        max_backlog=4 * 1024 * 1024,
        max_http_buffer_size=MAX_PAYLOAD,
        ping_interval=0.3,
        ping_timeout=0.2,
        async_handlers=False,  # as production: a socket's events in order, one at a time
        logger=False,
        engineio_logger=False,
    )

    def greet(namespace: str) -> Any:
        async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            async def send_auth() -> None:
                await sio.emit("auth", auth if auth is not None else {}, to=sid,
                               namespace=namespace)

            # After the CONNECT answer, as the node's namespaces send their welcome.
            manager.after_connect(sid, namespace, send_auth)

        return connect

    async def message(sid: str, *args: Any) -> None:
        await sio.emit("message-back", args, to=sid)

    async def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    sio.on("connect", greet("/"))
    sio.on("message", message)
    sio.on("message-with-ack", message_with_ack)
    sio.on("connect", greet("/custom"), namespace="/custom")
    return sio


def create_app() -> Any:
    """The ASGI app: ``EngineEntry`` before python-socketio's, as ``Hub.asgi`` builds it."""
    sio = create_server()

    def start() -> None:  # as Hub.start: the manager is ready before the first request
        sio.manager_initialized = True
        sio.manager.initialize()

    inner = socketio.ASGIApp(sio, socketio_path="socket.io", on_startup=start)
    return EngineEntry(inner, sio, "socket.io")


app = create_app()


def main(argv: list[str]) -> None:
    """Serve ``app`` on localhost at the port given (the suite's URL is localhost:3000)."""
    port = int(argv[0]) if argv else 3000
    # ``EngineEntry`` is not a coroutine function (production has the app's router before
    # it), so uvicorn is told the interface rather than left to guess ASGI 2.
    uvicorn.run("tests.support.conformance_app:app", host="localhost", port=port,
                access_log=False, interface="asgi3", **UVICORN_OPTIONS)


if __name__ == "__main__":
    main(sys.argv[1:])
