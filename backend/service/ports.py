"""What the chat service needs from the layers above it, declared here and implemented there.

The service publishes events and talks to the other nodes only through these interfaces; the
app (backend/app.py) hands it the real-time layer's implementations. Nothing in the service
imports a transport, the cluster or a door.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Protocol

from backend.service.events import Event
from backend.storage.stored import StoredFile

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

    def any_occupied(self, rooms: tuple[str, ...]) -> bool:
        """Whether a connection of this node is in any of ``rooms`` (one call for the
        inbox rooms of a conversation, asked at every send)."""
        ...



class FileStore(Protocol):
    """Where uploaded files' bytes are kept (backend/storage/files_local.py, files_s3.py).
    Keys are made by the service (``files/…``, ``parts/…``): never a client's text."""

    async def put(self, key: str, source: BinaryIO, content_type: str) -> None:
        """Store the whole of ``source`` (from its start) under ``key``. ``source`` may be
        closed afterwards (boto3's transfers close it)."""
        ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``."""
        ...

    async def copy_into(self, key: str, target: BinaryIO) -> None:
        """Write the object ``key`` at ``target``'s position (assembling chunks)."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete the objects ``keys``; a missing one is no error."""
        ...

    def serve(self, key: str, *, name: str, content_type: str, seconds: int) -> StoredFile:
        """How to hand the object ``key`` to a client who may have it for ``seconds``."""
        ...
