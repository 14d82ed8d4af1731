"""The real-time hub: the Socket.IO server, the fan-out manager, presence, and who is where.

Every door (Socket.IO namespaces and raw WebSocket routes) registers its connections here as
``Member``s and joins them to rooms through ``join_conversation`` / ``join_inbox``; presence
events (``user_joined``, ``user_left``, ``user_status``) are produced here, once, for all doors;
rooms past ``PRESENCE_DETAIL_MAX_MEMBERS`` get one ``presence_diff`` per window instead
(presence_diffs.py).

The hub knows neither the doors nor the cluster: the app (backend/app.py) gives it its
fan-out manager and presence (this node's own, or the cluster's) and, in a cluster, the
``Backplane`` it starts and stops with the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from backend.compat.socketio import initialize_manager
from backend.observability.context import bind_connection
from backend.observability.metrics import Metrics
from backend.realtime.closes import (
    CREDENTIAL_INVALID,
    DENIED,
    GOING_AWAY,
    LOGGED_OUT,
    SERVICE_RESTART,
)
from backend.realtime.codec import OrjsonCodec
from backend.realtime.fanout import FanoutManager
from backend.realtime.log_reader import LogReader, LogSource
from backend.realtime.members import Member, SocketIOMember
from backend.realtime.origins import origin_allowed
from backend.realtime.presence import Departures, Presence
from backend.realtime.presence_diffs import PresenceDiffs
from backend.realtime.server import Server
from backend.realtime.sink import FanoutSink
from backend.service import events
from backend.service.actors import Actor, actor_from_key
from backend.service.errors import ChatError
from backend.settings import Settings

log = logging.getLogger("confab.realtime")


class Backplane(Protocol):
    """What connects this node to the others (backend/cluster/node.py), started and stopped
    with the node."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, bool]: ...


