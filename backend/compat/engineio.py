"""python-engineio 4.15.1 (pyproject.toml's pin): the server's and the socket's internals.

``backend/realtime/engine.py`` relies on:

- the server's private driver table ``_async`` (``replace_drivers``: its ``websocket`` class
  and ``translate_request``), subclassing the ASGI driver's ``WebSocket`` (``handler``,
  ``asgi_receive``, ``asgi_send``, ``wait``, ``send``, ``close``) and wrapping its
  ``translate_request``;
- the handler it hands that ``WebSocket``: the socket's private ``_websocket_handler``, a bound
  method whose ``__self__`` is the socket (``websocket_handler``, ``socket_of``);
  ``DirectWebSocket._serve`` is a copy of ``AsyncSocket._websocket_handler``;
- ``EngineServer.serve_websocket`` mirrors ``AsyncServer.handle_request`` and
  ``_handle_connect`` (for a connection that opens on WebSocket), calling the server's private
  ``_make_response``, ``_unauthorized``, ``_bad_request``, ``_cors_allowed_origins``,
  ``_log_error_once``, ``_upgrades``, ``_trigger_event`` and ``_service_task`` (the accessors
  below), and its ``start_service_task`` and ``service_task_handle``;
- pings: ``AsyncSocket.schedule_ping`` starts the private ``_send_ping`` through
  ``start_background_task``, recognised there (``is_send_ping``) and replaced by a timer that
  mirrors it;
- the socket's ``queue``, ``upgraded``, ``upgrading``, ``connected``, ``closing``,
  ``closed``, ``last_ping``, ``sid`` and ``server`` attributes.
"""

from __future__ import annotations

from typing import Any

import engineio
from engineio import base_server, base_socket
from engineio.async_drivers import asgi
from engineio.async_socket import AsyncSocket

from backend.compat.assumptions import (
    Assumption,
    Pin,
    assigned,
    holds,
    present,
    signature,
    unchanged,
    version,
)

PIN = Pin("python-engineio", "4.15.1")
PINS = [PIN]

__all__ = ["bad_request", "cors_allowed_origins", "is_send_ping", "log_error_once",
           "make_response", "replace_drivers", "service_task", "socket_of", "trigger_event",
           "unauthorized", "upgrades", "websocket_handler"]

_A = engineio.AsyncServer
_B = base_server.BaseServer


def replace_drivers(server: engineio.AsyncServer, **drivers: Any) -> None:
    """Replace entries of the server's driver table (``_async``: ``websocket``,
    ``translate_request``...) for this server only."""
    server._async = {**server._async, **drivers}


def websocket_handler(socket: AsyncSocket) -> Any:
    """The socket's WebSocket loop (``AsyncSocket._websocket_handler``), as the driver's
    ``WebSocket`` is given it."""
    return socket._websocket_handler


def socket_of(handler: Any) -> AsyncSocket:
    """The socket whose ``_websocket_handler`` the driver's ``WebSocket`` was given."""
    return handler.__self__  # type: ignore[no-any-return]


def is_send_ping(target: Any) -> bool:
    """``target`` is a socket's ``_send_ping`` (what ``schedule_ping`` starts)."""
    return getattr(target, "__func__", None) is AsyncSocket._send_ping


async def make_response(server: engineio.AsyncServer, response: dict[str, Any],
                        environ: dict[str, Any]) -> Any:
    """``AsyncServer._make_response``: send ``response`` through the driver."""
    return await server._make_response(response, environ)


def unauthorized(server: engineio.AsyncServer, message: Any = None) -> dict[str, Any]:
    """``BaseServer._unauthorized``: a 401 response."""
    return server._unauthorized(message)  # type: ignore[no-any-return]


def bad_request(server: engineio.AsyncServer, message: str) -> dict[str, Any]:
    """``BaseServer._bad_request``: a 400 response."""
    return server._bad_request(message)  # type: ignore[no-any-return]


def cors_allowed_origins(server: engineio.AsyncServer, environ: dict[str, Any]) -> Any:
    """``BaseServer._cors_allowed_origins``: the origins allowed for this request."""
    return server._cors_allowed_origins(environ)


