"""Graceful shutdown: on SIGTERM, say goodbye to every client before the server stops.

uvicorn, told to exit, stops listening and closes WebSockets at once with 1012. Before handing
it the signal, this node refuses new connections with 1001 on every door (``Realtime.draining``:
a Socket.IO connect error with code 1001, raw handshakes closed with 1001), closes every live
connection after the frames already queued for it (raw WebSockets with 1001 "going away";
Socket.IO connections at the Engine.IO level: on WebSocket the WebSocket close alone, as Node's
socket.io server does, which socket.io-client and python-socketio's client answer by
reconnecting, to another node behind a load balancer, where a Socket.IO DISCONNECT or an
Engine.IO CLOSE would stop their auto-reconnect; docs/socketio.md says what each reports),
waits for the in-flight background publishes, and then lets uvicorn finish its own shutdown;
all of that within ``SHUTDOWN_GOODBYE_SECONDS`` (5 by default). A second SIGTERM skips the
wait.

uvicorn's own shutdown then waits for the connections still open, and a connection whose
client stopped reading, with frames still to send, never closes: that wait is bounded by
``SHUTDOWN_TIMEOUT_SECONDS`` (5 by default; uvicorn's ``timeout_graceful_shutdown``, set here
on the server behind the SIGTERM handler however the node was started), after which uvicorn
cancels what is left, runs the app's shutdown and the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from backend.compat.uvicorn import bound_graceful_shutdown, server_of
from backend.realtime.hub import Realtime
from backend.service.chat import ChatService

log = logging.getLogger("confab.shutdown")


def install_graceful_shutdown(realtime: Realtime, chat: ChatService, goodbye_seconds: float,
                              timeout_seconds: float) -> None:
    """Put the goodbye (at most ``goodbye_seconds``) in front of the SIGTERM handler in place
    (uvicorn's, when it serves the app from the main thread; elsewhere there is nothing to wrap
    and nothing changes), and bound uvicorn's own shutdown after it to ``timeout_seconds``."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals belong to the main thread (e.g. an app run inside a test client)
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    server = server_of(previous)
    if server is not None:
        bound_graceful_shutdown(server, timeout_seconds)
    loop = asyncio.get_running_loop()
    started = False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal started
        if started:  # a second SIGTERM: stop now
            previous(signum, frame)
            return
        started = True
        loop.call_soon_threadsafe(
            lambda: loop.create_task(_goodbye_then(realtime, chat, goodbye_seconds, previous,
                                                   signum))
        )

    signal.signal(signal.SIGTERM, on_sigterm)


async def _goodbye_then(realtime: Realtime, chat: ChatService, seconds: float,
                        then: Callable[[int, Any], Any], signum: int) -> None:
    try:
        closing = await realtime.close_all()
        log.info("shutting down: closing %d connections", closing,
                 extra={"event": "shutdown", "connections": closing})
        async with asyncio.timeout(seconds):
            await realtime.until_no_members()
            await chat.drain()
    except TimeoutError:
        log.warning("shutting down with %d connections still open",
                    len(realtime.manager.members), extra={"event": "shutdown"})
    except Exception:
        log.exception("graceful shutdown failed; stopping anyway")
    finally:
        then(signum, None)
