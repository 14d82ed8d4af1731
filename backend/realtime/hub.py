"""The real-time hub: the Socket.IO server, the fan-out manager, presence, and the event sink.

Every door (Socket.IO namespaces and raw WebSocket routes) registers its connections here as
``Member``s and joins them to rooms through ``join_conversation`` / ``join_inbox``; presence
events (``user_joined``, ``user_left``, ``user_status``) are produced here, once, for all doors.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from backend.realtime.codec import OrjsonCodec
from backend.realtime.fanout import FANOUT, FanoutManager
from backend.realtime.members import Member
from backend.realtime.origins import origin_allowed
from backend.realtime.presence import LocalPresence
from backend.realtime.server import Server
from backend.service import events
from backend.service.events import Event
from backend.settings import Settings

log = logging.getLogger("confab.realtime")


class ManagerSink:
    """The service's EventSink: one emit per event through the manager (hence through Redis
    when it is configured)."""

    def __init__(self, hub: Realtime) -> None:
        self.hub = hub

    async def publish(self, event: Event) -> None:
        if event.name == "typing_indicator":
            # ws-stats counts typists; the stats observe the events rather than every door.
            key = _typist_key(event.payload)
            if key is not None:
                await self.hub.presence.set_typing(
                    events.conversation_room(event.payload["conversation_id"]),
                    key,
                    bool(event.payload.get("is_typing")),
                )
        envelope = {
            "payload": event.payload,
            "rooms": list(event.rooms),
            "skip": sorted(event.skip_actors),
            "origin": event.origin,
        }
        await self.hub.manager.emit(event.name, envelope, namespace=FANOUT)


def _typist_key(payload: dict[str, Any]) -> str | None:
    if payload.get("user_id") is not None:
        return f"user:{payload['user_id']}"
    if payload.get("device_id"):
        return f"mobile:{payload['device_id']}"
    return None


class Realtime:
    """Owns the Socket.IO server and the room table shared by every door."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.manager = FanoutManager()
        allowed = settings.allowed_origins
        self.sio = Server(
            async_mode="asgi",
            client_manager=self.manager,
            json=OrjsonCodec,
            cors_allowed_origins=lambda origin, environ: origin_allowed(
                origin, environ.get("HTTP_HOST"), allowed
            ),
            frame_limit=settings.limits.max_frame_bytes,
            # Engine.IO drops a connection past this; frames between the limit and this cap
            # get a too_large error and the connection stays (see server.py).
            max_http_buffer_size=max(1024 * 1024, 4 * settings.limits.max_frame_bytes),
            # Welcome and presence events are sent from FanoutManager.after_connect hooks, once
            # the CONNECT acknowledgement is queued, never from the connect handler itself.
            logger=False,
            engineio_logger=False,
        )
        self.presence = LocalPresence()
        self.sink = ManagerSink(self)
        # Conversations told a user is online, to be told when their last connection closes.
        self.announced_online: dict[int, set[int]] = {}

    def attach_app(self, app: Any) -> None:
        """Give the namespaces access to the app's state (chat service, settings)."""
        from namespaces import register_namespaces

        self.app = app
        register_namespaces(self, app)

    def asgi(self, other_app: Any) -> socketio.ASGIApp:
        """The ASGI app: Socket.IO at ``/socket.io/``, everything else to ``other_app``."""
        return socketio.ASGIApp(self.sio, other_asgi_app=other_app, socketio_path="socket.io")

    # -- membership -------------------------------------------------------------------------

    async def attach(self, member: Member) -> None:
        """Register a live connection (once, before it joins rooms)."""
        self.manager.add_member(member)
        await self.presence.connect(member.actor.key)

    async def detach(self, member: Member) -> None:
        """Forget a connection: it leaves every room (``user_left`` where it was the actor's
        last connection there), and when it was the user's last connection on any door, every
        conversation told they were online hears they are offline."""
        went_offline = await self.presence.disconnect(member.actor.key)
        for room in sorted(member.rooms):
            if room.startswith("conversation:"):
                await self._leave(member, room)
            else:
                self.manager.leave(member, room)
        self.manager.remove_member(member)
        user = member.actor.user
        if went_offline and user is not None:
            for conversation_id in sorted(self.announced_online.pop(user.id, ())):
                await self.sink.publish(events.user_status(conversation_id, user.id, "offline"))

    async def join_conversation(self, member: Member, conversation_id: int) -> int:
        """Put ``member`` in the conversation's room; returns the distinct actors there."""
        room = events.conversation_room(conversation_id)
        if room in member.rooms:
            return await self.presence.room_size(room)
        self.manager.join(member, room)
        first, total = await self.presence.enter(room, member.actor.key)
        if first:
            await self.sink.publish(
                events.presence("user_joined", conversation_id, member.actor, total)
            )
            user = member.actor.user
            if user is not None:
                self.announced_online.setdefault(user.id, set()).add(conversation_id)
                await self.sink.publish(events.user_status(conversation_id, user.id, "online"))
        return total

    async def leave_conversation(self, member: Member, conversation_id: int) -> None:
        room = events.conversation_room(conversation_id)
        if room in member.rooms:
            await self._leave(member, room)

    async def _leave(self, member: Member, room: str) -> None:
        self.manager.leave(member, room)
        last, total = await self.presence.exit(room, member.actor.key)
        if last:
            conversation_id = int(room.removeprefix("conversation:"))
            await self.sink.publish(
                events.presence("user_left", conversation_id, member.actor, total)
            )

    def join_inbox(self, member: Member) -> None:
        """The rooms of an inbox door: the user's own (and staff's) or the device's."""
        actor = member.actor
        if actor.user is not None:
            self.manager.join(member, events.user_room(actor.user.id))
            if actor.is_staff:
                self.manager.join(member, events.STAFF_ROOM)
        elif actor.device is not None:
            self.manager.join(member, events.device_room(actor.device.device_id))

    async def close_device(self, device_id: str) -> None:
        """Close every live socket of a deactivated device (close code 4002)."""
        for member in list(self.manager.members.values()):
            if member.actor.device_id == device_id:
                await member.close(4002, "Device deactivated")

    async def stats(self) -> dict[str, Any]:
        return await self.presence.stats()
