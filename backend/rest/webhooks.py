"""Outgoing webhooks' endpoints (admins) and the outbox's deliveries (staff), CONTRACT
section 11; docs/push-and-webhooks.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.integrations import outbox
from backend.integrations.outside import Outside
from backend.rest.api import Api, Call
from backend.rest.schemas import Id
from backend.service import access
from models import OutboxKind, OutboxStatus

TAGS = ("webhooks",)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EndpointBody(_Body):
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(min_length=1, max_length=50)
    secret: str | None = Field(default=None, min_length=16, max_length=128)


class EndpointOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    url: str
    events: list[str]
    created_at: str | None = None


class CreatedEndpointOut(EndpointOut):
    secret: str


class DeliveriesQuery(_Body):
    kind: Literal["webhook", "webpush", "fcm"] | None = None
    status: Literal["pending", "done", "dead"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    before_id: Id | None = None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    kind: str
    target_id: int
    event_id: str
    event: str
    status: str
    attempts: int
    last_error: str
    next_attempt_at: str | None
    created_at: str | None
    finished_at: str | None


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut]
    counts: dict[str, int]


def outside(call: Call) -> Outside:
    """The node's deliveries to the outside (backend/integrations/outside.py)."""
    found: Outside = call.request.app.state.outside
    return found


def register(api: Api) -> None:
    @api.route("POST", "/api/v1/webhooks/endpoints",
               summary="Register a webhook endpoint (admins): {url, events, secret?}; the "
                       "answer holds the signing secret",
               body=EndpointBody, response=CreatedEndpointOut, status=201, tags=TAGS)
    async def create_endpoint(call: Call) -> Any:
        body: EndpointBody = call.body
        return await outside(call).webhooks.create(call.actor, body.url, body.events,
                                                   body.secret)

    @api.route("GET", "/api/v1/webhooks/endpoints", summary="The webhook endpoints (admins)",
               response=list[EndpointOut], tags=TAGS)
    async def list_endpoints(call: Call) -> Any:
        return await outside(call).webhooks.endpoints(call.actor)

    @api.route("DELETE", "/api/v1/webhooks/endpoints/{endpoint_id}",
               summary="Remove a webhook endpoint (admins)", tags=TAGS)
    async def delete_endpoint(call: Call) -> Any:
        return await outside(call).webhooks.delete(call.actor, call.path["endpoint_id"])

    @api.route("GET", "/api/v1/deliveries",
               summary="Deliveries to the outside (webhooks, push), newest first, with the "
                       "count of each status; status=dead lists the dead letters (staff)",
               query=DeliveriesQuery, response=DeliveriesOut, tags=TAGS)
    async def deliveries(call: Call) -> Any:
        await access.ensure_staff(call.actor, "read the deliveries")
        q: DeliveriesQuery = call.query
        return await outbox.listing(
            kind=OutboxKind(q.kind) if q.kind else None,
            status=OutboxStatus(q.status) if q.status else None,
            limit=q.limit, before_id=q.before_id)
