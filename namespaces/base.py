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

import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import socketio
from socketio import packet as sio_packet

from backend.doors.connections import Rate, connect_credentials, rate_bucket
from backend.doors.ids import as_id, conversation_ref
from backend.doors.refusals import refusal_for, server_fault
from backend.realtime.closes import CREDENTIAL_INVALID, LOGGED_OUT
from backend.realtime.dialects import SocketIODialect
from backend.realtime.hub import Realtime
from backend.realtime.members import SocketIOMember
from backend.realtime.queries import first_values
from backend.realtime.server import CLIENT_EVENT
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.drafts import reject_nul
from backend.service.errors import ChatError, forbidden, invalid
from backend.service.events import conversation_room
from backend.service.limits import TokenBucket
from backend.settings import Limits, Settings

log = logging.getLogger("confab.namespaces")

Payload = dict[str, Any]


@dataclass(slots=True)
class Socket:
    """One connected socket of a namespace."""

    member: SocketIOMember
    limits: Limits
    _bucket: TokenBucket | None = field(default=None, init=False, repr=False)
    _event_rate: TokenBucket | None = field(default=None, init=False, repr=False)

    @property
    def bucket(self) -> TokenBucket:
        """Chat messages sent (made at the first: an idle socket holds no bucket)."""
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = rate_bucket(self.limits, Rate.MESSAGES)
        return bucket

    @property
    def event_rate(self) -> TokenBucket:
        """Every event (typing, reads, reactions... are cheap, not free); made at the first."""
        bucket = self._event_rate
        if bucket is None:
            bucket = self._event_rate = rate_bucket(self.limits, Rate.EVENTS)
        return bucket

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


def not_joined(conversation_id: int) -> ChatError:
    return ChatError("not_joined", f"Join conversation {conversation_id} first", 403)


