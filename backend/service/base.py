"""State every part of the chat service shares."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from backend.service.events import EventSink
from backend.service.limits import TypingThrottle
from backend.settings import Limits

if TYPE_CHECKING:
    from backend.service.actors import Actor
    from models import Conversation


class ServiceBase:
    """Holds the event sink, the limits and the background publishes still running."""

    def __init__(self, sink: EventSink, limits: Limits) -> None:
        self.sink = sink
        self.limits = limits
        self.typing_throttle = TypingThrottle(limits.typing_interval_seconds)
        self.background: set[asyncio.Future[Any]] = set()
        self.log = logging.getLogger("confab.service")

    async def drain(self) -> None:
        """Wait for background publishes (used at shutdown and by tests)."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    # Implemented by ConversationOps; declared here so the other mixins can call them.
    async def _publish_conversation_updated(self, conversation: Conversation) -> None:
        raise NotImplementedError

    async def conversation_view(self, conversation: Conversation, viewer: Actor) -> dict[str, Any]:
        raise NotImplementedError
