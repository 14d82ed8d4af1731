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
from contextvars import ContextVar, Token
from typing import Any

from socketio import packet as sio_packet

from backend.compat.socketio import (
    ServerHooks,
    ack_data,
    binary_pending,
    decode_event,
    event_sid,
    namespace_handler,
)
from backend.observability.context import bind_connection
from backend.realtime.codec import Packet
from backend.realtime.engine import EngineServer


class ClientEvent:
    """An EVENT a client sent, while its handler runs (``CLIENT_EVENT``): one context
    variable set and reset per event, what the namespaces ask of it held here."""

    __slots__ = ("ack_requested", "hooks", "nul_free", "token")

    def __init__(self, ack_requested: bool, nul_free: bool) -> None:
        #: The event carries an ack id.
        self.ack_requested = ack_requested
        #: The packet was text holding no ``\u0000``: JSON carries U+0000 only escaped (the
        #: codec refuses it raw), so its data holds none and the namespaces need not walk
        #: every value for one (``reject_nul``).
        self.nul_free = nul_free
        #: What the handler asks to run once its ack is sent (``after_ack``).
        self.hooks: list[Callable[[], None]] | None = None
        self.token: Token[ClientEvent | None] | None = None


#: The client's EVENT whose handler runs; None otherwise: a handler named ``connect`` or
#: ``disconnect`` then runs for the lifecycle event of that name.
CLIENT_EVENT: ContextVar[ClientEvent | None] = ContextVar("client_event", default=None)
#: Whether the packet upstream's dispatch handles is text holding no ``\u0000`` (set only
#: for the packets the server's own dispatch of a text EVENT leaves to upstream).
_NUL_FREE: ContextVar[bool] = ContextVar("nul_free", default=False)


def after_ack(hook: Callable[[], None]) -> None:
    """Run ``hook`` once the running event's ack has been sent (at once when there is no
    event being handled): what it writes reaches the client after the ack."""
    event = CLIENT_EVENT.get()
    if event is None:
        hook()
    elif event.hooks is None:
        event.hooks = [hook]
    else:
        event.hooks.append(hook)


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
    packet_class: type[Packet]

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
        try:
            event = (decode_event(self.packet_class.json, data)
                     if type(data) is str and data[:1] == _EVENT and not self.async_handlers
                     and not binary_pending(self, eio_sid) else None)
            if event is None:  # any other packet: upstream's dispatch
                nul_free = _NUL_FREE.set(isinstance(data, str) and "\\u0000" not in data)
                try:
                    await super().handle_engineio_message(eio_sid, data)
                finally:
                    _NUL_FREE.reset(nul_free)
                return
            # A client's text EVENT (nearly every packet): upstream's dispatch of it, from
            # its text to its ack, without its frames and its packet objects between
            # (backend/compat/socketio.py): each frame is resumed at every wait of the
            # handler.
            namespace, ack_id, args = event
            sid = event_sid(self, eio_sid, namespace, args)
            if sid is None:
                return
            handler = namespace_handler(self, namespace)
            if handler is None or not _named(args):
                await self.handle_event_internal(self, sid, eio_sid, args, namespace, ack_id)
                return
            current = self._event_started(sid, ack_id, "\\u0000" not in data)
            try:
                result = await handler.trigger_event(args[0], sid, *args[1:])
                self._send_ack(eio_sid, namespace, ack_id, result)
            finally:
                self._event_ended(current)
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
        if not _named(data):
            # ``42{}`` or ``42[1]``: not an event (the protocol's data is ``[name, ...args]``);
            # answered like any refused event rather than failing inside the library.
            await self._refuse_event(eio_sid, namespace, id, data, _NOT_AN_EVENT)
            return
        current = self._event_started(sid, id, _NUL_FREE.get())
        try:
            handler = namespace_handler(self, namespace)
            if handler is None:
                await super().handle_event_internal(server, sid, eio_sid, data, namespace, id)
            else:  # the namespace's handler, and the ack, as upstream's would run them
                result = await handler.trigger_event(data[0], sid, *data[1:])
                self._send_ack(eio_sid, namespace, id, result)
        finally:
            self._event_ended(current)

    @staticmethod
    def _event_started(sid: str, ack_id: Any, nul_free: bool) -> ClientEvent:
        """A client's event of socket ``sid`` begins: its task logs as that connection, and
        its handler sees it (``CLIENT_EVENT``)."""
        bind_connection(f"sio:{sid}")
        event = ClientEvent(ack_id is not None, nul_free)
        event.token = CLIENT_EVENT.set(event)
        return event

    @staticmethod
    def _event_ended(event: ClientEvent) -> None:
        """The event's handler returned (and its ack is sent): what it asked to run after
        the ack runs (``after_ack``)."""
        assert event.token is not None
        CLIENT_EVENT.reset(event.token)
        if event.hooks is not None:
            for hook in event.hooks:
                hook()

    def _send_ack(self, eio_sid: str, namespace: str, ack_id: Any, result: Any) -> None:
        """The ACK upstream would send for a handler's ``result`` (none when the client asked
        for none), written as the Engine.IO server's ``send`` writes: at once."""
        data = ack_data(self, ack_id, result)
        if data is None:
            return
        encoded = self.packet_class.encoded(sio_packet.ACK, data, namespace, ack_id)
        for text in encoded if isinstance(encoded, list) else (encoded,):
            self.eio.send(eio_sid, text)


def _named(data: Any) -> bool:
    """Whether an EVENT's data is ``[name, ...args]``."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], str)
