"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from backend.rest.api import Api, Call, ORJSONResponse
from backend.rest.openapi import build_document
from backend.storage.database import database_ready


def register(api: Api) -> None:
    @api.route("GET", "/healthz", summary="The process is up", auth="none", tags=("health",))
    async def healthz(call: Call) -> Any:
        return {"status": "ok"}

    @api.route("GET", "/readyz", summary="Database (and Redis, when configured) reachable",
               auth="none", tags=("health",))
    async def readyz(call: Call) -> Response:
        checks = {"database": await database_ready(), **call.request.app.state.realtime.health()}
        ready = all(checks.values())
        return ORJSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                              status_code=200 if ready else 503)

    @api.route("GET", "/openapi.json", summary="This document", auth="none", tags=("meta",))
    async def openapi(call: Call) -> Any:
        state = call.request.app.state
        return build_document(state.api, state.settings.api_title, state.version)