def refusal(error: ChatError) -> socketio.exceptions.ConnectionRefusedError:
    """A connect refusal (its code from the refusal table): the Socket.IO v5 CONNECT_ERROR
    ``{message, data: {code, message}}``, so socket.io-client's ``err.message`` is the text and
    ``err.data`` is ``{code, message}``."""
    code = refusal_for(error).socketio
    return socketio.exceptions.ConnectionRefusedError(error.message,
                                                      {"code": code, "message": error.message})


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
        self._chat: ChatService | None = None

    @property
    def chat(self) -> ChatService:
        # Read from the app's state once (Starlette's ``State`` looks it up in Python at
        # every read, and every event reads it): set there before namespaces are made.
        chat = self._chat
        if chat is None:
            chat = self._chat = self.app.state.chat
        return chat

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings

    async def authenticate(self, credentials: dict[str, Any], environ: dict[str, Any]) -> Actor:
        """The actor of a connection; raises CredentialMissing / CredentialInvalid."""
        raise NotImplementedError

    # -- connect / disconnect ---------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        query = first_values(environ.get("QUERY_STRING", ""))
        credentials = connect_credentials(query, environ.get("HTTP_AUTHORIZATION", ""), auth)
        # Revocations heard before the credential is checked (``Sessions.still_live``).
        heard = self.app.state.sessions.heard
        try:
            actor = await self.authenticate(credentials, environ)
            self.realtime.admit(actor)
            conversation_id: int | None = None
            start: int | None = None
            if self.joins_at_connect and credentials.get("conversation_id") not in (None, ""):
                conversation_id = conversation_ref(credentials["conversation_id"])
                # The access check only (the CONNECT ack carries no view): the cached facts,
                # as the raw routes' handshake; ``joined_check`` asks again once joined.
                await self.chat.grants.viewable(actor, conversation_id)
                start = await self.realtime.room_start(conversation_id)
        except Exception as exc:
            error = exc if isinstance(exc, ChatError) else server_fault(
                exc, log, door=self.namespace, action="connect")
            self.realtime.metrics.refused("socketio", error.code)
            raise refusal(error) from None
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        member = SocketIOMember(sid, eio_sid, self.namespace, actor, self.dialect,
                                self.server.eio)
        socket = Socket(member, self.settings.limits)
        self.realtime.manager.after_connect(
            sid, self.namespace, partial(self._connected, socket, conversation_id, start, heard)
        )
        return True

    async def _connected(self, socket: Socket, conversation_id: int | None,
                         start: int | None, heard: int) -> None:
        """After the CONNECT ack: register the member and join its rooms (presence events);
        ``start``: where the conversation's room starts here (``Realtime.room_start``);
        ``heard``: the revocations heard before the credential was checked."""
        member = socket.member
        if member.eio_sid not in self.server.environ:
            return  # the transport closed while the connect handler ran
        self.sockets[member.sid] = socket
        await self.realtime.attach(member, conversation_id, inbox=self.inbox, start=start)
        if not await self.app.state.sessions.still_live(member.actor, heard):
            # Logged out while this socket was set up (sessions.py ``still_live``).
            await self.realtime.close_members([member], CREDENTIAL_INVALID, LOGGED_OUT)
        elif conversation_id is not None:
            # Refused: the socket is out of the room, and its events naming it are refused.
            with contextlib.suppress(ChatError):
                await self.joined_check(socket, conversation_id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.realtime.manager.forget_connect(sid, self.namespace)
        socket = self.sockets.pop(sid, None)
        if socket is not None:
            await self.realtime.detach(socket.member)

    # -- events -----------------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        current = CLIENT_EVENT.get()
        if current is None and event in ("connect", "disconnect"):
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
            if current is None or not current.nul_free:
                reject_nul(data)
            result = await handler(socket, data)
            return {"ok": True, **(result or {})}
        except ChatError as error:
            return await self._refuse(socket, event, error)
        except Exception as exc:
            fault = server_fault(exc, log, door=self.namespace, action=event)
            return await self._refuse(socket, event, fault)

    async def _refuse(self, socket: Socket | None, event: str, error: ChatError) -> Any:
        self.realtime.metrics.refused("socketio", error.code)
        body: Payload = error.as_dict()
        for where in ("position", "epoch"):  # resync_required: where the log stands now
            if hasattr(error, where):
                body[where] = getattr(error, where)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            body["retry_after"] = round(retry_after, 3)
        current = CLIENT_EVENT.get()
        if current is not None and current.ack_requested:
            return {"ok": False, "error": body}
        if socket is not None:
            await self.send_to(socket, "error", {**body, "event": event})
        return None

    async def send_to(self, socket: Socket, event: str, data: Any) -> None:
        """One event to one socket, on the same write path as room deliveries."""
        member = socket.member
        out = member.dialect.outgoing([self.server.packet_class.encoded(
            sio_packet.EVENT, [event, data], self.namespace)])
        assert out is not None
        member.write(out)

    # -- conversation scoping ---------------------------------------------------------------

    def joined_conversation(self, socket: Socket, data: Payload) -> int:
        """The conversation an event acts in: its ``conversation_id`` (which the socket must have
        joined), or, when omitted, the only conversation the socket has joined."""
        if data.get("conversation_id") is None:
            joined = socket.joined
            if len(joined) == 1:
                return next(iter(joined))
            raise invalid("conversation_id is required")
        conversation_id = as_id(data["conversation_id"], "conversation_id")
        # Its room among the socket's (every event names one): no set of them built.
        if conversation_room(conversation_id) not in socket.member.rooms:
            removed = socket.member.removed
            if removed is not None and conversation_id in removed:
                raise forbidden("You are no longer a participant of this conversation")
            raise not_joined(conversation_id)
        return conversation_id

    async def joined_check(self, socket: Socket, conversation_id: int) -> None:
        """After the socket joined ``conversation_id``: its user may still see it. A user
        removed from the group while the join was under way (their ``member_removed`` came
        before the socket was in the room, so the hub did not take it out) is taken out
        here, and the join refused. Otherwise the socket is no longer a removed one there
        (its user was added back)."""
        member = socket.member
        try:
            await self.chat.grants.viewable(socket.actor, conversation_id)
        except ChatError:
            await self.realtime.leave_conversation(member, conversation_id)
            if member.removed is None:
                member.removed = set()
            member.removed.add(conversation_id)
            raise
        if member.removed is not None:
            member.removed.discard(conversation_id)

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

