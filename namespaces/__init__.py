"""Socket.IO namespaces: one AsyncNamespace class per namespace, each a thin translator over
the chat service."""

from __future__ import annotations

from typing import Any


def register_namespaces(realtime: Any, app: Any) -> None:
    """Register /chat, /mobile and /conversations on ``realtime.sio``."""
    from namespaces.chat import ChatNamespace
    from namespaces.conversations import ConversationsNamespace
    from namespaces.mobile import MobileNamespace

    for namespace in (ChatNamespace, MobileNamespace, ConversationsNamespace):
        realtime.sio.register_namespace(namespace(realtime, app))
