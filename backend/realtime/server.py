"""The Socket.IO server: python-socketio's AsyncServer, told whether an event wants an ack,
and refusing oversize frames without dropping the connection.

A handler cannot see whether the client asked for an acknowledgement; namespaces need to know,
since a refused event is answered in the ack when there is one and with an ``error`` event when
there is none (CONTRACT section 4). Engine.IO closes a connection whose packet exceeds its buffer
size, so that is set to a hard cap well above the frame limit, and a frame between the two is
answered with a ``too_large`` error instead (CONTRACT section 2: the client keeps its connection).
A client that asks to join a namespace the node does not serve gets the CONNECT_ERROR the
protocol names (``{"message": "Invalid namespace"}``), not python-socketio's bare string.
The library's private hooks are overridden through backend/compat/socketio.py; its Engine.IO
is the node's own (backend/realtime/engine.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from socketio import packet as sio_packet

from backend.compat.socketio import (
    ServerHooks,
    ack_packet,
    binary_pending,
    event_sid,
    namespace_handler,
)
from backend.observability.context import bind_connection
from backend.realtime.codec import Packet
from backend.realtime.engine import EngineServer

#: True while an event handler runs for an event that carries an ack id.
ACK_REQUESTED: ContextVar[bool] = ContextVar("ack_requested", default=False)
#: True while a handler runs for an EVENT packet a client sent: one named ``connect`` or
#: ``disconnect`` is then not the lifecycle event of that name.
CLIENT_EVENT: ContextVar[bool] = ContextVar("client_event", default=False)
#: True while the packet being handled is text holding no ``\u0000``: JSON carries U+0000
#: only escaped (the codec refuses it raw), so its data holds none and the namespaces need
#: not walk every value for one (``reject_nul``).
NUL_FREE: ContextVar[bool] = ContextVar("nul_free", default=False)
#: What a handler asks to run once its ack is sent (``after_ack``).
_AFTER_ACK: ContextVar[list[Callable[[], None]] | None] = ContextVar("after_ack", default=None)


def after_ack(hook: Callable[[], None]) -> None:
    """Run ``hook`` once the running event's ack has been sent (at once when there is no
    event being handled): what it writes reaches the client after the ack."""
    hooks = _AFTER_ACK.get()
    if hooks is None:
        hook()
    else:
        hooks.append(hook)


#: The first character of an EVENT packet's text.
_EVENT = str(sio_packet.EVENT)
#: The refusal of an EVENT whose data is not ``[name, ...args]``.
_NOT_AN_EVENT = {"code": "invalid", "message": "An event is a list whose first item is its name"}


def _nameless_event(data: Any) -> bool:
    """Whether ``data`` is an EVENT packet whose data is not ``[name, ...args]``."""
    try:
        pkt = _LenientPacket(encoded_packet=data)
    except Exception:  # not even a packet
        return False
    return pkt.packet_type == sio_packet.EVENT and not (
        isinstance(pkt.data, list) and pkt.data and isinstance(pkt.data[0], str))


class _LenientPacket(sio_packet.Packet):
    """Decodes with the standard library's JSON, which takes what the codec refuses (NaN,
    Infinity, lone surrogates): enough to answer the packet's ack or event."""

    json = json


