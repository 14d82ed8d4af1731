"""Members of rooms: one per live connection, whatever door it came through.

A member knows its actor, its dialect and how to write text to its client. The fan-out manager
asks the dialect to encode an event once per dialect and hands the same text to every member.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from backend.realtime.wire import Outgoing
from backend.service.actors import Actor

if TYPE_CHECKING:
    from backend.realtime.dialects import Dialect
    from backend.realtime.engine import EngineServer


class Member:
    """A connection in rooms. ``id`` is unique across the cluster."""

    __slots__ = ("actor", "dialect", "id", "rooms", "route")

    #: Does this member receive the chat_message it sent itself? Raw routes do (their clients
    #: render from the echo); Socket.IO senders get the stored message in the ack instead.
    echo_own = True

    def __init__(self, member_id: str, actor: Actor, dialect: Dialect, route: str) -> None:
        self.id = member_id
        self.actor = actor
        self.dialect = dialect
        self.route = route
        self.rooms: set[str] = set()

    @property
    def viewer_keys(self) -> tuple[str, ...]:
        """Keys under which per-viewer values (unread counts) are looked up, most specific
        first."""
        actor = self.actor
        if actor.user is not None:
            return (f"user:{actor.user.id}", "staff") if actor.is_staff else (
                f"user:{actor.user.id}",)
        if actor.device is not None:
            return (f"device:{actor.device.device_id}",)
        return ()

    def write(self, out: Outgoing) -> None:
        """Send ``out`` (encoded in this member's dialect) to the client, in order with what
        was written before. Never waits: a slow client never stalls delivery to the others."""
        raise NotImplementedError

    async def close(self, code: int, reason: str) -> None:
        raise NotImplementedError


class SocketIOMember(Member):
    """A Socket.IO socket; frames are encoded Socket.IO packets, written straight to the
    socket's WebSocket when Engine.IO allows it, else put on Engine.IO's queue."""

    __slots__ = ("eio", "eio_sid", "held", "namespace", "sid")

    echo_own = False

    def __init__(self, sid: str, eio_sid: str, namespace: str, actor: Actor, dialect: Dialect,
                 eio: EngineServer) -> None:
        super().__init__(f"sio:{sid}", actor, dialect, namespace)
        self.sid = sid
        self.eio_sid = eio_sid
        self.namespace = namespace
        self.eio = eio
        #: Live frames kept back while a resume is answered (``hold``), else None.
        self.held: list[Outgoing] | None = None

    def hold(self) -> None:
        """Keep live frames back until ``release``: a ``join`` with ``since`` answers in its
        ack what was missed, and what arrives live meanwhile must come after it, once."""
        if self.held is None:
            self.held = []

    def release(self, floor: int) -> None:
        """Write the frames kept back, minus those of events at or below position ``floor``
        of ``conversation_id`` (the ack had them)."""
        held, self.held = self.held, None
        for out in held or ():
            texts = [text for text in out.texts if not _covered(text, floor)]
            if texts:
                self.write(out if len(texts) == len(out.texts) else Outgoing(texts, out.prefix))

    def write(self, out: Outgoing) -> None:
        if self.held is not None:
            self.held.append(out)
            return
        wire = self.eio.direct_wire(self.eio_sid)
        if wire is not None:
            wire.write(out.wire)
        else:
            for text in out.texts:
                self.eio.send(self.eio_sid, text)  # never waits: not awaited

    async def close(self, code: int, reason: str) -> None:
        await self.eio.disconnect(self.eio_sid)


def _covered(text: str, floor: int) -> bool:
    """Whether a Socket.IO EVENT packet's text (``2/nsp,["name",{...}]``) carries a position
    at or below ``floor``."""
    start = text.find("[")
    if start < 0:
        return False
    try:
        data = orjson.loads(text[start:])
    except orjson.JSONDecodeError:
        return False
    payload = data[1] if isinstance(data, list) and len(data) > 1 else None
    position = payload.get("position") if isinstance(payload, dict) else None
    return isinstance(position, int) and position <= floor