class Realtime:
    """Owns the Socket.IO server and the room table shared by every door."""

    def __init__(self, settings: Settings, metrics: Metrics, manager: FanoutManager,
                 presence: Presence, backplane: Backplane | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.manager = manager
        self.presence = presence
        self.backplane = backplane
        self.manager.on_control("close_actor", self._close_actor_here)
        self.manager.after_write["member_removed"] = self._member_removed
        #: Presence and closes that follow sockets taken out of a conversation.
        self._evictions: set[asyncio.Task[None]] = set()
        self.manager.metrics = self.metrics
        allowed, local = settings.allowed_origins, settings.local_origins
        self.sio = Server(
            async_mode="asgi",
            client_manager=self.manager,
            json=OrjsonCodec,
            cors_allowed_origins=lambda origin, environ: origin_allowed(
                origin, environ.get("HTTP_HOST"), allowed, local
            ),
            frame_limit=settings.limits.max_frame_bytes,
            max_backlog=settings.limits.max_backlog_bytes,
            # Engine.IO drops a connection past this; frames between the limit and this cap
            # get a too_large error and the connection stays (see server.py).
            max_http_buffer_size=max(1024 * 1024, 4 * settings.limits.max_frame_bytes),
            # Welcome and presence events are sent from FanoutManager.after_connect hooks, once
            # the CONNECT acknowledgement is queued, never from the connect handler itself.
            # A socket's events are handled one after the other, in the order sent: a
            # sender's messages are stored in its order, and a socket sending faster than
            # the node keeps up is slowed at its own read, not queued as unbounded tasks.
            async_handlers=False,
            ping_interval=settings.ping_interval_seconds,
            ping_timeout=settings.ping_timeout_seconds,
            logger=False,
            engineio_logger=False,
        )
        #: Where the hub's own presence events go (the service gets it through the app).
        self.sink = FanoutSink(manager)
        self.diffs = PresenceDiffs(self.sink, presence.room_size,
                                   settings.limits.presence_window_seconds)
        #: Set at SIGTERM (backend/shutdown.py): new connections are refused.
        self.draining = False
        self._detached = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    def follow_log(self, source: LogSource) -> None:
        """Deliver logged events in position order and once per room on this node, filling
        any gap (a lost subscription, a lost publish) from ``source``'s log."""
        self.manager.follow_log(LogReader(source), self.metrics)

    async def start(self) -> None:
        """Start listening to the cluster (at start-up, not at the first Socket.IO request,
        so raw WebSockets get other nodes' events from the start) and join it."""
        initialize_manager(self.sio)
        if self.backplane is not None:
            await self.backplane.start()

    async def stop(self) -> None:
        """Leave the cluster (others hear this node's users leave) and stop listening."""
        await self.diffs.stop()
        if self.backplane is not None:
            await self.backplane.stop()

    def health(self) -> dict[str, bool]:
        """Checks for /readyz: Redis (publishing and listening) when the node is in a cluster."""
        return {} if self.backplane is None else self.backplane.health()

    # -- membership -------------------------------------------------------------------------

    def admit(self, actor: Actor) -> None:
        """Refuse a new connection of an actor already at its cap on this node (sockets per
        user, per device): raises ChatError ``too_many_connections``."""
        if self.draining:
            raise ChatError("shutting_down", "Server shutting down", 503)
        limits = self.settings.limits
        cap = limits.max_sockets_per_device if actor.device is not None else (
            limits.max_sockets_per_user)
        if self.manager.actor_members.get(actor.key, 0) >= cap:
            raise ChatError("too_many_connections",
                            f"Too many connections ({cap}) for this account; close one first",
                            429)

    async def room_start(self, conversation_id: int) -> int | None:
        """Where the conversation's room starts on this node if a member joins it next: the
        log's position, read before the member is in the room (None when the room is
        followed here already). What commits later reaches the member live; what came
        before is in what it reads after joining. Read after the join, an event committed
        in between but still on its way here would be dropped as delivered."""
        positions = self.manager.positions
        if positions is None or self.manager.occupied(events.conversation_room(conversation_id)):
            return None
        return await positions.reader.log_position(conversation_id)

    async def attach(self, member: Member, conversation_id: int | None = None,
                     inbox: bool = False, start: int | None = None) -> None:
        """Register a live connection, with its first rooms (``start``: ``room_start`` of
        ``conversation_id``, read before). The room table changes before anything is
        awaited, so an event the client sends at once finds it joined."""
        bind_connection(member.id)
        self.manager.add_member(member)
        if inbox:
            self.join_inbox(member)
        room = None if conversation_id is None else events.conversation_room(conversation_id)
        if room is not None:
            self.manager.join(member, room, start)
        await self.presence.connect(member.actor.key)
        if room is not None:
            await self._entered(member, room)

    async def detach(self, member: Member) -> None:
        """Forget a connection: it leaves every room (``user_left`` where it was the actor's
        last connection there), and when it was the user's last connection anywhere, every
        conversation told they were online hears they are offline."""
        key = member.actor.key
        went_offline = await self.presence.disconnect(key)
        for room in sorted(member.rooms):
            if room.startswith("conversation:"):
                await self._leave(member, room)
            else:
                self.manager.leave(member, room)
        self.manager.remove_member(member)
        self._detached.set()
        user = member.actor.user
        if went_offline and user is not None:
            await self._announce_offline(user.id, await self.presence.take_announced(key))

    def release(self, member: Member, conversation_id: int, floor: int | None = None,
                drop: Callable[[str], bool] | None = None) -> None:
        """End ``member``'s hold (``Member.release``). When its answer sent the conversation's
        events up to ``floor``, this node, if behind there (catching up from the log after
        another node's loss), leaves them out of what it writes to the member later."""
        member.release(conversation_id, floor, drop)
        if floor is not None:
            self.reached(member, conversation_id, floor)

    def reached(self, member: Member, conversation_id: int, position: int) -> None:
        """``member`` was sent the conversation as of ``position`` (a history page read after
        that position was, or a resume's answer): this node, if behind there (catching up
        from the log after another node's loss), leaves the events up to it out of what it
        writes to the member later."""
        self.manager.caught_up(member, events.conversation_room(conversation_id), position)

    async def join_conversation(self, member: Member, conversation_id: int) -> int:
        """Put ``member`` in the conversation's room; returns the distinct actors there."""
        room = events.conversation_room(conversation_id)
        if room in member.rooms:
            return await self.presence.room_size(room)
        cap = self.settings.limits.max_joined_per_socket
        if sum(r.startswith("conversation:") for r in member.rooms) >= cap:
            raise ChatError("too_many_joined",
                            f"A connection may join at most {cap} conversations; leave one first",
                            429)
        start = await self.room_start(conversation_id)
        if room in member.rooms:  # the same member joined meanwhile
            return await self.presence.room_size(room)
        self.manager.join(member, room, start)
        return await self._entered(member, room)

    async def _entered(self, member: Member, room: str) -> int:
        first, total = await self.presence.enter(room, member.actor.key)
        if first and self._coalesced(total):
            self.diffs.add(room, joins=1)
        elif first:
            conversation_id = int(room.removeprefix("conversation:"))
            joined = events.presence("user_joined", conversation_id, member.actor, total)
            user = member.actor.user
            if user is None:
                await self.sink.publish(joined)
            else:
                await self.presence.announce_online(member.actor.key, conversation_id)
                # In one write to each member of the room (not one write per event).
                await self.sink.publish_together(
                    [joined, events.user_status(conversation_id, user.id, "online")])
        return total

    async def leave_conversation(self, member: Member, conversation_id: int) -> None:
        room = events.conversation_room(conversation_id)
        if room in member.rooms:
            await self._leave(member, room)

    async def _leave(self, member: Member, room: str) -> None:
        self.manager.leave(member, room)
        await self._exited(member, room)

    async def _exited(self, member: Member, room: str) -> None:
        """Presence after ``member`` left ``room``: ``user_left`` when it was its actor's
        last connection there."""
        last, total = await self.presence.exit(room, member.actor.key)
        if last and self._coalesced(total + 1):
            self.diffs.add(room, leaves=1)
        elif last:
            conversation_id = int(room.removeprefix("conversation:"))
            await self.sink.publish(
                events.presence("user_left", conversation_id, member.actor, total)
            )

    def _member_removed(self, envelope: dict[str, Any]) -> None:
        """A ``member_removed`` was just written to this node's members: the removed user's
        sockets leave the conversation's room at once, so nothing after it in the room's
        position order reaches them (here, and through each node's own delivery, on every
        node; a node that lost the event replays it from the log before anything later).
        Socket.IO sockets stay connected and are refused there from now on (``forbidden``);
        a raw route is bound to its one conversation, so its connection closes with 4004."""
        payload = envelope.get("payload") or {}
        conversation_id, user_id = payload.get("conversation_id"), payload.get("user_id")
        if not isinstance(conversation_id, int) or not isinstance(user_id, int):
            return
        room = events.conversation_room(conversation_id)
        removed = [member for member in self.manager.room_members.get(room, {}).values()
                   if member.actor.user is not None and member.actor.user.id == user_id]
        if not removed:
            return
        for member in removed:
            self.manager.leave(member, room)
            if member.removed is None:
                member.removed = set()
            member.removed.add(conversation_id)
        task = asyncio.ensure_future(self._evicted(removed, room))
        self._evictions.add(task)
        task.add_done_callback(self._evictions.discard)

    async def _evicted(self, members: list[Member], room: str) -> None:
        """What follows sockets taken out of ``room``: presence (``user_left``), and the
        close of the raw ones."""
        try:
            for member in members:
                await self._exited(member, room)
            await self.close_members(
                [member for member in members if not isinstance(member, SocketIOMember)],
                DENIED, "Removed from the conversation")
        except Exception:
            log.warning("after removing members from %s", room, exc_info=True)

    def _coalesced(self, members: int) -> bool:
        """Whether a room of ``members`` distinct actors gets counts per window rather than
        per-user events (whose cost grows with the room at every join)."""
        return members > self.settings.limits.presence_detail_max_members

    async def _announce_offline(self, user_id: int, conversation_ids: list[int]) -> None:
        """``user_status`` offline in the conversations told the user was online, except
        those now past the detail limit: a large room hears of no one by name (its diff
        counted the leave), or a reconnect storm would cost each of the first arrivals one
        frame per member there."""
        for conversation_id in conversation_ids:
            room = events.conversation_room(conversation_id)
            if self._coalesced(await self.presence.room_size(room) + 1):
                continue
            await self.sink.publish(events.user_status(conversation_id, user_id, "offline"))

    async def departed(self, departures: Departures) -> None:
        """Another node is gone (or this one is leaving): say who left, as if each of its
        connections had closed."""
        actors: dict[str, Actor | None] = {}
        for room, key, total in departures.left:
            if not room.startswith("conversation:"):
                continue
            if self._coalesced(total + 1):
                self.diffs.add(room, leaves=1)
                continue
            if key not in actors:
                actors[key] = await actor_from_key(key)
            actor = actors[key]
            if actor is not None:
                conversation_id = int(room.removeprefix("conversation:"))
                await self.sink.publish(events.presence("user_left", conversation_id, actor,
                                                        total))
        for key, conversation_ids in departures.offline:
            kind, _, ident = key.partition(":")
            if kind == "user" and ident.isdigit():
                await self._announce_offline(int(ident), conversation_ids)

    def join_inbox(self, member: Member) -> None:
        """The rooms of an inbox door: the user's own (and staff's) or the device's."""
        actor = member.actor
        if actor.user is not None:
            self.manager.join(member, events.user_room(actor.user.id))
            if actor.is_staff:
                self.manager.join(member, events.STAFF_ROOM)
        elif actor.device is not None:
            self.manager.join(member, events.device_room(actor.device.device_id))

    async def close_actor(self, key: str, code: int, reason: str) -> None:
        """Close every live socket of one actor (``Actor.key``), on every node."""
        await self.manager.broadcast("close_actor", {"key": key, "code": code, "reason": reason})

    async def close_device(self, device_id: str) -> None:
        """A deactivated device's sockets: closed with 4002 (credential inactive)."""
        await self.close_actor(f"mobile:{device_id}", CREDENTIAL_INVALID, "Device deactivated")

    async def close_user(self, user_id: int) -> None:
        """A user whose reach changed (a role given or taken away): their sockets close with
        1012 (reconnect), so each reconnects with its rooms and checks as the user is now."""
        await self.close_actor(f"user:{user_id}", SERVICE_RESTART, "Role changed; reconnect")

    async def close_session(self, user_id: int, session_id: str | None) -> None:
        """A logout, heard on this node (the sessions' revocation control, which every node
        runs: backend/auth/sessions.py): this node's sockets opened with the revoked session
        (None: with any session of the user) close with 4002 (credential invalid)."""
        await self._close_actor_here({"key": f"user:{user_id}", "code": CREDENTIAL_INVALID,
                                      "reason": LOGGED_OUT, "session_id": session_id})

    async def close_revoked_sessions(
        self, recently_revoked: Callable[[], Awaitable[set[str]]]
    ) -> int:
        """Close (4002) this node's sockets whose login session ``recently_revoked`` names:
        what a logout whose control this node missed left open. Returns how many."""
        revoked = await recently_revoked()
        if not revoked:
            return 0
        closing = [member for member in self.manager.members.values()
                   if member.actor.user is not None and member.actor.session_id in revoked]
        await self.close_members(closing, CREDENTIAL_INVALID, LOGGED_OUT)
        return len(closing)

    async def _close_actor_here(self, control: dict[str, Any]) -> None:
        key = control.get("key")
        code, reason = int(control.get("code") or 1000), str(control.get("reason") or "")
        session_id = control.get("session_id")
        await self.close_members(
            [member for member in self.manager.members.values()
             if member.actor.key == key and session_id in (None, member.actor.session_id)],
            code, reason)

    async def close_all(self) -> int:
        """Refuse new connections (raw: 1001 going away; Socket.IO: a new Engine.IO session,
        ``EngineServer.stop_opening``; a namespace of a session already open: 1001) and close
        every live one after what is queued for it (raw: 1001; Socket.IO: the Engine.IO
        session). Returns how many were closed."""
        self.draining = True
        self.sio.eio.stop_opening()
        members = list(self.manager.members.values())
        await self.close_members(members, GOING_AWAY, "Server shutting down")
        return len(members)

    @staticmethod
    async def close_members(members: list[Member], code: int, reason: str) -> None:
        """Close ``members`` together: a close returns once it is under way (the frames
        before it leave in the background), and none waits for another, so a control that
        closes many sockets, run by the cluster's listener, holds up nothing else for long.
        Each is told first (``ending``): sockets of one Engine.IO session close together."""
        for member in members:
            member.ending(code)
        results = await asyncio.gather(*(member.close(code, reason) for member in members),
                                       return_exceptions=True)
        for member, result in zip(members, results, strict=True):
            if isinstance(result, Exception):
                log.warning("closing %s failed", member.id, exc_info=result)

    async def until_no_members(self) -> None:
        """Wait until every connection of this node has been detached, and the Socket.IO
        ones' last frames and close have left."""
        while self.manager.members:
            self._detached.clear()
            if not self.manager.members:
                break
            await self._detached.wait()
        await self.sio.eio.until_closed()

    def connection_doors(self) -> list[tuple[str, str]]:
        """The node's open connections, one ``(transport, route)`` pair each (metrics)."""
        return [("socketio" if isinstance(member, SocketIOMember) else "websocket", member.route)
                for member in self.manager.members.values()]

    def dropped_events(self) -> int | None:
        """Events not published to the other nodes (Redis away, the outbox full), or None
        on a node alone (metrics)."""
        dropped: int | None = getattr(self.manager, "dropped", None)
        return dropped

    async def stats(self) -> dict[str, Any]:
        return await self.presence.stats()
