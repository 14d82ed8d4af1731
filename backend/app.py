"""The composition root: settings, database, chat service, real-time layer, cluster (or not)
and the doors, built and wired here. Nothing below this module imports a door; the service
gets the real-time layer only through its ports (backend/service/ports.py)."""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from backend.auth import passwords
from backend.auth.sessions import Sessions
from backend.cluster.node import ClusterNode
from backend.collector import tune_after_startup
from backend.compat import IncompatibleLibrary, check_all
from backend.compat.starlette import PlainState
from backend.dashboard.routes import dashboard_routes
from backend.integrations.outbound import OutboundSender
from backend.integrations.outside import Outside
from backend.observability.logs import configure_logging
from backend.observability.metrics import Metrics
from backend.observability.request_ids import RequestIds
from backend.raw.routes import RawRoutes, websocket_routes
from backend.realtime.engine import EngineEntry
from backend.realtime.fanout import FanoutManager
from backend.realtime.hub import Realtime
from backend.realtime.origins import LOCAL_ORIGIN
from backend.realtime.presence import LocalPresence
from backend.realtime.typists import TypistCounter
from backend.realtime.wire import DirectWires
from backend.rest.api import error_response, refusal_response
from backend.rest.auth import AuthLimits
from backend.rest.routes import build_api
from backend.service.chat import ChatService
from backend.service.faults import database_fault
from backend.service.ports import FileStore
from backend.service.uploads import Uploads
from backend.settings import Settings, StorageKind
from backend.shutdown import install_graceful_shutdown
from backend.storage.database import close_database, open_database
from backend.storage.files_local import LocalFiles
from backend.storage.files_s3 import S3Files
from namespaces import register_namespaces

log = logging.getLogger("confab.app")
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> Any:
    """Build the ASGI app. Socket.IO answers at ``/socket.io/``; Starlette serves the rest."""
    settings = settings or Settings.from_env()
    # The decimal context of this (the server's main) task, inherited by every connection's
    # task: one that first parses a datetime (iso8601 uses Decimal) would otherwise get a
    # context of its own, about 400 bytes held for the connection's life.
    decimal.getcontext()
    configure_logging(json_lines=settings.production)
    require_compatible_libraries()
    passwords.use(settings.password_hashing)
    metrics = Metrics()
    realtime = _realtime(settings, metrics)
    metrics.watch(realtime.connection_doors, realtime.dropped_events)
    outside = Outside(settings.delivery, metrics, realtime.sink)
    chat = ChatService(TypistCounter(outside.events, realtime.presence), settings.limits)
    chat.attach_nodes(realtime.manager, realtime.manager,
                      clustered=realtime.backplane is not None)
    realtime.manager.keep_pages(chat.latest_pages)
    chat.on_message_sent(metrics.message_sent)
    uploads = Uploads(_file_store(settings), settings.uploads, settings.jwt_secret)
    chat.attach_uploads(uploads)
    outside.attach(chat, realtime.presence.is_online)
    sessions = Sessions()
    sessions.attach(realtime.manager, clustered=realtime.backplane is not None,
                    recheck_seconds=settings.session_recheck_seconds)
    sessions.on_revoked(realtime.close_session)
    if realtime.backplane is not None:
        # Alone, a node delivers what it publishes in position order and loses nothing.
        realtime.follow_log(chat)
    outbound = OutboundSender(settings.integrations).attach(chat)
    api = build_api()
    routes: list[BaseRoute] = [*api.routes(), *websocket_routes(), *dashboard_routes()]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The embedded default migrates itself; production runs `confab migrate` first.
        await open_database(settings, apply_migrations=not settings.production)
        await realtime.start()
        install_graceful_shutdown(realtime, chat, settings.shutdown_goodbye_seconds,
                                  settings.shutdown_timeout_seconds)
        tune_after_startup()
        chores = _chores(settings, chat, realtime, sessions, uploads)
        outside.start()
        try:
            yield
        finally:
            for chore in chores:
                chore.cancel()
            await outbound.close()
            await chat.drain()
            await outside.stop()
            await realtime.stop()
            await close_database()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=_cors(settings),
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    # Read at every connect: values kept as plain attributes (backend/compat/starlette.py).
    app.state = PlainState()
    app.state.settings = settings
    app.state.chat = chat
    app.state.realtime = realtime
    app.state.sessions = sessions
    app.state.metrics = metrics
    app.state.outside = outside
    app.state.auth_limits = AuthLimits(settings.limits)
    app.state.api = api
    app.state.version = VERSION
    register_namespaces(realtime, app)
    # The raw WebSocket routes go straight to their doors, Socket.IO answers at /socket.io/
    # (every request there straight to the engine), everything else is Starlette's.
    doors = RawRoutes(app, EngineEntry(app, realtime.sio, "socket.io"))
    # Outermost: it must see uvicorn's own ``send`` to find the WebSocket connection.
    # The raw routes' WebSocket keepalive is Engine.IO's heartbeat (the protocol reads it here).
    return DirectWires(RequestIds(doors),
                       heartbeat=(settings.ping_interval_seconds, settings.ping_timeout_seconds))


