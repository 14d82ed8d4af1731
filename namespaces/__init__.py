"""Socket.IO namespaces: one AsyncNamespace class per namespace, each a thin translator over
the chat service."""

from __future__ import annotations

from typing import Any


def register_namespaces(realtime: Any, app: Any) -> None:
    """Register /chat, /mobile and /conversations on ``realtime.sio``."""
    return None
