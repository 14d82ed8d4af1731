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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from backend.auth.accounts import actor_from_token
from backend.auth.sessions import Sessions
from backend.doors.connections import Rate, connect_credentials, credential, rate_bucket
from backend.doors.ids import conversation_ref, resume_point
from backend.doors.refusals import Refusal, refusal_for, server_fault
from backend.raw.connection import RawMember
from backend.realtime.closes import CREDENTIAL_INVALID, LOGGED_OUT
from backend.realtime.codec import SharedEncodings
from backend.realtime.dialects import RawDialect
from backend.realtime.hub import Realtime
from backend.realtime.origins import origin_allowed
from backend.realtime.wire import lane_for
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.drafts import reject_nul
from backend.service.errors import ChatError, forbidden, too_large
from backend.service.faults import database_fault
from backend.service.grants import Grants
from backend.service.limits import TokenBucket
from backend.settings import Settings

log = logging.getLogger("confab.raw")

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
    _message_rate: TokenBucket | None = field(default=None, init=False, repr=False)
    _frame_rate: TokenBucket | None = field(default=None, init=False, repr=False)

    @property
    def message_rate(self) -> TokenBucket:
        """Chat messages sent (made at the first: an idle connection holds no bucket)."""
        bucket = self._message_rate
        if bucket is None:
            bucket = self._message_rate = rate_bucket(self.settings.limits, Rate.MESSAGES)
        return bucket

    @property
    def frame_rate(self) -> TokenBucket:
        """Every frame received (made at the first)."""
        bucket = self._frame_rate
        if bucket is None:
            bucket = self._frame_rate = rate_bucket(self.settings.limits, Rate.EVENTS)
        return bucket

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
    #: Does the welcome read the user's history, which leaves out whom they blocked? Then
    #: the user's blocks are read with the token's user (one statement, not two).
    reads_blocks = False

    def close_code(self, refusal: Refusal) -> int:
        """The close code of a refusal on this route (the refusal table's raw column)."""
        return refusal.raw

    def refused(self, error: ChatError) -> Refused:
        return Refused(self.close_code(refusal_for(error)), error.message)

    async def authenticate(self, credentials: dict[str, Any], settings: Settings,
                           sessions: Sessions, grants: Grants) -> Actor:
        """A user from ``?token=`` or ``Authorization: Bearer`` (``credentials``: the upgrade
        request's, backend/doors/connections.py), with the login session of the token; with
        ``reads_blocks``, the user's blocks read with them into ``grants``."""
        return await actor_from_token(settings, sessions, credential(credentials, "token"),
                                      grants if self.reads_blocks else None)

    async def welcome(self, session: Session) -> None:
        """After accept and the access check: send the connect frames, join rooms."""


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
    # Revocations heard before the credential is checked (``Sessions.still_live`` below).
    heard = app_state.sessions.heard
    try:
        # The handshake reads the headers and query through a view of its own: the parsed
        # copies it caches go with it instead of staying on the connection's WebSocket.
        actor, conversation_id = await handshake(door, HTTPConnection(websocket.scope),
                                                 settings)
    except Refused as refused:
        await websocket.close(refused.code, refused.reason[:120])
        return

    member = RawMember(f"raw:{_node}:{next(_ids)}", actor, door.dialect, door.route, websocket,
                       lane_for(websocket.scope, websocket.send,
                                settings.limits.max_backlog_bytes))
    session = Session(
        websocket=websocket, member=member, actor=actor, chat=chat, hub=hub, settings=settings,
        conversation_id=conversation_id,
    )
    await hub.attach(member)
    try:
        if not await app_state.sessions.still_live(actor, heard):
            # Logged out while this connection was set up (sessions.py ``still_live``).
            await hub.close_members([member], CREDENTIAL_INVALID, LOGGED_OUT)
            return
        await door.welcome(session)
        if conversation_id is not None:
            # Removed from the group while this connection was set up: its member_removed
            # came before the connection was in the room (the hub takes out those that are).
            await chat.grants.viewable(actor, conversation_id)
        forget_upgrade_request(websocket.scope)
        # Read frames until the client leaves, or the server closed the connection (a
        # close, a cut-off: uvicorn then reports the disconnect here too). Inline: a loop
        # function's frame would be held for as long as the connection is open.
        while (message := await receive())["type"] != "websocket.disconnect":
            await dispatch(door, session, message)
    except Exception as exc:
        # A database fault while welcoming (the history read) is logged once, quietly; a
        # refusal (access lost meanwhile) closes with the route's code.
        error = exc if isinstance(exc, ChatError) else server_fault(
            exc, log, door=door.route, action="welcome")
        hub.metrics.refused("websocket", error.code)
        await member.close(door.close_code(refusal_for(error)), error.message)
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
    if not origin_allowed(origin, conn.headers.get("host"), settings.allowed_origins,
                          settings.local_origins):
        raise door.refused(forbidden("Origin not allowed"))
    try:
        # The query as ``conn.query_params`` reads it (a name's last value), without the
        # multidict that is built and dropped.
        query = dict(parse_qsl(conn.scope["query_string"].decode("latin-1"),
                               keep_blank_values=True))
        credentials = connect_credentials(query, conn.headers.get("authorization", ""))
        chat: ChatService = conn.app.state.chat
        actor = await door.authenticate(credentials, settings, conn.app.state.sessions,
                                        chat.grants)
        conn.app.state.realtime.admit(actor)
        conversation_id = None
        if door.path_param is not None:
            conversation_id = conversation_ref(conn.path_params.get(door.path_param))
            await chat.grants.viewable(actor, conversation_id)
    except Exception as exc:
        # The database away is a server fault (1011 on every route), not a refused
        # credential, so clients reconnect later rather than drop their token.
        error = exc if isinstance(exc, ChatError) else server_fault(
            exc, log, door=door.route, action="connect")
        conn.app.state.metrics.refused("websocket", error.code)
        raise door.refused(error) from None
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
    if handler is None or not isinstance(kind, str):
        name = kind if isinstance(kind, str) else "(none)"
        session.error(f"Unknown {door.type_key}: {name[:64]}", "unknown_type")
        return
    try:
        # JSON carries U+0000 only escaped (orjson refuses it raw), so a frame whose text
        # has no ``\u0000`` holds none: the walk of every value is for the few that do.
        if "\\u0000" in text:
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