async def _now_and_then(seconds: float, what: str, job: Callable[[], Awaitable[int]],
                        done: str) -> None:
    """Run ``job`` every ``seconds`` for as long as the node lives; a failure (the database
    away) is logged and tried again next time; ``done`` logs how many it dealt with, if any.
    Every node runs its own: each job is idempotent."""
    while True:
        await asyncio.sleep(seconds)
        try:
            count = await job()
        except Exception as exc:
            log.warning("%s failed (%s: %s)", what, type(exc).__name__, str(exc)[:200])
        else:
            if count:
                log.info(done, count, extra={"event": what.replace(" ", "_")})


def _chores(settings: Settings, chat: ChatService, realtime: Realtime, sessions: Sessions,
            uploads: Uploads) -> list[asyncio.Future[None]]:
    """The node's periodic work: the event log's retention, closing the sockets of sessions
    revoked (or users deactivated) whose control this node missed (Redis away, the command
    line), and deleting uploads no message named in time."""
    return [asyncio.ensure_future(coroutine) for coroutine in (
        _now_and_then(settings.limits.event_log_trim_seconds, "event log trim", chat.trim_log,
                      "event log: %d event(s) past the retention deleted"),
        _now_and_then(settings.session_recheck_seconds, "session recheck",
                      partial(realtime.close_revoked_sessions, sessions.recently_revoked),
                      "session recheck: %d socket(s) of revoked sessions closed"),
        _now_and_then(settings.uploads.sweep_seconds, "upload sweep", uploads.sweep,
                      "uploads: %d never attached in time deleted"),
    )]


def require_compatible_libraries() -> None:
    """Refuse to start (``SystemExit``, logged) when an installed library is not what the
    project's compat modules were written for (backend/compat): no node serves on internals
    that moved."""
    try:
        check_all()
    except IncompatibleLibrary as exc:
        log.critical("%s", exc, extra={"event": "incompatible_library"})
        raise SystemExit(f"confab: {exc}") from None


def _realtime(settings: Settings, metrics: Metrics) -> Realtime:
    """The real-time layer on this node's own room table and presence, or, with
    ``REDIS_URL``, on the cluster's (emits and presence shared by every node)."""
    if not settings.redis_url:
        return Realtime(settings, metrics, FanoutManager(), LocalPresence())
    node = ClusterNode(settings)
    realtime = Realtime(settings, metrics, node.manager, node.presence, backplane=node)
    node.on_departures(realtime.departed)
    return realtime


def _file_store(settings: Settings) -> FileStore:
    """Where uploaded files are kept: ``DATA_DIR/uploads`` unless ``UPLOAD_STORAGE=s3``."""
    if settings.uploads.storage == StorageKind.S3:
        return S3Files(settings.uploads)
    return LocalFiles(settings.data_dir / "uploads")


def _cors(settings: Settings) -> list[Middleware]:
    """REST answers browsers of the allowed origins only (none listed: same origin only; in
    development, pages served from this machine too). Tokens travel in the Authorization
    header, never in cookies, so no credentials mode."""
    if not settings.allowed_origins and not settings.local_origins:
        return []
    return [Middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_origin_regex=LOCAL_ORIGIN.pattern if settings.local_origins else None,
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Upload-Offset",
                       "Content-Range"],
        expose_headers=["Retry-After", "X-Has-More", "X-Next-Cursor", "X-Request-ID",
                        "Upload-Offset", "Upload-Length"],
        max_age=600,
    )]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    # REST operations map database faults themselves; this catches any other route's.
    fault = database_fault(exc, door="http", action=f"{request.method} {request.url.path}")
    if fault is not None:
        return refusal_response(request, fault)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    request.app.state.metrics.refused("http", "internal_error")
    return error_response(500, "Internal server error")
