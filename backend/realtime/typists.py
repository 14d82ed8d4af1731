"""Who is typing where, as seed 003's ws-stats counts it: observed on the typing events the
service publishes, so no door has to report it."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from backend.realtime.presence import Presence
from backend.service import events
from backend.service.events import Event
from backend.service.ports import EventSink


class TypistCounter:
    """An ``EventSink`` in front of another: a typing event updates the presence's typists of
    its conversation, then every event goes on unchanged."""

    __slots__ = ("presence", "sink")

    def __init__(self, sink: EventSink, presence: Presence) -> None:
        self.sink = sink
        self.presence = presence

    def publish(self, event: Event, *,
                here_only: bool = False) -> Coroutine[Any, Any, None]:
        # Any other event: the next sink's coroutine itself, not one awaiting it (every
        # message passes here).
        if event.name == "typing_indicator":
            return self._typing(event, here_only)
        return self.sink.publish(event, here_only=here_only)

    async def _typing(self, event: Event, here_only: bool) -> None:
        key = typist_key(event.payload)
        if key is not None:
            await self.presence.set_typing(
                events.conversation_room(event.payload["conversation_id"]), key,
                bool(event.payload.get("is_typing")))
        await self.sink.publish(event, here_only=here_only)


def typist_key(payload: dict[str, Any]) -> str | None:
    """The actor key of a typing event's typist (a user or a device)."""
    if payload.get("user_id") is not None:
        return f"user:{payload['user_id']}"
    if payload.get("device_id"):
        return f"mobile:{payload['device_id']}"
    return None
