"""Seed 000's ``/mobile/chat/...`` family: anonymous devices, authenticated by ``device_id`` in
the body or the query string (missing: 401; unknown or inactive: 401)."""

from __future__ import annotations

from typing import Any

from backend.auth.accounts import device_actor
from backend.rest.api import Api, Call
from backend.rest.schemas import (
    ConversationDetailOut,
    ConversationOut,
    DeviceListQuery,
    DeviceMessageBody,
    DeviceQuery,
    DeviceStartBody,
    MessageOut,
)
from backend.rest.sessions import conversations_page, draft_of, sent_response
from backend.service.actors import Actor

TAGS = ("mobile",)
RECENT_MESSAGES = 50


async def _device(call: Call) -> Actor:
    """The device named in the body, else in the query string."""
    device_id = getattr(call.body, "device_id", None) or call.request.query_params.get(
        "device_id"
    )
    return await device_actor(device_id)


def register(api: Api) -> None:
    @api.route("POST", "/mobile/chat/start/", summary="Start a support conversation",
               body=DeviceStartBody, response=ConversationOut, status=201, auth="none",
               tags=TAGS)
    async def start(call: Call) -> Any:
        actor = await _device(call)
        assert actor.device is not None
        return await call.chat.start_device_conversation(actor.device, call.body.subject)

    @api.route("GET", "/mobile/chat/list/", summary="The device's conversations",
               query=DeviceListQuery, response=list[ConversationOut], auth="none", tags=TAGS)
    async def list_conversations(call: Call) -> Any:
        actor = await _device(call)
        items, next_cursor = await call.chat.list_conversations(
            actor, limit=call.query.limit, offset=call.query.offset, cursor=call.query.cursor)
        return conversations_page(items, next_cursor)

    @api.route("GET", "/mobile/chat/{conversation_id}/detail/",
               summary="A conversation with its latest messages (oldest first)",
               query=DeviceQuery, response=ConversationDetailOut, auth="none", tags=TAGS)
    async def detail(call: Call) -> Any:
        actor = await _device(call)
        conversation_id = call.path["conversation_id"]
        conversation = await call.chat.get_conversation(actor, conversation_id)
        messages, has_more = await call.chat.history(
            actor, conversation_id, limit=RECENT_MESSAGES, latest=True
        )
        return {**conversation, "messages": messages, "has_more": has_more}

    @api.route("POST", "/mobile/chat/{conversation_id}/send-message/",
               summary="Send a message (HTTP fallback of the WebSocket)",
               body=DeviceMessageBody, response=MessageOut, status=201, auth="none", tags=TAGS)
    async def send(call: Call) -> Any:
        actor = await _device(call)
        message, created = await call.chat.send_message(
            actor, call.path["conversation_id"], draft_of(call.body, "device_id")
        )
        return sent_response(message, created)
