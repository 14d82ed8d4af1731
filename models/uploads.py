"""Uploaded files: who sent them, what they hold, where they are kept, what names them."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.conversations import Conversation
    from models.messages import Message


class UploadState(StrEnum):
    """Where an upload stands. RECEIVING: a resumable upload still taking chunks; READY:
    stored, its uploader's alone; ATTACHED: named by a message, seen by whoever sees its
    conversation; DELETED: its message was deleted, every link to it is refused."""

    RECEIVING = "receiving"
    READY = "ready"
    ATTACHED = "attached"
    DELETED = "deleted"


class Upload(Model):
    """One uploaded file. Its bytes live in the configured storage under ``storage_key``."""

    id = fields.IntField(primary_key=True)
    #: ``Actor.key`` of the uploader: the only one who may see or attach it until attached.
    owner_key = fields.CharField(max_length=160)
    name = fields.CharField(max_length=255)
    #: The file's size (announced, for a resumable upload still receiving).
    size = fields.BigIntField()
    #: Bytes received so far of a resumable upload.
    received = fields.BigIntField(default=0)
    #: Told by the file's first bytes, never taken from the client.
    content_type = fields.CharField(max_length=255, default="")
    sha256 = fields.CharField(max_length=64, default="")
    state = fields.CharEnumField(UploadState, max_length=16)
    storage_key = fields.CharField(max_length=255, default="")
    thumbnail_key = fields.CharField(max_length=255, null=True)
    #: Storage keys of a resumable upload's chunks, in order.
    parts: fields.Field[list[Any]] = fields.JSONField(default=list)
    conversation: fields.ForeignKeyNullableRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="uploads", null=True, on_delete=fields.CASCADE)
    conversation_id: int | None
    message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="uploads", null=True, on_delete=fields.CASCADE)
    message_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "uploads"
