"""``GET /metrics``: this node's Prometheus metrics (backend/observability/metrics.py).

Open by default, like ``/readyz``: scrapers usually reach nodes on an internal network. With
``METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from backend.doors.connections import bearer_token
from backend.rest.api import Api, Call, error_response
from backend.storage.database import database_ready


def register(api: Api) -> None:
    @api.route("GET", "/metrics", summary="Prometheus metrics of this node", auth="none",
               tags=("health",), response={"type": "string"})
    async def metrics(call: Call) -> Response:
        expected = call.settings.metrics_token
        if expected is not None:
            given = bearer_token(call.request.headers.get("authorization", "")) or ""
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return error_response(401, "A valid metrics token is required")
        state = call.request.app.state
        checks = {"database": await database_ready(), **state.realtime.health()}
        return Response(state.metrics.exposition(checks), media_type=CONTENT_TYPE_LATEST)
