"""The raw WebSocket adapter: handshake, receive loop, limits and dispatch, for every raw route.

A route is a ``Door``: its dialect, how it authenticates, what it sends on connect, and its
inbound table (frame type → handler). The adapter holds no chat logic: handlers translate a
frame into one call of the chat service or the hub; what clients see comes back through the
room, in the door's dialect.

Refusals are sent after ``accept`` so the client sees the close code (an HTTP 403 on the
upgrade would hide it).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from backend.auth.accounts import CredentialInvalid, CredentialMissing, user_from_token
from backend.raw.connection import RawMember, lane_for
from backend.realtime.dialects import RawDialect
from backend.realtime.hub import Realtime
from backend.realtime.origins import origin_allowed
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.drafts import reject_nul
from backend.service.errors import MAX_ID, ChatError, invalid, too_large, valid_id
from backend.service.faults import database_fault
from backend.service.limits import EVENT_RATE_FACTOR, TokenBucket
from backend.settings import Settings

log = logging.getLogger("confab.raw")

# Close codes of refused connections (CONTRACT sections 4 and 5).
MISSING = 4001
INVALID = 4002
NOT_FOUND = 4003
DENIED = 4004
SERVER_FAULT = 1011
GOING_AWAY = 1001  # the node is shutting down: reconnect (to another node)

_ids = itertools.count(1)
_node = os.urandom(4).hex()


class Refused(Exception):
    """The connection is refused; ``code`` is the close code the client sees."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Session:
    """One accepted connection: what handlers get. Slotted: one lives per connection."""

    websocket: WebSocket
    member: RawMember
    actor: Actor
    chat: ChatService
    hub: Realtime
    settings: Settings
    conversation_id: int | None
    message_rate: TokenBucket
    frame_rate: TokenBucket

    @property
    def dialect(self) -> RawDialect:
        return self.member.raw_dialect

    def send(self, frame: dict[str, Any]) -> None:
        self.member.send(frame)

    def send_event(self, name: str, payload: dict[str, Any]) -> None:
        """This connection only: a canonical event in the door's dialect."""
        self.member.send_frames(self.dialect.encode(name, payload, self.member))

    def error(self, message: str, code: str = "error") -> None:
        self.hub.metrics.refused("websocket", code)
        self.member.send(self.dialect.error(message, code))


Handler = Callable[[Session, dict[str, Any]], Awaitable[None]]


class Door:
    """One raw route. Subclasses set the class attributes and override the hooks."""

    route = "raw"
    dialect: RawDialect
    #: The frame key naming the frame's type ("type"; seed 003 uses "message_type").
    type_key = "type"
    #: Inbound table: frame type → handler.
    handlers: Mapping[str, Handler] = {}
    #: Does the path carry a conversation id (``conversation_id`` / ``session_id``)?
    path_param: str | None = "conversation_id"

    def refusal(self, error: ChatError) -> Refused:
        """The close code for a refused handshake: 4001 missing, 4002 invalid, 4003 not
        found, 4004 denied."""
        if isinstance(error, CredentialMissing):
            code = MISSING
        elif isinstance(error, CredentialInvalid) or error.status == 401:
            code = INVALID
        elif error.status == 404:
            code = NOT_FOUND
        elif error.status == 503:
            code = GOING_AWAY
        else:
            code = DENIED
        return Refused(code, error.message)

    def origin_refusal(self) -> Refused:
        return Refused(DENIED, "Origin not allowed")

    async def authenticate(self, conn: HTTPConnection, settings: Settings) -> Actor:
        """A user from ``?token=`` or ``Authorization: Bearer``. ``conn``: the upgrade
        request (its headers, query and path)."""
        user = await user_from_token(settings, token_of(conn))
        return Actor.of_user(user)

    async def welcome(self, session: Session) -> None:
        """After accept and the access check: send the connect frames, join rooms."""


def token_of(conn: HTTPConnection) -> str | None:
    token = conn.query_params.get("token")
    if token:
        return token
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def path_id(conn: HTTPConnection, name: str) -> int:
    """The conversation id of the path; an id that cannot exist is 'not found'."""
    raw = str(conn.path_params.get(name, ""))
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ChatError("not_found", "Conversation not found", 404)
    return int(raw)


class Endpoint:
    """The ASGI app of ``door``'s route (``RawRoutes`` in backend/raw/routes.py calls it).
    An app, not an endpoint function: Starlette would wrap a function in a session wrapper
    whose coroutine frames and closures are held for each connection's life."""

    __slots__ = ("door",)

    def __init__(self, door: Door) -> None:
        self.door = door

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Returns ``serve``'s coroutine rather than awaiting it: one frame fewer per connection.
        return serve(self.door, WebSocket(scope, receive, send), receive)


def endpoint(door: Door) -> Endpoint:
    """The ASGI app serving ``door`` (for a Starlette ``WebSocketRoute``)."""
    return Endpoint(door)