def log_error_once(server: engineio.AsyncServer, message: str, key: str) -> None:
    """``BaseServer._log_error_once``."""
    server._log_error_once(message, key)


def upgrades(server: engineio.AsyncServer, sid: str, transport: str) -> list[str]:
    """``BaseServer._upgrades``: the upgrades offered in the OPEN packet."""
    return server._upgrades(sid, transport)  # type: ignore[no-any-return]


async def trigger_event(server: engineio.AsyncServer, event: str, *args: Any,
                        run_async: bool) -> Any:
    """``AsyncServer._trigger_event``: run the application's handler of ``event``."""
    return await server._trigger_event(event, *args, run_async=run_async)


def service_task(server: engineio.AsyncServer) -> Any:
    """``AsyncServer._service_task``: the coroutine function of the ping check task."""
    return server._service_task


def _driver_table() -> bool:
    return {"websocket", "translate_request"} <= set(asgi._async)


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    assigned(PIN, _B, "_async"),
    holds(PIN, "engineio.async_drivers.asgi._async['websocket', 'translate_request']",
          _driver_table, "the ASGI driver table lacks websocket or translate_request"),
    signature(PIN, asgi, "translate_request", ("scope", "receive", "send")),
    unchanged(PIN, asgi, "translate_request", "39e74733f1fe46aa"),
    signature(PIN, asgi.WebSocket, "__init__", ("self", "handler", "server")),
    signature(PIN, asgi.WebSocket, "__call__", ("self", "environ")),
    signature(PIN, asgi.WebSocket, "send", ("self", "message")),
    signature(PIN, asgi.WebSocket, "close", ("self",)),
    signature(PIN, asgi.WebSocket, "wait", ("self",)),
    *(assigned(PIN, asgi.WebSocket, name) for name in ("handler", "asgi_receive", "asgi_send")),
    signature(PIN, AsyncSocket, "_websocket_handler", ("self", "ws")),
    unchanged(PIN, AsyncSocket, "_websocket_handler", "27f120df4d717a24"),
    signature(PIN, AsyncSocket, "_send_ping", ("self",)),
    unchanged(PIN, AsyncSocket, "_send_ping", "67db82a704ea49d0"),
    unchanged(PIN, AsyncSocket, "schedule_ping", "fe316639159cd70d"),
    signature(PIN, AsyncSocket, "check_ping_timeout", ("self",)),
    signature(PIN, AsyncSocket, "receive", ("self", "pkt")),
    signature(PIN, AsyncSocket, "close", ("self", "wait", "abort", "reason")),
    *(assigned(PIN, base_socket.BaseSocket, name) for name in (
        "queue", "upgraded", "upgrading", "connected", "closing", "closed", "last_ping",
        "sid", "server")),
    unchanged(PIN, _A, "handle_request", "1a8c878e35166cfe"),
    unchanged(PIN, _A, "_handle_connect", "5bd7edc1d1ae115a"),
    signature(PIN, _A, "_make_response", ("self", "response_dict", "environ")),
    signature(PIN, _B, "_unauthorized", ("self", "message")),
    signature(PIN, _B, "_bad_request", ("self", "message")),
    signature(PIN, _B, "_cors_allowed_origins", ("self", "environ")),
    signature(PIN, _B, "_log_error_once", ("self", "message", "message_key")),
    signature(PIN, _B, "_upgrades", ("self", "sid", "transport")),
    signature(PIN, _A, "_trigger_event", ("self", "event", "args", "kwargs")),
    signature(PIN, _A, "_service_task", ("self",)),
    signature(PIN, _A, "create_queue", ("self", "args", "kwargs")),
    signature(PIN, _A, "start_background_task", ("self", "target", "args", "kwargs")),
    signature(PIN, _A, "send_packet", ("self", "sid", "pkt")),
    *(assigned(PIN, _B, name) for name in ("start_service_task", "service_task_handle",
                                           "sockets")),
    present(PIN, _B, "reason"),
]
