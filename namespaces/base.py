"""The base of every Socket.IO namespace: auth at connect, members, acks, payload checks.

A namespace only translates: it reads a client event, calls the chat service or the hub, and
answers with an acknowledgement ``{ok: true, ...}`` or ``{ok: false, error: {code, message}}``.
When the client asked for no ack, a refusal is sent as an ``error {code, message, event}`` event
instead. Bad input never disconnects a socket.

Presence (``user_joined``, ``user_status``) and the inbox rooms are joined only once the CONNECT
acknowledgement is queued (``FanoutManager.after_connect``): python-socketio would send events
of the connect handler before it, and official clients drop those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar
from urllib.parse import parse_qs

import socketio
from socketio import packet as sio_packet

from backend.auth.accounts import CredentialInvalid, CredentialMissing
from backend.realtime.dialects import SocketIODialect
from backend.realtime.hub import Realtime
from backend.realtime.members import SocketIOMember
from backend.realtime.server import ACK_REQUESTED, CLIENT_EVENT
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.drafts import reject_nul
from backend.service.errors import MAX_ID, ChatError, invalid, valid_id
from backend.service.faults import database_fault
from backend.service.limits import EVENT_RATE_FACTOR, TokenBucket
from backend.settings import Settings

log = logging.getLogger("confab.namespaces")

Payload = dict[str, Any]

# Connect refusal codes (CONTRACT section 4); a fault of the server (the database away, a
# bug) is not a refusal of the credential: 1011, the raw routes' "server fault" close code.
MISSING, INVALID, NOT_FOUND, DENIED = 4001, 4002, 4003, 4004
SERVER_FAULT = 1011


@dataclass(slots=True)
class Socket:
    """One connected socket of a namespace."""

    member: SocketIOMember
    #: Chat messages sent.
    bucket: TokenBucket
    #: Every event (typing, reads, reactions... are cheap, not free).
    event_rate: TokenBucket

    @property
    def actor(self) -> Actor:
        return self.member.actor

    @property
    def joined(self) -> set[int]:
        """The conversations this socket has joined."""
        return {int(room.removeprefix("conversation:")) for room in self.member.rooms
                if room.startswith("conversation:")}


# -- payload checks -------------------------------------------------------------------------


def as_object(data: Any, *, optional: bool = False) -> Payload:
    """The event's payload as a dict (``{}`` for none when ``optional``)."""
    if data is None and optional:
        return {}
    if not isinstance(data, dict):
        raise invalid("The event payload must be an object")
    return data


def as_id(value: Any, name: str) -> int:
    """An id: an integer, or a string of digits (clients that treat ids as opaque strings).
    Ids are 32-bit: a larger one (or one below 1) names nothing and never reaches a query."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if not valid_id(value):
        raise invalid(f"{name} must be an integer id from 1 to {MAX_ID}")
    return value  # type: ignore[no-any-return]


def id_field(data: Payload, name: str) -> int:
    if data.get(name) is None:
        raise invalid(f"{name} is required")
    return as_id(data[name], name)


def optional_id(data: Payload, name: str) -> int | None:
    return None if data.get(name) is None else as_id(data[name], name)


def optional_after_id(data: Payload, name: str) -> int | None:
    """A resume point: an id, or 0 for "from the first message" (CONTRACT section 8)."""
    value = data.get(name)
    if value is None:
        return None
    return 0 if value in (0, "0") and not isinstance(value, bool) else as_id(value, name)


def id_list(data: Payload, name: str) -> list[int] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 1000:
        raise invalid(f"{name} must be a list of at most 1000 ids")
    return [as_id(item, name) for item in value]


def credential(credentials: dict[str, Any], name: str) -> str | None:
    """A string credential (``token``, ``device_id``); anything else is invalid."""
    value = credentials.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CredentialInvalid(f"{name} must be a string")
    return value


def server_error() -> ChatError:
    return ChatError("internal_error", "Internal server error", 500)


def not_joined(conversation_id: int) -> ChatError:
    return ChatError("not_joined", f"Join conversation {conversation_id} first", 403)


def refusal(code: int, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """A connect refusal: the Socket.IO v5 CONNECT_ERROR ``{message, data: {code, message}}``,
    so socket.io-client's ``err.message`` is the text and ``err.data`` is ``{code, message}``."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


def refusal_of(error: ChatError) -> socketio.exceptions.ConnectionRefusedError:
    if isinstance(error, CredentialMissing):
        return refusal(MISSING, error.message)
    if isinstance(error, CredentialInvalid):
        return refusal(INVALID, error.message)
    if error.code == "forbidden":
        return refusal(DENIED, error.message)
    if error.code in ("not_found", "invalid"):
        return refusal(NOT_FOUND, "Conversation not found")
    return refusal(DENIED, error.message)


# -- the namespace --------------------------------------------------------------------------