class Server(ServerHooks):
    eio: EngineServer

    def __init__(self, *args: Any, frame_limit: int, max_backlog: int, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", Packet)
        super().__init__(*args, **kwargs)
        self.frame_limit = frame_limit
        self.eio.max_backlog = max_backlog

    def engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    def serves_namespace(self, namespace: str) -> bool:
        """Whether a client may connect to ``namespace`` (python-socketio's own test)."""
        return (namespace in self.handlers or namespace in self.namespace_handlers
                or self.namespaces == "*" or namespace in self.namespaces)

    async def handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        if not self.serves_namespace(namespace):
            await self.send_socketio_packet(eio_sid, self.packet_class(
                sio_packet.CONNECT_ERROR, data={"message": "Invalid namespace"},
                namespace=namespace))
            return
        await super().handle_connect(eio_sid, namespace, data)

    async def handle_engineio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, str) and len(data) * 4 > self.frame_limit and (
            len(data.encode()) > self.frame_limit
        ):
            await self._refuse_oversize(eio_sid, data)
            return
        nul_free = NUL_FREE.set(isinstance(data, str) and "\\u0000" not in data)
        try:
            if (type(data) is str and data[:1] == _EVENT and not self.async_handlers
                    and not binary_pending(self, eio_sid)):
                # A client's text EVENT (nearly every packet): upstream's dispatch of it,
                # from here to the handler, without its three frames between
                # (backend/compat/socketio.py).
                pkt = self.packet_class(encoded_packet=data)
                namespace = pkt.namespace or "/"
                sid = event_sid(self, eio_sid, namespace, pkt.data)
                if sid is not None:
                    await self.handle_event_internal(self, sid, eio_sid, pkt.data, namespace,
                                                     pkt.id)
            else:
                await super().handle_engineio_message(eio_sid, data)
        except ValueError:
            # Not a packet, or JSON the codec refuses (NaN, Infinity, a lone surrogate):
            # answered like a refused event; the connection stays.
            await self._refuse_packet(eio_sid, data, {"code": "invalid",
                                                      "message": "Invalid JSON format"})
        except (KeyError, IndexError, TypeError):
            # The library reads an event's name as ``data[0]`` before anything checks it:
            # ``42{}`` or ``42[]`` fail there. Such a packet is refused; any other failure
            # is a fault of the node's own and goes on up.
            if not _nameless_event(data):
                raise
            await self._refuse_packet(eio_sid, data, _NOT_AN_EVENT)
        finally:
            NUL_FREE.reset(nul_free)

    async def _refuse_oversize(self, eio_sid: str, data: str) -> None:
        await self._refuse_packet(eio_sid, data, {
            "code": "too_large", "message": f"Frame is larger than {self.frame_limit} bytes"})

    async def _refuse_packet(self, eio_sid: str, data: Any, error: dict[str, str]) -> None:
        try:
            pkt = _LenientPacket(encoded_packet=data)
        except Exception:  # not even a packet: nothing to answer
            return
        if pkt.packet_type != sio_packet.EVENT:
            return
        await self._refuse_event(eio_sid, pkt.namespace, pkt.id, pkt.data, error)

    async def _refuse_event(self, eio_sid: str, namespace: str | None, ack_id: Any, data: Any,
                            error: dict[str, str]) -> None:
        """Answer a refused EVENT in its ack when it asked for one, else with an ``error``
        event naming it (CONTRACT section 4)."""
        if ack_id is not None:
            reply = self.packet_class(sio_packet.ACK, namespace=namespace,
                                      data=[{"ok": False, "error": error}], id=ack_id)
        else:
            event = data[0] if isinstance(data, list) and data else None
            if not isinstance(event, str):
                event = None
            reply = self.packet_class(sio_packet.EVENT, namespace=namespace,
                                      data=["error", {**error, "event": event}])
        await self.send_socketio_packet(eio_sid, reply)

    async def handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            # ``42{}`` or ``42[1]``: not an event (the protocol's data is ``[name, ...args]``);
            # answered like any refused event rather than failing inside the library.
            await self._refuse_event(eio_sid, namespace, id, data, _NOT_AN_EVENT)
            return
        bind_connection(f"sio:{sid}")  # this event's task logs as this connection
        token = ACK_REQUESTED.set(id is not None)
        client = CLIENT_EVENT.set(True)
        hooks: list[Callable[[], None]] = []
        after = _AFTER_ACK.set(hooks)
        try:
            handler = namespace_handler(self, namespace)
            if handler is None:
                await super().handle_event_internal(server, sid, eio_sid, data, namespace, id)
            else:  # the namespace's handler, and the ack, as upstream's would run them
                result = await handler.trigger_event(data[0], sid, *data[1:])
                ack = ack_packet(self, namespace, id, result)
                if ack is not None:
                    await self.send_socketio_packet(eio_sid, ack)
        finally:
            _AFTER_ACK.reset(after)
            CLIENT_EVENT.reset(client)
            ACK_REQUESTED.reset(token)
            for hook in hooks:
                hook()
