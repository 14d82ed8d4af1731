"""What a client may ask to send, validated once for every door."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backend.service.errors import MAX_ID, ChatError, invalid, too_large
from backend.settings import Limits

#: The longest ``client_msg_id`` a draft may carry.
_CLIENT_MSG_ID_MAX = 64


class FileInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Texts are strict: bytes (a Socket.IO binary attachment) are refused, not decoded.
    url: str = Field(max_length=2048, strict=True)
    name: str = Field(default="", max_length=255, strict=True)
    size: int = Field(default=0, ge=0)
    type: str = Field(default="", max_length=255, strict=True)


class MessageDraft(BaseModel):
    """A message as sent by a client, before it is stored."""

    model_config = ConfigDict(extra="ignore")

    #: Texts are strict: bytes (a Socket.IO binary attachment) are refused, not decoded.
    content: str = Field(default="", strict=True)
    message_type: Literal["text", "image", "file"] = "text"
    media_url: str = Field(default="", max_length=2048, strict=True)
    file: FileInfo | None = None
    #: An upload of the sender's (POST /api/v1/chat/uploads): the message then carries it as
    #: its ``file`` (and ``media_url``), with signed links (backend/service/uploads.py).
    upload_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    # ids are 32-bit integer columns: a larger one cannot exist and must not reach the database
    parent_message_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    reply_to_id: int | None = Field(default=None, gt=0, le=MAX_ID)
    mentions: list[int | str] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)
    is_urgent: bool = False
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=_CLIENT_MSG_ID_MAX,
                                      strict=True)

    @field_validator("media_url", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value


def reject_nul(value: Any) -> None:
    """Refuse text holding U+0000 anywhere in a decoded JSON value (keys included):
    PostgreSQL can store it neither in text nor in jsonb, so it is refused at every door,
    on every database alike, before anything reaches the service."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise invalid("Text must not contain NUL characters (\\u0000)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


@dataclass(slots=True)
class PlainDraft:
    """The common message, text and nothing else: what ``MessageDraft`` makes of a body whose
    only fields are a string ``content`` and perhaps a valid ASCII ``client_msg_id`` (others,
    a lone surrogate among them, are left to the model's rules), without pydantic's model
    (every send validates one, and the model costs more than the rest of the validation)."""

    content: str
    message_type: Literal["text"] = "text"
    media_url: str = ""
    file: None = None
    upload_id: None = None
    parent_message_id: None = None
    reply_to_id: None = None
    mentions: list[int | str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    is_urgent: bool = False
    client_msg_id: str | None = None


#: A validated draft: the model, or the plain text message it would have been.
Draft = MessageDraft | PlainDraft

#: The draft's fields besides ``content`` and ``client_msg_id``: a body naming none of them
#: is a plain message (other keys are ignored, as the model ignores them).
_NOT_PLAIN = frozenset(MessageDraft.model_fields) - {"content", "client_msg_id"}


def parse_draft(data: Any, limits: Limits) -> Draft:
    """Validate ``data``; raise ChatError with a message a client can act on."""
    if not isinstance(data, dict):
        raise invalid("Message must be a JSON object")
    content = data.get("content")
    client_msg_id = data.get("client_msg_id")
    if type(content) is str and _NOT_PLAIN.isdisjoint(data) and (
            client_msg_id is None or (type(client_msg_id) is str and client_msg_id.isascii()
                                      and 0 < len(client_msg_id) <= _CLIENT_MSG_ID_MAX)):
        # Nothing here the model could refuse or change; the content's checks are the same.
        check_content(content, limits)
        return PlainDraft(content, client_msg_id=client_msg_id)
    return model_draft(data, limits)


def model_draft(data: dict[str, Any], limits: Limits) -> MessageDraft:
    """``parse_draft`` through the model, whatever the body's shape."""
    try:
        draft = MessageDraft.model_validate(data)
    except ValidationError as exc:
        raise invalid(describe(exc)) from exc
    if draft.upload_id is not None and (draft.file is not None or draft.media_url):
        raise invalid("A message names a file by upload_id or by file/media_url, not both")
    check_content(draft.content, limits, allow_empty=draft.upload_id is not None or (
        draft.message_type != "text" and bool(draft.media_url or draft.file)))
    return draft


def check_content(content: str, limits: Limits, *, allow_empty: bool = False) -> str:
    if not allow_empty and not content.strip():
        raise ChatError("empty_content", "Message content cannot be empty", 422)
    if len(content) > limits.max_content_chars:
        raise too_large(f"Message content is longer than {limits.max_content_chars} characters")
    return content


def describe(exc: ValidationError) -> str:
    """One line naming each bad field, e.g. ``content: Input should be a valid string``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