async def serve(door: Door, websocket: WebSocket, receive: Receive) -> None:
    """One connection, from accept to its end. ``receive`` is the connection's ASGI receive:
    frames are read from it directly, not through ``websocket.receive``, whose state checks
    the loop below does not need and whose coroutine would be held while the client idles."""
    app_state = websocket.app.state
    settings: Settings = app_state.settings
    hub: Realtime = app_state.realtime
    chat: ChatService = app_state.chat
    await websocket.accept()
    try:
        # The handshake reads the headers and query through a view of its own: the parsed
        # copies it caches go with it instead of staying on the connection's WebSocket.
        actor, conversation_id = await handshake(door, HTTPConnection(websocket.scope),
                                                 settings)
    except Refused as refused:
        await websocket.close(refused.code, refused.reason[:120])
        return
    except Exception:
        log.exception("raw handshake failed on %s", websocket.url.path)
        await websocket.close(SERVER_FAULT, "Internal server error")
        return

    limits = settings.limits
    member = RawMember(f"raw:{_node}:{next(_ids)}", actor, door.dialect, door.route, websocket,
                       lane_for(websocket, settings.limits.max_backlog_bytes))
    session = Session(
        websocket=websocket, member=member, actor=actor, chat=chat, hub=hub, settings=settings,
        conversation_id=conversation_id,
        message_rate=TokenBucket(limits.send_rate_per_second, limits.send_burst),
        frame_rate=TokenBucket(limits.send_rate_per_second * EVENT_RATE_FACTOR,
                               limits.send_burst * EVENT_RATE_FACTOR),
    )
    await hub.attach(member)
    try:
        await door.welcome(session)
        # Read frames until the client leaves, or the server closed the connection (a
        # close, a cut-off: uvicorn then reports the disconnect here too). Inline: a loop
        # function's frame would be held for as long as the connection is open.
        while (message := await receive())["type"] != "websocket.disconnect":
            await dispatch(door, session, message)
    except Exception as exc:
        # A database fault while welcoming (the history read) is logged once, quietly.
        fault = database_fault(exc, door=door.route, action="welcome")
        if fault is None:
            log.exception("raw connection %s failed", member.id)
        hub.metrics.refused("websocket", fault.code if fault else "internal_error")
        await member.close(SERVER_FAULT, (fault.message if fault else "Internal server error"))
    finally:
        try:
            await hub.detach(member)
        finally:
            await member.stop()


async def handshake(
    door: Door, conn: HTTPConnection, settings: Settings
) -> tuple[Actor, int | None]:
    """Origin, credential, conversation access; raises Refused."""
    origin = conn.headers.get("origin")
    if not origin_allowed(origin, conn.headers.get("host"), settings.allowed_origins):
        raise door.origin_refusal()
    try:
        actor = await door.authenticate(conn, settings)
        conn.app.state.realtime.admit(actor)
        conversation_id = None
        if door.path_param is not None:
            conversation_id = path_id(conn, door.path_param)
            chat: ChatService = conn.app.state.chat
            await chat.grants.viewable(actor, conversation_id)
    except ChatError as error:
        conn.app.state.metrics.refused("websocket", error.code)
        raise door.refusal(error) from None
    except Exception as exc:
        # The database is away: a server fault (1011 on every route), not a refused
        # credential, so clients reconnect later rather than drop their token.
        fault = database_fault(exc, door=door.route, action="connect")
        if fault is None:
            raise
        conn.app.state.metrics.refused("websocket", fault.code)
        raise Refused(SERVER_FAULT, fault.message) from None
    return actor, conversation_id


async def dispatch(door: Door, session: Session, message: Mapping[str, Any]) -> None:
    """One inbound frame: limits, JSON, type, then its handler. Every refusal is an error
    frame; the connection stays open."""
    text = message.get("text")
    if text is None:
        session.error("Binary frames are not supported; send JSON text frames",
                      "unsupported_frame")
        return
    limit = session.settings.limits.max_frame_bytes
    if len(text) > limit // 4 and len(text.encode()) > limit:
        error = too_large(f"Frame is larger than {limit} bytes")
        session.error(error.message, error.code)
        return
    try:
        session.frame_rate.take()
    except ChatError as error:
        session.error(error.message, error.code)
        return
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        session.error("Invalid JSON format", "invalid_json")
        return
    if not isinstance(frame, dict):
        session.error("Frame must be a JSON object", "invalid_frame")
        return
    kind = frame.get(door.type_key)
    handler = door.handlers.get(kind) if isinstance(kind, str) else None
    if handler is None:
        name = kind if isinstance(kind, str) else "(none)"
        session.error(f"Unknown {door.type_key}: {name[:64]}", "unknown_type")
        return
    try:
        reject_nul(frame)
        await handler(session, frame)
    except ChatError as error:
        session.error(error.message, error.code)
    except Exception as exc:
        fault = database_fault(exc, door=door.route, action=kind)
        if fault is None:
            raise
        session.error(fault.message, fault.code)


# -- small translators shared by the routes ------------------------------------------------


def as_id(value: Any, name: str = "message_id") -> int:
    """An id as a client may send it: an integer or a string of digits. Ids are 32-bit: a
    larger one (or one below 1) names nothing and never reaches a query."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if not valid_id(value):
        raise invalid(f"{name} must be an integer id from 1 to {MAX_ID}")
    return value  # type: ignore[no-any-return]


def as_ids(value: Any, name: str = "message_ids", most: int = 1000) -> list[int]:
    if not isinstance(value, list) or len(value) > most:
        raise invalid(f"{name} must be a list of at most {most} message ids")
    return [as_id(item, name) for item in value]


def without(frame: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k not in keys}


async def send_chat_message(session: Session, data: dict[str, Any]) -> None:
    """Send through the service; the room echoes it to this connection too. A retry with a
    known ``client_msg_id`` is not broadcast again, so its message is echoed here alone."""
    assert session.conversation_id is not None
    message, created = await session.chat.send_message(
        session.actor, session.conversation_id, data, rate=session.message_rate,
        origin=session.member.id,
    )
    if not created:
        session.send_event("chat_message",
                           {"conversation_id": session.conversation_id, "message": message})
