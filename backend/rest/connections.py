"""Seed 004's ``/api/chat/...`` family: conversations, messages and connections (DRF style,
trailing slashes kept). Same semantics as the v1 family; history is page-number paginated."""

from __future__ import annotations

from typing import Any

from backend.rest.api import Api, Call, error_response
from backend.rest.schemas import (
    ConnectionBody,
    ConnectionOut,
    ConversationListQuery,
    ConversationMessageBody,
    ConversationOut,
    MarkReadBody,
    MarkReadOut,
    MessageOut,
    MessagePage,
    PageQuery,
)
from backend.rest.sessions import conversations_page, draft_of, sent_response

TAGS = ("connection chat",)


def register(api: Api) -> None:
    @api.route("GET", "/api/chat/conversations/",
               summary="The caller's conversations, newest activity first",
               query=ConversationListQuery, response=list[ConversationOut], tags=TAGS)
    async def list_conversations(call: Call) -> Any:
        items, next_cursor = await call.chat.list_conversations(
            call.actor, limit=call.query.limit, offset=call.query.offset,
            cursor=call.query.cursor)
        return conversations_page(items, next_cursor)

    @api.route("GET", "/api/chat/conversations/{conversation_id}/", summary="One conversation",
               response=ConversationOut, tags=TAGS)
    async def get_conversation(call: Call) -> Any:
        return await call.chat.get_conversation(call.actor, call.path["conversation_id"])

    @api.route("GET", "/api/chat/conversations/{conversation_id}/messages/",
               summary="History, oldest first, page-number pagination {count, next, previous, "
                       "results}",
               query=PageQuery, response=MessagePage, tags=TAGS)
    async def messages(call: Call) -> Any:
        q: PageQuery = call.query
        conversation_id = call.path["conversation_id"]
        conversation = await call.chat.get_conversation(call.actor, conversation_id)
        items, has_more = await call.chat.history(
            call.actor, conversation_id, limit=q.page_size, offset=(q.page - 1) * q.page_size
        )
        if q.page > 1 and not items:
            return error_response(404, "Invalid page.", code="not_found")
        url = call.request.url
        return {
            "count": conversation["total_messages"],
            "next": str(url.include_query_params(page=q.page + 1)) if has_more else None,
            "previous": (
                None if q.page == 1
                else str(url.remove_query_params("page")) if q.page == 2
                else str(url.include_query_params(page=q.page - 1))
            ),
            "results": items,
        }

    @api.route("POST", "/api/chat/conversations/{conversation_id}/mark_read/",
               summary="Mark messages read (optional {message_ids} or {up_to_message_id})",
               body=MarkReadBody, response=MarkReadOut, tags=TAGS)
    async def mark_read(call: Call) -> Any:
        body: MarkReadBody = call.body
        return await call.chat.mark_read(
            call.actor, call.path["conversation_id"],
            up_to_message_id=body.up_to_message_id, message_ids=body.message_ids,
        )

    @api.route("POST", "/api/chat/messages/", summary="Send a message (HTTP fallback)",
               body=ConversationMessageBody, response=MessageOut, status=201, tags=TAGS)
    async def send(call: Call) -> Any:
        body: ConversationMessageBody = call.body
        message, created = await call.chat.send_message(
            call.actor, body.conversation_id, draft_of(body, "conversation_id")
        )
        return sent_response(message, created)

    @api.route("GET", "/api/chat/messages/{message_id}/", summary="One message",
               response=MessageOut, tags=TAGS)
    async def get_message(call: Call) -> Any:
        return await call.chat.get_message(call.actor, call.path["message_id"])

    @api.route("POST", "/api/chat/connections/", summary="Ask another user for a connection",
               body=ConnectionBody, response=ConnectionOut, status=201, tags=TAGS)
    async def request_connection(call: Call) -> Any:
        return await call.chat.request_connection(call.actor, call.body.user_id)

    @api.route("POST", "/api/chat/connections/{connection_id}/accept/",
               summary="Accept a connection (the addressee); the direct conversation appears",
               response=ConnectionOut, tags=TAGS)
    async def accept_connection(call: Call) -> Any:
        return await call.chat.accept_connection(call.actor, call.path["connection_id"])

    @api.route("GET", "/api/chat/connections/", summary="The caller's connections",
               response=list[ConnectionOut], tags=TAGS)
    async def list_connections(call: Call) -> Any:
        return await call.chat.list_connections(call.actor)
