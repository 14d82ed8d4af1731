"""The outside platforms' webhooks (CONTRACT section 6; docs/integrations.md).

Each POST checks the platform's secret or signature over the raw bytes first, then parses; only
then does anything reach the service. Answers: 404 when the platform is not configured here,
401 without the secret or signature header, 403 with a wrong one, 400 for a body that is not the
platform's payload, 413 past ``MAX_BODY_BYTES``, else 200, also for updates we skip (the
platforms redeliver anything else).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import PlainTextResponse

from backend.integrations import instagram, intake, telegram
from backend.rest.api import Api, Call
from backend.rest.bodies import capped_body
from backend.service.drafts import reject_nul
from backend.service.errors import ChatError, too_large

TAGS = ("integrations",)
TELEGRAM_PATH = "/api/v1/integrations/telegram/webhook"
INSTAGRAM_PATH = "/api/v1/integrations/instagram/webhook"


class WebhookResult(BaseModel):
    """What became of one platform message."""

    status: str  # created | duplicate | edited | ignored
    conversation_id: int | None = None
    message_id: int | None = None
    reason: str | None = None


class TelegramWebhookOut(WebhookResult):
    ok: bool


class InstagramWebhookOut(BaseModel):
    ok: bool
    results: list[WebhookResult]


def register(api: Api) -> None:
    @api.route("POST", TELEGRAM_PATH, summary="Telegram Bot API webhook (one Update)",
               response=TelegramWebhookOut, auth="none", tags=TAGS)
    async def telegram_webhook(call: Call) -> Any:
        config = call.settings.integrations
        telegram.check_secret(config, call.request.headers.get(telegram.SECRET_HEADER))
        parsed = telegram.parse_update(_json(await _raw_body(call)))
        if isinstance(parsed, str):
            return {"ok": True, **intake.Result("ignored", reason=parsed).as_dict()}
        return {"ok": True, **(await intake.receive(call.chat, parsed)).as_dict()}

    @api.route("GET", INSTAGRAM_PATH, summary="Instagram webhook verification (Meta's challenge)",
               query=instagram.VerifyQuery, auth="none", tags=TAGS)
    async def instagram_verify(call: Call) -> Any:
        challenge = instagram.verify_subscription(call.settings.integrations, call.query)
        return PlainTextResponse(challenge)

    @api.route("POST", INSTAGRAM_PATH, summary="Instagram messaging webhook (signed events)",
               response=InstagramWebhookOut, auth="none", tags=TAGS)
    async def instagram_webhook(call: Call) -> Any:
        raw = await _raw_body(call)
        instagram.check_signature(call.settings.integrations,
                                  call.request.headers.get(instagram.SIGNATURE_HEADER), raw)
        results = []
        for event in instagram.parse_events(_json(raw)):
            if isinstance(event, str):
                results.append(intake.Result("ignored", reason=event))
            else:
                results.append(await intake.receive(call.chat, event))
        return {"ok": True, "results": [r.as_dict() for r in results]}

    # The registry documents a request body only for operations it parses itself; these parse
    # after the signature check, so their POST entries are written out here.
    api.document(TELEGRAM_PATH, {"post": _post_doc(
        "telegram_webhook", "Telegram Bot API webhook (one Update)", telegram.TelegramUpdate,
        TelegramWebhookOut, telegram.SECRET_HEADER,
        "The secret given to setWebhook as secret_token (TELEGRAM_WEBHOOK_SECRET).")})
    api.document(INSTAGRAM_PATH, {"post": _post_doc(
        "instagram_webhook", "Instagram messaging webhook (signed events)",
        instagram.InstagramWebhook, InstagramWebhookOut, instagram.SIGNATURE_HEADER,
        "sha256=<hex HMAC-SHA256 of the raw body under INSTAGRAM_APP_SECRET>.")})


async def _raw_body(call: Call) -> bytes:
    limit = call.settings.limits.max_body_bytes
    raw = await capped_body(call.request, limit)
    if raw is None:
        raise too_large(f"Request body is larger than {limit} bytes")
    return raw


def _json(raw: bytes) -> Any:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ChatError("bad_update", "Invalid JSON format", 400) from None
    if not isinstance(body, dict):
        raise ChatError("bad_update", "Request body must be a JSON object", 400)
    try:
        reject_nul(body)
    except ChatError as error:
        raise ChatError("bad_update", error.message, 400) from None
    return body


def _post_doc(name: str, summary: str, body: type[BaseModel], response: type[BaseModel],
              header: str, header_doc: str) -> dict[str, Any]:
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "summary": summary,
        "operationId": f"post_{name}",
        "tags": list(TAGS),
        "parameters": [{"name": header, "in": "header", "required": True,
                        "schema": {"type": "string"}, "description": header_doc}],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _inline(body)}}},
        "responses": {
            "200": {"description": "Taken (stored, duplicate, edited or skipped)",
                    "content": {"application/json": {"schema": _inline(response)}}},
            "default": error,
        },
    }


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` substituted in place (no components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**walk(defs[ref.removeprefix("#/$defs/")]), **walk(rest)}
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined
