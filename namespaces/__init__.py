"""Socket.IO namespaces: one AsyncNamespace class per namespace, each a thin translator over
the chat service."""

from __future__ import annotations

from typing import Any

from backend.realtime.hub import Realtime
from namespaces.chat import ChatNamespace
from namespaces.conversations import ConversationsNamespace
from namespaces.mobile import MobileNamespace


def register_namespaces(realtime: Realtime, app: Any) -> None:
    """Register /chat, /mobile and /conversations on ``realtime.sio``."""
    for namespace in (ChatNamespace, MobileNamespace, ConversationsNamespace):
        realtime.sio.register_namespace(namespace(realtime, app))
