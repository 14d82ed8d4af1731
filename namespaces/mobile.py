"""``/mobile``: an anonymous device's sockets in its own support conversations (seed 000).

The same client events and acks as ``/chat``; the server events are in seed 000's vocabulary
(``mobile_user_joined`` / ``mobile_user_left`` for devices). Auth is ``{device_id}``.
"""

from __future__ import annotations

from typing import Any

from backend.auth.accounts import device_actor
from backend.doors.connections import credential
from backend.realtime.dialects import MOBILE
from backend.service.actors import Actor
from namespaces.chat import ChatNamespace


class MobileNamespace(ChatNamespace):
    dialect = MOBILE

    async def authenticate(self, credentials: dict[str, Any], environ: dict[str, Any]) -> Actor:
        return await device_actor(credential(credentials, "device_id"))
