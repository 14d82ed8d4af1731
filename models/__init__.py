"""Tortoise ORM models: the data every door of the server shares.

The Tortoise app label is ``models``; migrations live in ``models/migrations``.
"""

from models.audit import AuditAction, ConversationAudit
from models.conversations import (
    Block,
    Connection,
    ConnectionStatus,
    Conversation,
    ConversationKind,
    ConversationStatus,
    Participant,
)
from models.events import ConversationEvent, EventLogEpoch
from models.messages import DeliveryStatus, Message, MessageStatus, Reaction, Receipt, SenderType
from models.people import AuthSession, Customer, MobileSession, Role, User
from models.uploads import Upload, UploadState

__all__ = [
    "AuditAction",
    "AuthSession",
    "Block",
    "Connection",
    "ConnectionStatus",
    "Conversation",
    "ConversationAudit",
    "ConversationEvent",
    "ConversationKind",
    "ConversationStatus",
    "Customer",
    "DeliveryStatus",
    "EventLogEpoch",
    "Message",
    "MessageStatus",
    "MobileSession",
    "Participant",
    "Reaction",
    "Receipt",
    "Role",
    "SenderType",
    "Upload",
    "UploadState",
    "User",
]

MODEL_MODULES = ["models.people", "models.conversations", "models.messages", "models.events",
                 "models.audit", "models.uploads"]
