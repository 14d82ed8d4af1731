"""The application factory: settings, database, chat service, real-time layer, routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from backend.dashboard.routes import dashboard_routes
from backend.database import close_database, open_database
from backend.integrations.outbound import OutboundSender
from backend.raw.routes import websocket_routes
from backend.realtime.hub import Realtime
from backend.rest.api import error_response
from backend.rest.routes import build_api
from backend.service.chat import ChatService
from backend.settings import Settings

log = logging.getLogger("confab.app")
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> Any:
    """Build the ASGI app. Socket.IO answers at ``/socket.io/``; Starlette serves the rest."""
    settings = settings or Settings.from_env()
    realtime = Realtime(settings)
    chat = ChatService(realtime.sink, settings.limits)
    outbound = OutboundSender(settings.integrations).attach(chat)
    api = build_api()
    routes: list[BaseRoute] = [*api.routes(), *websocket_routes(), *dashboard_routes()]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The embedded default migrates itself; production runs `confab migrate` first.
        await open_database(settings, apply_migrations=not settings.production)
        await realtime.start()
        try:
            yield
        finally:
            await outbound.close()
            await chat.drain()
            await realtime.stop()
            await close_database()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.settings = settings
    app.state.chat = chat
    app.state.realtime = realtime
    app.state.api = api
    app.state.version = VERSION
    realtime.attach_app(app)
    return realtime.asgi(app)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "Internal server error")
