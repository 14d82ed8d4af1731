"""Seed 003's ``/api/v1/chat/...`` family, the main REST API (CONTRACT section 3).

A "session" is a conversation. Every handler validates the request's shape (schemas.py) and calls
the ChatService; access rules, limits and live events are the service's.
"""

from __future__ import annotations

from typing import Any

from backend.rest.api import Api, Call, ORJSONResponse
from backend.rest.schemas import (
    AddMembersBody,
    BlockOut,
    ClosedOut,
    ConversationOut,
    CreateSessionBody,
    EditMessageBody,
    EventsOut,
    EventsQuery,
    HistoryQuery,
    MarkReadBody,
    MarkReadOut,
    MemberChangeOut,
    MessageOut,
    ParticipantOut,
    ParticipantsOut,
    ReactionBody,
    ReactionOut,
    SearchOut,
    SearchQuery,
    SendMessageBody,
    SessionListQuery,
    UserRefBody,
    WsStatsOut,
)
from backend.service.search import SearchFilters, SearchOrder

TAGS = ("chat",)


def conversations_page(items: list[dict[str, Any]], next_cursor: str | None) -> ORJSONResponse:
    """A page of conversations, a bare array as every family's lists are, and where the next
    one starts in headers: ``X-Has-More: true|false`` and, when more lie beyond,
    ``X-Next-Cursor`` (the ``cursor`` query of the next call)."""
    headers = {"X-Has-More": "true" if next_cursor else "false"}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return ORJSONResponse(items, headers=headers)


def sent_response(message: dict[str, Any], created: bool) -> ORJSONResponse:
    """201 with the message; a ``client_msg_id`` retry replays the first message's 201 and says
    so in ``Idempotent-Replayed``."""
    headers = None if created else {"Idempotent-Replayed": "true"}
    return ORJSONResponse(message, status_code=201, headers=headers)


def draft_of(body: Any, *drop: str) -> dict[str, Any]:
    """The message fields of a send body, for ``ChatService.send_message`` to validate."""
    fields: dict[str, Any] = body.model_dump(exclude_unset=True, exclude=set(drop))
    return fields


WS_DOC: dict[str, Any] = {
    "get": {
        "summary": "Chat WebSocket: /api/v1/chat/ws/{session_id}?token=",
        "description": (
            "Not a REST route. Open a WebSocket to `/api/v1/chat/ws/{session_id}?token=JWT`. "
            "Frames are JSON with `message_type`: send `text` `{message_type, content}`, "
            "`file` `{message_type, content, file_url, file_name?, file_size?}` (or "
            "`upload_id` instead of `file_url`), "
            "`typing` `{message_type, is_typing}`; receive `message`, `typing_indicator`, "
            "`user_joined`, `user_left`, `error`, each with `metadata`. Refused connections "
            "(missing or invalid token, not a participant, unknown session) close with 1008, a "
            "server fault with 1011."
        ),
        "operationId": "websocket_chat_session",
        "tags": list(TAGS),
        "parameters": [
            {"name": "session_id", "in": "path", "required": True,
             "schema": {"type": "integer"},
             "description": "Used as /api/v1/chat/ws/{session_id}"},
            {"name": "token", "in": "query", "required": True, "schema": {"type": "string"},
             "description": "An access token"},
        ],
        "responses": {"101": {"description": "Switching protocols (WebSocket)"}},
    }
}