class Namespace(socketio.AsyncNamespace):
    """Common machinery; subclasses name their dialect, authenticate, and define ``on_<event>``
    handlers taking ``(socket, payload)`` and returning the ack's fields."""

    dialect: ClassVar[SocketIODialect]
    #: Join the actor's inbox rooms (``conversation_updated``, ``new_customer_message``).
    inbox: ClassVar[bool] = False
    #: Accept ``conversation_id`` at connect and join it at once.
    joins_at_connect: ClassVar[bool] = True

    def __init__(self, realtime: Realtime, app: Any) -> None:
        super().__init__(self.dialect.namespace)
        self.realtime = realtime
        self.app = app
        self.sockets: dict[str, Socket] = {}

    @property
    def chat(self) -> ChatService:
        return self.app.state.chat  # type: ignore[no-any-return]

    @property
    def settings(self) -> Settings:
        return self.app.state.settings  # type: ignore[no-any-return]

    async def authenticate(self, credentials: dict[str, Any], environ: dict[str, Any]) -> Actor:
        """The actor of a connection; raises CredentialMissing / CredentialInvalid."""
        raise NotImplementedError

    # -- connect / disconnect ---------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        credentials = connect_credentials(auth, environ)
        try:
            actor = await self.authenticate(credentials, environ)
            self.realtime.admit(actor)
            conversation_id = None
            if self.joins_at_connect and credentials.get("conversation_id") not in (None, ""):
                conversation_id = as_id(credentials["conversation_id"], "conversation_id")
                await self.chat.get_conversation(actor, conversation_id)
        except ChatError as error:
            self.realtime.metrics.refused("socketio", error.code)
            raise refusal_of(error) from None
        except Exception as exc:
            # Not 4002: clients drop their credential on it (the dashboard signs out).
            fault = database_fault(exc, door=self.namespace, action="connect")
            if fault is None:
                log.exception("connect to %s failed", self.namespace)
            self.realtime.metrics.refused("socketio", fault.code if fault else "internal_error")
            raise refusal(SERVER_FAULT, (fault or server_error()).message) from None
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        member = SocketIOMember(sid, eio_sid, self.namespace, actor, self.dialect,
                                self.server.eio)
        limits = self.settings.limits
        socket = Socket(member, TokenBucket(limits.send_rate_per_second, limits.send_burst),
                        TokenBucket(limits.send_rate_per_second * EVENT_RATE_FACTOR,
                                    limits.send_burst * EVENT_RATE_FACTOR))
        self.realtime.manager.after_connect(
            sid, self.namespace, partial(self._connected, socket, conversation_id)
        )
        return True

    async def _connected(self, socket: Socket, conversation_id: int | None) -> None:
        """After the CONNECT ack: register the member and join its rooms (presence events)."""
        member = socket.member
        if member.eio_sid not in self.server.environ:
            return  # the transport closed while the connect handler ran
        self.sockets[member.sid] = socket
        await self.realtime.attach(member, conversation_id, inbox=self.inbox)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.realtime.manager.forget_connect(sid, self.namespace)
        socket = self.sockets.pop(sid, None)
        if socket is not None:
            await self.realtime.detach(socket.member)

    # -- events -----------------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect") and not CLIENT_EVENT.get():
            return await super().trigger_event(event, *args)
        sid = args[0]
        data = args[1] if len(args) > 1 else None
        socket = self.sockets.get(sid)
        try:
            if socket is None:
                raise ChatError("not_connected", "The connection is not ready", 409)
            socket.event_rate.take("events")
            handler = (getattr(self, f"on_{event}", None)
                       if event.isidentifier() and event not in ("connect", "disconnect")
                       else None)
            if handler is None:
                raise ChatError("unknown_event", f"Unknown event: {event}", 400)
            reject_nul(data)
            result = await handler(socket, data)
            return {"ok": True, **(result or {})}
        except ChatError as error:
            return await self._refuse(socket, event, error)
        except Exception as exc:
            fault = database_fault(exc, door=self.namespace, action=event)
            if fault is None:
                log.exception("event %s on %s failed", event, self.namespace)
            return await self._refuse(socket, event, fault or server_error())

    async def _refuse(self, socket: Socket | None, event: str, error: ChatError) -> Any:
        self.realtime.metrics.refused("socketio", error.code)
        body: Payload = error.as_dict()
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            body["retry_after"] = round(retry_after, 3)
        if ACK_REQUESTED.get():
            return {"ok": False, "error": body}
        if socket is not None:
            await self.send_to(socket, "error", {**body, "event": event})
        return None

    async def send_to(self, socket: Socket, event: str, data: Any) -> None:
        """One event to one socket, on the same write path as room deliveries."""
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=self.namespace,
                                       data=[event, data])
        member = socket.member
        out = member.dialect.outgoing([pkt.encode()])
        assert out is not None
        member.write(out)

    # -- conversation scoping ---------------------------------------------------------------

    def joined_conversation(self, socket: Socket, data: Payload) -> int:
        """The conversation an event acts in: its ``conversation_id`` (which the socket must have
        joined), or, when omitted, the only conversation the socket has joined."""
        joined = socket.joined
        if data.get("conversation_id") is None:
            if len(joined) == 1:
                return next(iter(joined))
            raise invalid("conversation_id is required")
        conversation_id = as_id(data["conversation_id"], "conversation_id")
        if conversation_id not in joined:
            raise not_joined(conversation_id)
        return conversation_id

    async def message_conversation(self, socket: Socket, data: Payload, message_id: int) -> int:
        """The joined conversation a message op acts in (see ``joined_conversation``); with
        several joined and none named, the message's own (which must be joined)."""
        if data.get("conversation_id") is not None or len(socket.joined) == 1:
            return self.joined_conversation(socket, data)
        message = await self.chat.get_message(socket.actor, message_id)
        conversation_id: int = message["conversation_id"]
        if conversation_id not in socket.joined:
            raise not_joined(conversation_id)
        return conversation_id


def connect_credentials(auth: Any, environ: dict[str, Any]) -> dict[str, Any]:
    """``auth`` merged over the query string (for SDKs that cannot set ``auth``) and a bearer
    ``Authorization`` header."""
    merged: dict[str, Any] = {
        key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()
        if key in ("token", "device_id", "conversation_id")
    }
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer ") and "token" not in merged:
        merged["token"] = header[7:].strip()
    if isinstance(auth, dict):
        merged.update({k: v for k, v in auth.items() if v is not None})
    return merged
