"""The support desk's REST routes (CONTRACT section 10): assign, status, reopen, edit, the
queue and the audit trail. Each validates the shape (desk_schemas.py) and calls the
ChatService, whose rules, events and audit entries they are."""

from __future__ import annotations

from typing import Any

from backend.rest.api import Api, Call, ORJSONResponse
from backend.rest.desk_schemas import (
    AssignBody,
    AuditEntryOut,
    AuditQuery,
    PatchSessionBody,
    QueueQuery,
    StatusBody,
)
from backend.rest.schemas import ConversationOut

TAGS = ("desk",)


def register(api: Api) -> None:
    @api.route("POST", "/api/v1/chat/sessions/{session_id}/assign",
               summary="Assign a support session to an agent or admin (agent_id), or unassign "
                       "it (agent_id null); staff only",
               body=AssignBody, response=ConversationOut, tags=TAGS)
    async def assign(call: Call) -> Any:
        body: AssignBody = call.body
        return await call.chat.assign_conversation(call.actor, call.path["session_id"],
                                                   body.agent_id)

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/status",
               summary="Set a support session's status (active, support_active, "
                       "marketing_active, closed); staff only",
               body=StatusBody, response=ConversationOut, tags=TAGS)
    async def status(call: Call) -> Any:
        body: StatusBody = call.body
        return await call.chat.set_conversation_status(call.actor, call.path["session_id"],
                                                       body.status)

    @api.route("POST", "/api/v1/chat/sessions/{session_id}/reopen",
               summary="Reopen a closed session as active (staff; a group's owner)",
               response=ConversationOut, tags=TAGS)
    async def reopen(call: Call) -> Any:
        return await call.chat.reopen_conversation(call.actor, call.path["session_id"])

    @api.route("PATCH", "/api/v1/chat/sessions/{session_id}",
               summary="Edit a session's title and/or priority (staff for support sessions; "
                       "a group's owner or admin for its title)",
               body=PatchSessionBody, response=ConversationOut, tags=TAGS)
    async def edit(call: Call) -> Any:
        body: PatchSessionBody = call.body
        return await call.chat.update_conversation(call.actor, call.path["session_id"],
                                                   title=body.title, priority=body.priority)

    @api.route("GET", "/api/v1/chat/queue",
               summary="Open support sessions with no agent, highest priority then oldest "
                       "first (next page cursor in the X-Next-Cursor header); staff only",
               query=QueueQuery, response=list[ConversationOut], tags=TAGS)
    async def queue(call: Call) -> Any:
        q: QueueQuery = call.query
        items, next_cursor = await call.chat.desk_queue(call.actor, limit=q.limit,
                                                        cursor=q.cursor)
        headers = {"X-Next-Cursor": next_cursor} if next_cursor else None
        return ORJSONResponse(items, headers=headers)

    @api.route("GET", "/api/v1/chat/sessions/{session_id}/audit",
               summary="Who changed the session's assignment, status, priority or title, "
                       "oldest first (after_id pages on); staff only",
               query=AuditQuery, response=list[AuditEntryOut], tags=TAGS)
    async def audit(call: Call) -> Any:
        q: AuditQuery = call.query
        return await call.chat.audit_trail(call.actor, call.path["session_id"], limit=q.limit,
                                           after_id=q.after_id)