def register(api: Api) -> None:
    api.document("/api/v1/chat/ws", WS_DOC)

    # -- sessions -------------------------------------------------------------------------

    @api.route("POST", "/api/v1/chat/sessions", summary="Create a chat session",
               body=CreateSessionBody, response=ConversationOut, status=201, tags=TAGS)
    async def create_session(call: Call) -> Any:
        body: CreateSessionBody = call.body
        return await call.chat.create_conversation(
            call.actor, title=body.title, kind=body.kind, subject=body.subject,
            participant_ids=body.participant_ids, assigned_agent_id=body.assigned_agent_id,
        )

    @api.route("GET", "/api/v1/chat/sessions",
               summary="The caller's sessions, newest activity first (next page cursor in the "
                       "X-Next-Cursor header)",
               query=SessionListQuery, response=list[ConversationOut], tags=TAGS)
    async def list_sessions(call: Call) -> Any:
        q: SessionListQuery = call.query
        items, next_cursor = await call.chat.list_conversations(
            call.actor, limit=q.limit, offset=q.offset, cursor=q.cursor, status=q.status
        )
        return conversations_page(items, next_cursor)

    @api.route("GET", "/api/v1/chat/sessions/{session_id}", summary="One session",
               response=ConversationOut, tags=TAGS)
    async def get_session(call: Call) -> Any:
        return await call.chat.get_conversation(call.actor, call.path["session_id"])

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/close", summary="Close a session",
               response=ClosedOut, tags=TAGS)
    async def close_session(call: Call) -> Any:
        session = await call.chat.close_conversation(call.actor, call.path["session_id"])
        return {**session, "success": True, "message": "Session closed", "session": session}

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/mark-read",
               summary="Mark messages read: up to an id, a list of ids, or (empty body) all",
               body=MarkReadBody, response=MarkReadOut, tags=TAGS)
    async def mark_read(call: Call) -> Any:
        body: MarkReadBody = call.body
        return await call.chat.mark_read(
            call.actor, call.path["session_id"],
            up_to_message_id=body.up_to_message_id, message_ids=body.message_ids,
        )

    @api.route("GET", "/api/v1/chat/sessions/{session_id}/messages",
               summary="History, oldest first: limit+offset, or before_id / after_id "
                       "(X-Has-More header tells whether more lie beyond the page)",
               query=HistoryQuery, response=list[MessageOut], tags=TAGS)
    async def history(call: Call) -> Any:
        q: HistoryQuery = call.query
        items, has_more = await call.chat.history(
            call.actor, call.path["session_id"], limit=q.limit, offset=q.offset,
            before_id=q.before_id, after_id=q.after_id,
        )
        return ORJSONResponse(items, headers={"X-Has-More": "true" if has_more else "false"})

    @api.route("GET", "/api/v1/chat/sessions/{session_id}/events",
               summary="Events after a position of the session's log (resume); 410 "
                       "resync_required past the retention or across an epoch",
               query=EventsQuery, response=EventsOut, tags=TAGS)
    async def events(call: Call) -> Any:
        q: EventsQuery = call.query
        return await call.chat.events_since(call.actor, call.path["session_id"], q.since,
                                            q.epoch, limit=q.limit)

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/messages",
               summary="Send a message over HTTP; delivered live to every socket of the session",
               body=SendMessageBody, response=MessageOut, status=201, tags=TAGS)
    async def send(call: Call) -> Any:
        message, created = await call.chat.send_message(
            call.actor, call.path["session_id"], draft_of(call.body)
        )
        return sent_response(message, created)

    @api.route("GET", "/api/v1/chat/sessions/{session_id}/participants",
               summary="Participants with role, joined_at, is_active, last_read_at",
               response=list[ParticipantOut], tags=TAGS)
    async def participants(call: Call) -> Any:
        return await call.chat.participants(call.actor, call.path["session_id"])

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/participants",
               summary="Add members to a group (its owner: members and admins; an admin: "
                       "members): at most 500 ids per call; users already members are left "
                       "as they are. Returns the rows of every user named",
               body=AddMembersBody, response=ParticipantsOut, tags=TAGS)
    async def add_members(call: Call) -> Any:
        body: AddMembersBody = call.body
        participants = await call.chat.add_members(call.actor, call.path["session_id"],
                                                   body.user_ids, body.role)
        return {"participants": participants}

    @api.route("DELETE", "/api/v1/chat/sessions/{session_id}/participants/{user_id}",
               summary="Remove a member from a group (its owner: admins and members; an "
                       "admin: members); their live sockets leave the session at once",
               response=MemberChangeOut, tags=TAGS)
    async def remove_member(call: Call) -> Any:
        return await call.chat.remove_member(call.actor, call.path["session_id"],
                                             call.path["user_id"])

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/leave",
               summary="Leave a group (an owner hands it to the longest-standing admin, "
                       "else member)", response=MemberChangeOut, tags=TAGS)
    async def leave(call: Call) -> Any:
        return await call.chat.leave_conversation(call.actor, call.path["session_id"])

    # -- messages -------------------------------------------------------------------------

    @api.route("PATCH", "/api/v1/chat/messages/{message_id}", summary="Edit a message (sender)",
               body=EditMessageBody, response=MessageOut, tags=TAGS)
    async def edit_message(call: Call) -> Any:
        return await call.chat.edit_message(call.actor, call.path["message_id"],
                                            call.body.content)

    @api.route("DELETE", "/api/v1/chat/messages/{message_id}",
               summary="Delete a message (sender or admin)", response=MessageOut, tags=TAGS)
    async def delete_message(call: Call) -> Any:
        return await call.chat.delete_message(call.actor, call.path["message_id"])

    @api.route("POST", "/api/v1/chat/messages/{message_id}/reactions",
               summary="Toggle a reaction", body=ReactionBody, response=ReactionOut, tags=TAGS)
    async def react(call: Call) -> Any:
        return await call.chat.toggle_reaction(call.actor, call.path["message_id"],
                                               call.body.emoji)

    @api.route("GET", "/api/v1/chat/search",
               summary="Full-text search of the messages the caller may read: ranked hits "
                       "with highlighted snippets, filters and a cursor",
               query=SearchQuery, response=SearchOut, tags=TAGS)
    async def search(call: Call) -> Any:
        q: SearchQuery = call.query
        filters = SearchFilters(conversation_id=q.conversation_id, sender_id=q.sender_id,
                                after=q.after, before=q.before, has_file=q.has_file)
        return await call.chat.search(call.actor, q.q, filters=filters,
                                      order=SearchOrder(q.sort), limit=q.limit,
                                      cursor=q.cursor)

    # -- blocks and stats -----------------------------------------------------------------

    @api.route("POST", "/api/v1/chat/block", summary="Block a user", body=UserRefBody,
               response=BlockOut, tags=TAGS)
    async def block(call: Call) -> Any:
        return await call.chat.block(call.actor, call.body.user_id)

    @api.route("POST", "/api/v1/chat/unblock", summary="Unblock a user", body=UserRefBody,
               response=BlockOut, tags=TAGS)
    async def unblock(call: Call) -> Any:
        return await call.chat.unblock(call.actor, call.body.user_id)

    @api.route("GET", "/api/v1/chat/ws-stats",
               summary="WebSocket figures for the whole cluster (any valid user token)",
               response=WsStatsOut, tags=TAGS)
    async def ws_stats(call: Call) -> Any:
        return await call.request.app.state.realtime.stats()
