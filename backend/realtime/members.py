"""Members of rooms: one per live connection, whatever door it came through.

A member knows its actor, its dialect and how to write text to its client. The fan-out manager
asks the dialect to encode an event once per dialect and hands the same text to every member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from socketio import packet as sio_packet

from backend.realtime.closes import COME_BACK
from backend.realtime.codec import Packet
from backend.realtime.wire import Outgoing
from backend.service.actors import Actor

if TYPE_CHECKING:
    from backend.realtime.dialects import Dialect
    from backend.realtime.engine import EngineServer


class Member:
    """A connection in rooms. ``id`` is unique across the cluster.

    While a resume is answered (``hold``), live frames are kept back; ``release`` lets them
    through after the answer, minus the events of the resumed conversation the answer held.
    Both doors use it: a raw connection while its welcome frames are prepared, a Socket.IO
    socket while a ``join`` with ``since`` is acknowledged."""

    __slots__ = ("_drops", "_floors", "_held", "_holds", "actor", "dialect", "id", "removed",
                 "rooms", "route")

    #: Does this member receive the chat_message it sent itself? Raw routes do (their clients
    #: render from the echo); Socket.IO senders get the stored message in the ack instead.
    echo_own = True

    def __init__(self, member_id: str, actor: Actor, dialect: Dialect, route: str) -> None:
        self.id = member_id
        self.actor = actor
        self.dialect = dialect
        self.route = route
        #: The rooms it is in: a tuple (a connection is in one or a few; an empty set is
        #: 216 bytes on every connection, a tuple of one 48), replaced on join and leave.
        self.rooms: tuple[str, ...] = ()
        #: Conversations the member was taken out of because its user was removed from them
        #: (None until it happens): what it sends there is refused as ``forbidden``.
        self.removed: set[int] | None = None
        #: Live frames kept back while a hold lasts, else None.
        self._held: list[Outgoing] | None = None
        #: Holds not yet released (two resumes of one socket may overlap).
        self._holds = 0
        #: While a hold lasts (else None, as ``_held``): per conversation, the position up
        #: to which released answers sent its events, and the texts they dropped. Made by
        #: the hold: a dict and a list on every idle connection were 0.15 KB.
        self._floors: dict[int, int] | None = None
        self._drops: list[Callable[[str], bool]] | None = None

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

    def ending(self, code: int) -> None:
        """Before ``close(code, …)``: tell the client, where its protocol has a way besides the
        close itself, whether the server ends it on purpose. Raw routes say it with the close
        code alone."""

    async def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    # -- holding live frames ----------------------------------------------------------------

    def hold(self) -> None:
        """Keep live frames back until ``release``: what a resume answers must come first,
        and what arrives live meanwhile after it, once."""
        self._holds += 1
        if self._held is None:
            self._held, self._floors, self._drops = [], {}, []

    def release(self, conversation_id: int, floor: int | None = None,
                drop: Callable[[str], bool] | None = None) -> None:
        """End a hold: the answer for ``conversation_id`` sent its events up to position
        ``floor`` (None: no complete answer was sent). Kept frames of that conversation's
        events at or below ``floor`` are dropped, and texts ``drop`` rejects; frames of
        other conversations pass (positions are per conversation). The frames go out once
        the last overlapping hold is released."""
        floors, drops = self._floors, self._drops
        if self._held is None or floors is None or drops is None:
            return
        if floor is not None:
            floors[conversation_id] = max(floor, floors.get(conversation_id, floor))
        if drop is not None:
            drops.append(drop)
        self._holds -= 1
        if self._holds <= 0:
            self._let_through()

    def _let_through(self) -> None:
        """Write what was held (minus what the answers covered) and stop holding."""
        held, floors, drops = self._held or [], self._floors or {}, self._drops
        self._held, self._holds, self._floors, self._drops = None, 0, None, None
        for out in held:
            mark = out.mark
            if mark is not None and mark[1] <= floors.get(mark[0], -1):
                continue
            texts = out.texts
            if drops:
                texts = [text for text in texts if not any(drop(text) for drop in drops)]
                if not texts:
                    continue
            self.write(out if texts is out.texts else Outgoing(texts, out.prefix, out.mark))


class SocketIOMember(Member):
    """A Socket.IO socket; frames are encoded Socket.IO packets, written straight to the
    socket's WebSocket when Engine.IO allows it, else put on Engine.IO's queue."""

    __slots__ = ("eio", "eio_sid", "namespace", "sid")

    echo_own = False

    def __init__(self, sid: str, eio_sid: str, namespace: str, actor: Actor, dialect: Dialect,
                 eio: EngineServer) -> None:
        super().__init__(f"sio:{sid}", actor, dialect, namespace)
        self.sid = sid
        self.eio_sid = eio_sid
        self.namespace = namespace
        self.eio = eio

    def write(self, out: Outgoing) -> None:
        if self._held is not None:
            self._held.append(out)
            return
        wire = self.eio.direct_wire(self.eio_sid)
        if wire is not None:
            wire.write(out.wire)
        else:
            for text in out.texts:
                self.eio.send(self.eio_sid, text)  # never waits: not awaited

    def ending(self, code: int) -> None:
        # An end on purpose (a logout, a deactivated device or user) is the namespace's
        # DISCONNECT: socket.io-client reports "io server disconnect" and does not reconnect
        # (after a bare close it reconnected, to be refused). Sent past any hold, in order
        # with what was written before it; a come-back close sends none.
        if code not in COME_BACK:
            self.eio.send(self.eio_sid, Packet.encoded(sio_packet.DISCONNECT, None,
                                                       self.namespace))

    async def close(self, code: int, reason: str) -> None:
        # A node going away, or a reach changed (a role), ends the session without
        # Engine.IO's CLOSE on either transport: python-socketio's client takes that packet for
        # the end on purpose and would not reconnect (to another node, or this address once a
        # node answers there again; or here, with its new reach).
        await self.eio.disconnect(self.eio_sid, tell=code not in COME_BACK)