def forget_upgrade_request(scope: Scope) -> None:
    """The handshake and the welcome are done: nothing reads the upgrade request's headers,
    query (with its token), subprotocols and path parameters again, and the connection's
    WebSocket holds its scope for its life (about 1.5 KB of them per connection)."""
    scope["headers"] = _NOTHING
    scope["query_string"] = b""
    scope["subprotocols"] = _NOTHING
    scope.pop("path_params", None)  # Starlette reads a missing one as none


#: The empty headers and subprotocols of every connection's scope past its welcome.
_NOTHING: tuple[()] = ()


#: Replays' frames, encoded once per dialect for the connections given the same events.
_replays = SharedEncodings()


def _replay_frames(session: Session, events: list[dict[str, Any]]) -> list[str]:
    """The frames of missed events in the session's dialect. The readers of one point whom
    no event skips are given the same list (``events_since``): its frames are encoded once
    for all of them, as the fan-out encodes an event once per dialect, unless it holds an
    event the dialect encodes per member."""
    dialect, member = session.dialect, session.member

    def encode(items: list[dict[str, Any]]) -> list[str]:
        frames: list[str] = []
        for event in items:
            payload = {k: v for k, v in event.items() if k != "event"}
            frames.extend(dialect.encode(event["event"], payload, member))
        return frames

    if any(event["event"] in dialect.personal for event in events):
        return encode(events)
    return _replays.once(events, dialect.name, encode)


@dataclass(frozen=True, slots=True)
class Resumption:
    """What a connect's ``?since=`` came to, read before anything of it is sent: the replayed
    frames and the position they reach (``floor``), the ids of the messages they carry as
    sent, or the frame that refuses the resume (``notice``: ``resync_required`` or an error)."""

    frames: list[str] = field(default_factory=list)
    floor: int | None = None
    messages: frozenset[int] = frozenset()
    notice: dict[str, Any] | None = None

    def send(self, session: Session) -> int | None:
        """Send it; the position the replay reached (None: nothing was replayed)."""
        if self.notice is not None:
            session.send(self.notice)
        elif self.frames:
            session.member.send_frames(self.frames)
        return self.floor


async def read_resumption(session: Session) -> Resumption | None:
    """``?since=POSITION&epoch=EPOCH`` on connect (CONTRACT §9): the events missed after that
    position, as this route's own frames, read whole before any is sent (a door that sends a
    history page first leaves the replayed messages out of it). Past the retention or across
    an epoch: a ``resync_required`` frame. None when the connect asks for no resume."""
    raw: bytes = session.websocket.scope["query_string"]
    if b"since" not in raw and b"%" not in raw:
        return None  # no ``since`` however written: the query is not parsed a second time
    # A view of its own: the WebSocket would cache the parsed query for the connection's life.
    query = HTTPConnection(session.websocket.scope).query_params
    if query.get("since") in (None, ""):
        return None
    assert session.conversation_id is not None
    frames: list[str] = []
    messages: set[int] = set()
    try:
        position, epoch = resume_point(query.get("since"))
        if query.get("epoch"):
            epoch = query["epoch"][:64]
        while True:
            result = await session.chat.events_since(session.actor, session.conversation_id,
                                                     position, epoch)
            frames.extend(_replay_frames(session, result["events"]))
            messages.update(event["message"]["id"] for event in result["events"]
                            if event["event"] == "chat_message")
            position = int(result["position"])
            if not result["has_more"]:
                return Resumption(frames, position, frozenset(messages))
    except ChatError as error:
        session.hub.metrics.refused("websocket", error.code)
        if error.code != "resync_required":
            return Resumption(notice=session.dialect.error(error.message, error.code))
        frame = {"type": "resync_required", "conversation_id": session.conversation_id,
                 "position": getattr(error, "position", None),
                 "epoch": getattr(error, "epoch", None), "message": error.message}
        if session.dialect.name == "ws-session":
            frame["message_type"] = "resync_required"
        return Resumption(notice=frame)


async def replay_since(session: Session) -> int | None:
    """The missed events of a connect's ``?since=`` sent (``read_resumption``), before live
    ones: the caller holds the member and drops held frames at or below the position
    returned. None when nothing was replayed."""
    resumption = await read_resumption(session)
    return None if resumption is None else resumption.send(session)
