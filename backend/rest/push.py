"""Push subscriptions of the caller's devices, and per-conversation mutes (CONTRACT section
11; docs/push-and-webhooks.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.rest.api import Api, Call
from backend.rest.webhooks import outside

TAGS = ("push",)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PushKeys(_Body):
    p256dh: str = Field(min_length=1, max_length=255)
    auth: str = Field(min_length=1, max_length=255)


class SubscriptionBody(_Body):
    kind: Literal["webpush", "fcm"]
    endpoint: str | None = Field(default=None, max_length=2048)
    keys: PushKeys | None = None
    token: str | None = Field(default=None, min_length=1, max_length=4096)


class SubscriptionCreated(BaseModel):
    id: int
    kind: str


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    kind: str
    endpoint: str | None
    created_at: str | None


class PushConfigOut(BaseModel):
    #: The VAPID public key browsers pass as ``applicationServerKey`` (None: Web Push off).
    vapid_public_key: str | None
    webpush: bool
    fcm: bool


class MuteOut(BaseModel):
    conversation_id: int
    muted: bool


def register(api: Api) -> None:
    @api.route("GET", "/api/v1/push/config",
               summary="Which push services this server sends through, and its VAPID public "
                       "key", response=PushConfigOut, tags=TAGS)
    async def config(call: Call) -> Any:
        found = outside(call)
        key = found.webpush.public_key if found.webpush is not None else None
        return {"vapid_public_key": key, "webpush": key is not None,
                "fcm": found.fcm is not None}

    @api.route("POST", "/api/v1/push/subscriptions",
               summary="Subscribe a device: {kind: webpush, endpoint, keys: {p256dh, auth}} "
                       "or {kind: fcm, token}", body=SubscriptionBody,
               response=SubscriptionCreated, status=201, tags=TAGS)
    async def subscribe(call: Call) -> Any:
        body: SubscriptionBody = call.body
        return await outside(call).push.subscribe(
            call.actor, body.kind, endpoint=body.endpoint,
            keys=body.keys.model_dump() if body.keys is not None else None, token=body.token)

    @api.route("GET", "/api/v1/push/subscriptions", summary="The caller's subscribed devices",
               response=list[SubscriptionOut], tags=TAGS)
    async def subscriptions(call: Call) -> Any:
        return await outside(call).push.subscriptions(call.actor)

    @api.route("DELETE", "/api/v1/push/subscriptions/{subscription_id}",
               summary="Remove one of the caller's devices", tags=TAGS)
    async def unsubscribe(call: Call) -> Any:
        return await outside(call).push.unsubscribe(call.actor, call.path["subscription_id"])

    @api.route("POST", "/api/v1/chat/sessions/{conversation_id}/mute",
               summary="No push notifications from this conversation for the caller",
               response=MuteOut, tags=TAGS)
    async def mute(call: Call) -> Any:
        return await outside(call).push.mute(call.actor, call.path["conversation_id"], True)

    @api.route("DELETE", "/api/v1/chat/sessions/{conversation_id}/mute",
               summary="Push notifications from this conversation again", response=MuteOut,
               tags=TAGS)
    async def unmute(call: Call) -> Any:
        return await outside(call).push.mute(call.actor, call.path["conversation_id"], False)
