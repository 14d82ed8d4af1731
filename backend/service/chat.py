"""ChatService: the one object every door calls."""

from __future__ import annotations

from backend.service.conversations import ConversationOps
from backend.service.desk import DeskOps
from backend.service.members import MemberOps
from backend.service.messages import MessageOps
from backend.service.search import SearchOps
from backend.service.social import SocialOps


class ChatService(DeskOps, ConversationOps, MemberOps, SearchOps, MessageOps, SocialOps):
    """Every chat operation. Construct with an EventSink and the configured Limits."""
