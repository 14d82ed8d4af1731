"""ChatService: the one object every door calls."""

from __future__ import annotations

from backend.service.conversations import ConversationOps
from backend.service.messages import MessageOps
from backend.service.resume import LogOps
from backend.service.social import SocialOps


class ChatService(ConversationOps, MessageOps, SocialOps, LogOps):
    """Every chat operation. Construct with an EventSink and the configured Limits."""
