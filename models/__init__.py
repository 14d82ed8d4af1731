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
from models.hooks import WebhookEndpoint
from models.messages import DeliveryStatus, Message, MessageStatus, Reaction, Receipt, SenderType
from models.outbox import OutboxItem, OutboxKind, OutboxStatus
from models.people import AuthSession, Customer, MobileSession, Role, User
from models.push import ConversationMute, PushKind, PushSubscription
from models.uploads import Upload, UploadState
from models.user_facts import UserFacts

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
    "ConversationMute",
    "ConversationStatus",
    "Customer",
    "DeliveryStatus",
    "EventLogEpoch",
    "Message",
    "MessageStatus",
    "MobileSession",
    "OutboxItem",
    "OutboxKind",
    "OutboxStatus",
    "Participant",
    "PushKind",
    "PushSubscription",
    "Reaction",
    "Receipt",
    "Role",
    "SenderType",
    "Upload",
    "UploadState",
    "User",
    "UserFacts",
    "WebhookEndpoint",
]

MODEL_MODULES = ["models.people", "models.conversations", "models.messages", "models.events",
                 "models.audit", "models.uploads", "models.hooks", "models.outbox",
                 "models.push"]
