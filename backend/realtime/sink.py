"""The service's ``EventSink`` on the fan-out: one emit per event through the manager (hence
through Redis when it is configured), or a delivery on this node alone."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any

from backend.realtime.fanout import FANOUT, FanoutManager
from backend.service.events import Event


def envelope_of(event: Event) -> dict[str, Any]:
    """The fan-out envelope of ``event`` (what crosses Redis)."""
    return {
        "payload": event.payload,
        "rooms": list(event.rooms),
        "skip": sorted(event.skip_actors),
        "origin": event.origin,
        "position": event.position,
        # Wall clock, as it crosses nodes: fan-out latency is measured from here.
        "published_at": time.time(),
    }


class FanoutSink:
    """Publishes each event once, with its rooms, to every node's fan-out manager."""

    __slots__ = ("manager",)

    def __init__(self, manager: FanoutManager) -> None:
        self.manager = manager

    def publish(self, event: Event, *,
                here_only: bool = False) -> Coroutine[Any, Any, None]:
        # The manager's emit coroutine itself, not one awaiting it (every message passes).
        envelope = envelope_of(event)
        if here_only:
            return self._here(event.name, envelope)
        return self.manager.emit(event.name, envelope, namespace=FANOUT)

    def publish_together(self, events: list[Event]) -> Coroutine[Any, Any, None]:
        """Publish events of one moment, in order: each member on this node gets their
        frames in one write (``FanoutManager.emit_together``)."""
        return self.manager.emit_together([(event.name, envelope_of(event))
                                           for event in events])

    async def _here(self, name: str, envelope: dict[str, Any]) -> None:
        self.manager.deliver(name, envelope)
