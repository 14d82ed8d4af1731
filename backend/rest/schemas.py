"""Request and response models of the chat REST families (CONTRACT section 3).

Request models validate shape only (types, required fields, id ranges); every rule about who may
do what, and the content limits (413), stay in the ChatService. Response models exist for the
OpenAPI document: they list the canonical fields and allow the extra ones each family carries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from backend.doors.ids import as_after_id, as_id, pydantic
from backend.service.drafts import MessageDraft
from backend.service.errors import MAX_ID
from backend.service.members import MAX_ADD_PER_CALL

# Ids are read as on every door (backend/doors/ids.py: an integer or a string of digits, 32-bit);
# the bounds are repeated for the OpenAPI document.
Id = Annotated[int, BeforeValidator(pydantic(as_id)), Field(gt=0, le=MAX_ID)]
#: A resume point: an id, or 0 for "from the first message" (a client that has seen nothing).
AfterId = Annotated[int, BeforeValidator(pydantic(as_after_id)), Field(ge=0, le=MAX_ID)]
Offset = Annotated[int, Field(ge=0, le=10**9)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- requests ------------------------------------------------------------------------------


class CreateSessionBody(_Body):
    title: str = Field(max_length=255)
    kind: Literal["support", "group", "direct"] = "support"
    subject: str = Field(default="", max_length=255)
    participant_ids: list[Id] | None = Field(default=None, max_length=100)
    assigned_agent_id: Id | None = None


class AddMembersBody(_Body):
    """Members to add to a group (CONTRACT section 10): at most 500 ids per call."""

    user_ids: list[Id] = Field(min_length=1, max_length=MAX_ADD_PER_CALL)
    role: Literal["member", "admin"] = "member"


class MarkReadBody(_Body):
    up_to_message_id: Id | None = None
    message_ids: list[Id] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _one_of(self) -> MarkReadBody:
        if self.up_to_message_id is not None and self.message_ids is not None:
            raise ValueError("give up_to_message_id or message_ids, not both")
        return self


class SendMessageBody(MessageDraft):
    """A message to send: ``content`` plus the optional fields of CONTRACT section 2."""


class ConversationMessageBody(SendMessageBody):
    """Seed 004's ``POST /api/chat/messages/``."""

    conversation_id: Id


class DeviceMessageBody(SendMessageBody):
    """Seed 000's ``send-message``: the device authenticates in the body (or the query)."""

    device_id: str | None = Field(default=None, max_length=128)


class EditMessageBody(_Body):
    content: str


class ReactionBody(_Body):
    emoji: str


class UserRefBody(_Body):
    user_id: Id


class ConnectionBody(_Body):
    user_id: Id


class DeviceStartBody(_Body):
    device_id: str | None = Field(default=None, max_length=128)
    subject: str = Field(default="", max_length=255)


# -- query strings -------------------------------------------------------------------------


class SessionListQuery(_Body):
    limit: int = Field(default=20, ge=1, le=100)
    offset: Offset = 0
    cursor: str | None = Field(default=None, max_length=200)
    status: Literal["active", "support_active", "marketing_active", "closed"] | None = None


class HistoryQuery(_Body):
    limit: int = Field(default=50, ge=1, le=200)
    offset: Offset = 0
    before_id: Id | None = None
    after_id: AfterId | None = None


class EventsQuery(_Body):
    """A resume from a position of the conversation's event log (CONTRACT §9)."""

    since: int = Field(ge=0, le=2**62)
    epoch: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=100, ge=1, le=1000)


class EventsOut(_Body):
    events: list[dict[str, Any]]
    has_more: bool
    position: int
    epoch: str


class SearchQuery(_Body):
    """Full-text search (CONTRACT section 11): the words of ``q``, all required, the last
    also as a prefix; dates are ISO 8601 (UTC when no offset is given)."""

    q: str = Field(min_length=1, max_length=200,
                   description="Free text: its words (letters and digits) must all match")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=200,
                               description="The previous page's next_cursor")
    conversation_id: Id | None = None
    sender_id: Id | None = Field(default=None, description="The sending user's id")
    after: datetime | None = Field(default=None, description="Sent at or after this moment")
    before: datetime | None = Field(default=None, description="Sent before this moment")
    has_file: bool | None = Field(default=None,
                                  description="true: only messages with a file; false: none")
    sort: Literal["rank", "newest"] = Field(
        default="rank", description="rank: best match first; newest: newest first")


