"""The raw WebSocket routes of the seeds."""

from __future__ import annotations

from starlette.routing import BaseRoute


def websocket_routes() -> list[BaseRoute]:
    return []
