"""The one fan-out path: a python-socketio manager that also delivers to raw WebSockets.

Every canonical event is emitted once, on the reserved namespace ``FANOUT``, with its rooms in
the envelope. On one node ``AsyncManager.emit`` lands here directly; with Redis, the pub/sub
manager publishes the envelope and each node's listener calls this same ``emit`` (it sits below
``AsyncPubSubManager`` in the method order), so raw sockets on every node get every event with
no second broadcast path. Members of every door share the room table kept here.

Besides events, the same path carries *controls*: named actions every node runs on its own
members (closing a deactivated device's sockets), registered in ``controls``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from sys import intern
from typing import TYPE_CHECKING, Any

from backend.compat.socketio import RoomsBySid
from backend.realtime.members import Member
from backend.realtime.sequence import NO_MEMBERS, EventLogReader, ReplayStats, RoomPositions
from backend.realtime.wire import Outgoing
from backend.service.latest_pages import LatestPages

if TYPE_CHECKING:
    from backend.observability.metrics import Metrics
    from backend.realtime.dialects import Dialect

FANOUT = "/__fanout__"
#: The control a node broadcasts when publishes of logged events failed: ``{positions:
#: {conversation id: last position lost}}``; every node catches those rooms up.
LOG_ADVANCED = "eventlog_advanced"
#: The control a node broadcasts when it found another node dead (``{node}``): what that node
#: stored and had not published yet is only in the log, so every node catches up its rooms.
NODE_LOST = "eventlog_node_lost"
#: A conversation's room is this and its id (backend/service/events.py).
CONVERSATION_ROOM = "conversation:"
log = logging.getLogger("confab.fanout")


class FanoutManager(RoomsBySid):
    """A socket.io manager with a room table of members from every door."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, Member] = {}
        #: Live members per actor key on this node (the socket caps count these).
        self.actor_members: Counter[str] = Counter()
        self.room_members: dict[str, dict[str, Member]] = {}
        self.connected_hooks: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {}
        self.controls: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        #: Run after an event of that name was written to this node's members (live or
        #: replayed: in its room's position order), with its envelope.
        self.after_write: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.metrics: Metrics | None = None  # set by the hub
        #: Each conversation room's last delivered position (``follow_log``); None: events
        #: are delivered as they come.
        self.positions: RoomPositions | None = None
        #: The chat service's kept history pages, told of every conversation event delivered
        #: here and of every room left empty (``keep_pages``); None: no page is kept.
        self.pages: LatestPages | None = None
        #: While ``deliver_together`` delivers: per member id, the member and what it is
        #: written, written once they are all delivered. Else None.
        self._gathered: dict[str, tuple[Member, list[Outgoing]]] | None = None

    def keep_pages(self, pages: LatestPages) -> None:
        """Tell ``pages`` of every conversation event this node delivers, so that it may
        keep pages between connects (backend/service/latest_pages.py)."""
        self.pages = pages
        pages.follow()

    def follow_log(self, reader: EventLogReader, stats: ReplayStats | None = None) -> None:
        """Deliver logged events in position order and once per room, filling gaps from
        ``reader`` (backend/realtime/sequence.py)."""
        self.positions = RoomPositions(reader, self._write, stats)
        for room in self.room_members:
            self.positions.occupied(room)
        self.controls[LOG_ADVANCED] = self._log_advanced
        self.controls[NODE_LOST] = self._node_lost

    async def _log_advanced(self, control: dict[str, Any]) -> None:
        positions = control.get("positions")
        if self.positions is not None and isinstance(positions, dict):
            self.positions.advanced({int(k): int(v) for k, v in positions.items()
                                     if str(k).isdigit() and isinstance(v, int)})

    async def node_lost(self, node: str) -> None:
        """Another node was found dead: every node catches its rooms up from the log (events
        that node committed and never published would otherwise wait for the room's next
        event, and a quiet room has none)."""
        await self.broadcast(NODE_LOST, {"node": node})

    async def _node_lost(self, control: dict[str, Any]) -> None:
        if self.positions is not None:
            log.info("node %s is gone: catching rooms up from the event log",
                     control.get("node"))
            self.positions.recover()

    # -- socket.io connections --------------------------------------------------------------

    def after_connect(self, sid: str, namespace: str, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` once the CONNECT acknowledgement of ``sid`` is queued: what it sends
        reaches the client after the ack (events sent from a connect handler would not)."""
        self.connected_hooks[(sid, namespace)] = hook

    def forget_connect(self, sid: str, namespace: str) -> None:
        self.connected_hooks.pop((sid, namespace), None)

    async def connect(self, sid: str, namespace: str) -> Any:
        # AsyncServer queues the CONNECT packet, then calls this.
        result = await super().connect(sid, namespace)
        hook = self.connected_hooks.pop((sid, namespace), None)
        if hook is not None:
            try:
                await hook()
            except Exception:
                log.exception("after-connect hook of %s failed", sid)
        return result

    # -- the service's ports (backend/service/ports.py) ------------------------------------

    def on_control(self, name: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """``ControlBus``: run ``handler`` when any node broadcasts the control ``name``."""
        self.controls[name] = handler

    async def broadcast(self, name: str, data: dict[str, Any]) -> None:
        """``ControlBus``: run the control ``name`` on every node (through Redis when the
        manager is the cluster's)."""
        await self.emit(name, data, namespace=FANOUT)

    def occupied(self, room: str) -> bool:
        """``Occupancy``: whether a connection of this node is in ``room``."""
        return bool(self.room_members.get(room))

    def any_occupied(self, rooms: tuple[str, ...]) -> bool:
        """``Occupancy``: whether a connection of this node is in any of ``rooms``."""
        room_members = self.room_members
        for room in rooms:
            if room_members.get(room):
                return True
        return False

    # -- membership -------------------------------------------------------------------------

    def add_member(self, member: Member) -> None:
        if member.id not in self.members:
            self.members[member.id] = member
            self.actor_members[member.actor.key] += 1

    def remove_member(self, member: Member) -> None:
        for room in list(member.rooms):
            self.leave(member, room)
        if self.members.pop(member.id, None) is not None:
            key = member.actor.key
            self.actor_members[key] -= 1
            if self.actor_members[key] <= 0:
                del self.actor_members[key]

    def join(self, member: Member, room: str, start: int | None = None) -> None:
        """Put ``member`` in ``room``; ``start``: the room's log position read before the
        join, where a room new on this node starts (``RoomPositions.occupied``)."""
        # One string per room for all its members' ``rooms``, not a copy each (the callers
        # make the name per connection); interned strings go with their last holder.
        room = intern(room)
        members = self.room_members.get(room)
        if members is None:
            members = self.room_members[room] = {}
            if self.positions is not None:
                self.positions.occupied(room, start)
        members[member.id] = member
        if room not in member.rooms:
            member.rooms = (*member.rooms, room)

    def leave(self, member: Member, room: str) -> None:
        members = self.room_members.get(room)
        if members is not None:
            members.pop(member.id, None)
            if not members:
                del self.room_members[room]
                if self.positions is not None:
                    self.positions.vacated(room)
                if self.pages is not None and room.startswith(CONVERSATION_ROOM):
                    self.pages.vacated(int(room.removeprefix(CONVERSATION_ROOM)))
        if room in member.rooms:
            member.rooms = tuple(r for r in member.rooms if r != room)

    # -- delivery ---------------------------------------------------------------------------

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        if namespace != FANOUT:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, to=to, **kwargs)
            return
        control = self.controls.get(event)
        if control is not None:
            await control(data)
        else:
            self.deliver(event, data)

    async def emit_together(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Emit events of one moment (``(name, envelope)``, in order, none a control), as
        ``emit`` would one after the other; on this node a member that gets several gets
        them in one write (``deliver_together``)."""
        self.deliver_together(events)

    def deliver_together(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """``deliver`` each of ``events`` in order, each member's frames of them written at
        once at the end: one socket write per member rather than one per event (a joiner's
        ``user_joined`` and ``user_status`` to each member of the room). Events with an
        after-write hook (whose frames must have left before it runs) or a log position
        (delivered in their room's order, maybe later) are delivered one by one instead."""
        if self._gathered is not None or any(
                name in self.after_write or envelope.get("position") is not None
                for name, envelope in events):
            for name, envelope in events:
                self.deliver(name, envelope)
            return
        gathered: dict[str, tuple[Member, list[Outgoing]]] = {}
        self._gathered = gathered
        try:
            for name, envelope in events:
                self.deliver(name, envelope)
        finally:
            self._gathered = None
        # Members given the same frames share one joined ``Outgoing`` (framed once).
        joined: dict[tuple[int, ...], Outgoing] = {}
        for member, outs in gathered.values():
            try:
                if len(outs) == 1:
                    member.write(outs[0])
                    continue
                key = tuple(id(out) for out in outs)
                out = joined.get(key)
                if out is None:
                    out = joined[key] = Outgoing(
                        [text for each in outs for text in each.texts], outs[0].prefix)
                member.write(out)
            except Exception:  # one broken connection must not stop the others
                log.warning("delivery to %s failed", member.id, exc_info=True)

    def deliver(self, name: str, envelope: dict[str, Any]) -> None:
        """Deliver ``name`` to the members of the envelope's rooms on this node; a logged
        event in its room's position order, once (``RoomPositions``)."""
        position = envelope.get("position")
        positions = self.positions
        if position is not None and positions is not None:
            if not positions.admit(name, envelope, position):
                return
            self._write(name, envelope, positions.passed(envelope["rooms"][0], position))
            return
        self._write(name, envelope)

    def caught_up(self, member: Member, room: str, position: int) -> None:
        """``member`` was sent ``room``'s events up to ``position`` by a resume's answer: this
        node, should it still be behind, does not write them to it again."""
        if self.positions is not None:
            self.positions.caught_up(room, member.id, position)

    def _write(self, name: str, envelope: dict[str, Any],
               passed: frozenset[str] = NO_MEMBERS) -> None:
        """Write ``name`` to every member of the envelope's rooms on this node but ``passed``
        (they have it: ``RoomPositions.passed``): encoded once per dialect (and framed once,
        see ``Outgoing``), the same bytes for every member."""
        payload = envelope["payload"]
        skip = frozenset(envelope.get("skip") or ())
        origin = envelope.get("origin")
        rooms = envelope["rooms"]
        position = envelope.get("position")
        conversation_id = payload.get("conversation_id")
        # Which conversation's position the frames carry: a member releasing a hold drops
        # those its resume already sent (``Member.release``).
        mark = ((conversation_id, position)
                if isinstance(position, int) and isinstance(conversation_id, int) else None)
        if self.pages is not None and isinstance(conversation_id, int):
            self.pages.changed(conversation_id, name)
        encoded: dict[Dialect, Outgoing | None] = {}
        gathered = self._gathered  # for one write per member (``deliver_together``)
        seen: set[str] | None = set() if len(rooms) > 1 else None
        delivered = 0  # counted here, reported once: the loop stays cheap
        for room in rooms:
            members = self.room_members.get(room)
            if not members:
                continue
            for member in tuple(members.values()):
                if seen is not None:
                    if member.id in seen:
                        continue
                    seen.add(member.id)
                if (skip and member.actor.key in skip) or (
                        member.id == origin and not member.echo_own) or (
                        passed and member.id in passed):
                    continue
                dialect = member.dialect
                if name in dialect.personal:
                    out = dialect.outgoing(dialect.encode(name, payload, member))
                elif dialect in encoded:
                    out = encoded[dialect]
                else:
                    out = encoded[dialect] = dialect.outgoing(
                        dialect.encode(name, payload, member))
                if out is None:
                    continue
                out.mark = mark
                if gathered is not None:
                    entry = gathered.get(member.id)
                    if entry is None:
                        gathered[member.id] = (member, [out])
                    else:
                        entry[1].append(out)
                    delivered += 1
                    continue
                try:
                    member.write(out)
                    delivered += 1
                except Exception:  # one broken connection must not stop the others
                    log.warning("delivery to %s failed", member.id, exc_info=True)
        if self.metrics is not None:
            self.metrics.delivered(name, delivered, envelope.get("published_at"))
        after = self.after_write.get(name)
        if after is not None:
            after(envelope)