class PageQuery(_Body):
    page: int = Field(default=1, ge=1, le=10**6)
    page_size: int = Field(default=50, ge=1, le=200)


class ConversationListQuery(_Body):
    limit: int = Field(default=50, ge=1, le=100)
    offset: Offset = 0
    cursor: str | None = Field(default=None, max_length=200)


class DeviceQuery(_Body):
    device_id: str | None = Field(default=None, max_length=128)


class DeviceListQuery(DeviceQuery):
    limit: int = Field(default=50, ge=1, le=100)
    offset: Offset = 0
    cursor: str | None = Field(default=None, max_length=200)


class UploadSessionBody(_Body):
    """A resumable upload to start: the file's name and its whole size in bytes."""

    name: str = Field(default="", max_length=1024)
    size: int = Field(gt=0, le=2**62)


class DownloadQuery(_Body):
    """A signed link's query (``url`` of an upload); without it, a bearer token is needed."""

    expires: str | None = Field(default=None, max_length=20)
    signature: str | None = Field(default=None, max_length=128)


# -- responses (documentation only) --------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class UserOut(_Out):
    id: int
    email: str
    username: str
    first_name: str
    last_name: str
    avatar_url: str
    role: str


class LastMessageOut(_Out):
    id: int
    content: str
    sender_type: str
    message_type: str
    created_at: str | None


class ConversationOut(_Out):
    id: int
    conversation_id: int
    kind: str
    title: str
    subject: str
    status: str
    priority: Any = None
    initiator_id: int | None
    assigned_agent_id: int | None
    device_id: str | None
    customer: dict[str, Any] | None
    participants_count: int
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    closed_at: str | None
    last_message: LastMessageOut | None
    total_messages: int
    unread_count: int


class ClosedOut(ConversationOut):
    success: bool
    message: str


class MessageOut(_Out):
    id: int
    conversation_id: int
    chat_session_id: int
    sender_type: str
    sender: dict[str, Any] | None
    sender_id: Any
    content: str
    message_type: str
    media_url: str
    file: dict[str, Any] | None
    parent_message_id: int | None
    reply_to_id: int | None
    mentions: list[Any]
    metadata: dict[str, Any]
    is_urgent: bool
    status: str
    is_edited: bool
    edited_at: str | None
    is_deleted: bool
    reactions: dict[str, list[Any]]
    read_by_count: int
    client_msg_id: str | None
    created_at: str | None


class SearchHitOut(_Out):
    message: MessageOut
    conversation_id: int
    snippet: str = Field(description="HTML: the text escaped, each match in <mark>...</mark>")
    rank: float = Field(description="Higher is a better match (within one search)")


class SearchOut(_Out):
    results: list[SearchHitOut]
    next_cursor: str | None


class ParticipantOut(_Out):
    id: int
    user_id: int
    conversation_id: int
    role: str
    joined_at: str | None
    is_active: bool
    last_read_message_id: int
    last_read_at: str | None


class ParticipantsOut(_Out):
    participants: list[ParticipantOut]


class MemberChangeOut(_Out):
    success: bool
    message: str
    conversation_id: int
    user_id: int


class MarkReadOut(_Out):
    success: bool
    message: str
    conversation_id: int
    message_ids: list[int]
    marked_count: int
    read_at: str | None
    timestamp: str | None


class ReactionOut(_Out):
    action: Literal["added", "removed"]
    message_id: int
    emoji: str
    reactions: dict[str, list[Any]]
    message: MessageOut


class BlockOut(_Out):
    success: bool
    message: str
    user_id: int


class ConnectionOut(_Out):
    id: int
    requester: UserOut
    addressee: UserOut
    requester_id: int
    addressee_id: int
    status: str
    created_at: str | None
    accepted_at: str | None
    conversation_id: int | None


class MessagePage(_Out):
    count: int
    next: str | None
    previous: str | None
    results: list[MessageOut]


class ConversationDetailOut(ConversationOut):
    messages: list[MessageOut]
    has_more: bool


class WsStatsOut(_Out):
    total_sessions: int
    total_connections: int
    average_users_per_session: float
    sessions: dict[str, Any]


class UploadOut(_Out):
    id: int
    name: str
    size: int
    type: str
    sha256: str
    state: str
    url: str
    thumbnail_url: str | None = None


class UploadSessionOut(_Out):
    id: int
    name: str
    size: int
    offset: int
    state: str
    chunk_max: int
    url: str
