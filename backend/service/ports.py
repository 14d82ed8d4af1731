"""What the chat service needs from the layers above it, declared here and implemented there.

The service publishes events and talks to the other nodes only through these interfaces; the
app (backend/app.py) hands it the real-time layer's implementations. Nothing in the service
imports a transport, the cluster or a door.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from backend.service.events import Event

#: A control's handler: run on every node with the control's data.
ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]


class EventSink(Protocol):
    """Where the service publishes events after commit; the real-time layer implements it."""

    async def publish(self, event: Event, *, here_only: bool = False) -> None:
        """Deliver ``event`` to its rooms on every node, or with ``here_only`` on this one."""
        ...


class ControlBus(Protocol):
    """Named controls that every node runs (this one included): how a change made on one node
    reaches the caches of the others."""

    def on_control(self, name: str, handler: ControlHandler) -> None:
        """Run ``handler`` whenever a node broadcasts the control ``name``."""
        ...

    async def broadcast(self, name: str, data: dict[str, Any]) -> None:
        """Run the control ``name`` with ``data`` on every node."""
        ...


class Occupancy(Protocol):
    """Who this node holds: lets the service skip work for rooms nobody here is in."""

    def occupied(self, room: str) -> bool:
        """Whether a connection of this node is in ``room``."""
        ...

