"""A small registry of REST operations: one declaration gives the route, its validation, its
auth, its error mapping and its OpenAPI entry.

A handler is ``async def handler(call: Call) -> Any``; what it returns is sent as JSON (or, if it
is a Response, as is). Bodies and query strings are validated with pydantic models; every
failure becomes ``{"detail": ...}`` with a 4xx status.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend.auth.accounts import actor_from_token, device_actor
from backend.doors.connections import bearer_token
from backend.doors.ids import named_id
from backend.doors.refusals import refusal_for
from backend.rest.bodies import capped_body
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.drafts import describe, reject_nul
from backend.service.errors import ChatError
from backend.service.faults import database_fault
from backend.settings import Settings
from models import UserFacts

log = logging.getLogger("confab.rest")

#: ``user``: a bearer token; ``user_or_device``: a bearer token, else seed 000's ``device_id``
#: in the query string (a mobile device); ``none``: the handler decides.
AuthKind = Literal["user", "user_or_device", "none"]
_PARAM = re.compile(r"{(\w+)}")


class ORJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_response(status: int, detail: Any, **extra: Any) -> ORJSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in (429, 503) and "retry_after" in extra:
        headers["Retry-After"] = str(max(1, math.ceil(extra["retry_after"])))
    return ORJSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


@dataclass
class Call:
    """Everything a handler needs about one request."""

    request: Request
    path: dict[str, Any]
    body: Any
    query: Any
    user: UserFacts | None
    #: The login session of the access token (backend/auth/sessions.py).
    session_id: str | None = None
    #: The mobile device of a ``user_or_device`` operation called without a bearer token.
    device: Actor | None = None

    @property
    def chat(self) -> ChatService:
        chat: ChatService = self.request.app.state.chat
        return chat

    @property
    def settings(self) -> Settings:
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def actor(self) -> Actor:
        if self.device is not None:
            return self.device
        assert self.user is not None, "operation declared without auth"
        return Actor.of_user(self.user, self.session_id)


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    auth: AuthKind = "user"
    tags: tuple[str, ...] = ()
    str_params: frozenset[str] = field(default_factory=frozenset)
    #: OpenAPI ``content`` of a body the handler reads itself (not JSON: a multipart form,
    #: raw bytes); ``body`` is then None.
    raw_body: dict[str, Any] | None = None
    #: OpenAPI ``content`` of a success that is not JSON (a file, a redirect).
    produces: dict[str, Any] | None = None


class Api:
    """Collects operations; ``routes()`` for Starlette, ``build_document`` (openapi.py) for
    the OpenAPI document."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        self.extra_paths: dict[str, dict[str, Any]] = {}

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        auth: AuthKind = "user",
        tags: tuple[str, ...] = (),
        str_params: tuple[str, ...] = (),
        raw_body: dict[str, Any] | None = None,
        produces: dict[str, Any] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(method.upper(), path, handler, summary, body, query, response, status,
                          auth, tags, frozenset(str_params), raw_body, produces)
            )
            return handler

        return register

    def document(self, path: str, entry: dict[str, Any]) -> None:
        """Add a path that is not a REST operation (a WebSocket route) to the OpenAPI document."""
        self.extra_paths[path] = entry

    def routes(self) -> list[Route]:
        by_path: dict[str, list[Operation]] = {}
        for op in self.operations:
            by_path.setdefault(op.path, []).append(op)
        return [Route(path, _dispatcher(ops), methods=[o.method for o in ops])
                for path, ops in by_path.items()]


def _dispatcher(ops: list[Operation]) -> Callable[[Request], Awaitable[Response]]:
    table = {op.method: op for op in ops}

    async def endpoint(request: Request) -> Response:
        op = table[request.method] if request.method in table else table["GET"]
        try:
            response = await _run(op, request)
        except ChatError as exc:
            return refusal_response(request, exc)
        except Exception as exc:
            fault = database_fault(exc, door="http", action=f"{op.method} {op.path}")
            if fault is None:
                raise
            return refusal_response(request, fault)
        code = _INPUT_REFUSALS.get(response.status_code)
        if code is not None:  # bad input refused by status alone: path, query, body
            request.app.state.metrics.refused("http", code)
        return response

    return endpoint


#: The error code counted for input refused without a ``ChatError`` (a 401 of ``/metrics`` or
#: a 503 of ``/readyz`` is an answer, not a refusal of input).
_INPUT_REFUSALS = {400: "invalid_json", 404: "not_found", 413: "too_large", 422: "invalid"}


def refusal_response(request: Request, exc: ChatError) -> ORJSONResponse:
    """``{"detail", "code"}`` (and ``retry_after``, sent as ``Retry-After`` too) for a refusal."""
    request.app.state.metrics.refused("http", exc.code)
    extra: dict[str, Any] = {"code": exc.code}
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        extra["retry_after"] = round(retry, 3)
    for where in ("position", "epoch"):  # resync_required: where the log stands now
        if hasattr(exc, where):
            extra[where] = getattr(exc, where)
    return error_response(refusal_for(exc).http, exc.message, **extra)


async def _run(op: Operation, request: Request) -> Response:
    path = _path_params(op, request)
    if isinstance(path, Response):
        return path
    reject_nul([*path.values(), *request.query_params.values()])
    user = session_id = device = None
    if op.auth == "user" or (op.auth == "user_or_device"
                             and "authorization" in request.headers):
        token = bearer_token(request.headers.get("authorization", ""))
        state = request.app.state
        actor = await actor_from_token(state.settings, state.sessions, token)
        user, session_id = actor.user, actor.session_id
    elif op.auth == "user_or_device":
        device = await device_actor(request.query_params.get("device_id"))
    query = None
    if op.query is not None:
        try:
            query = op.query.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return invalid_response(exc)
    body = None
    if op.body is not None:
        parsed = await _read_json(request)
        if isinstance(parsed, Response):
            return parsed
        try:
            body = op.body.model_validate(parsed)
        except ValidationError as exc:
            return invalid_response(exc)
    result = await op.handler(Call(request, path, body, query, user, session_id, device))
    if isinstance(result, Response):
        return result
    return ORJSONResponse(result, status_code=op.status)


def _path_params(op: Operation, request: Request) -> dict[str, Any] | Response:
    values: dict[str, Any] = {}
    for name, raw in request.path_params.items():
        if name in op.str_params:
            values[name] = raw
            continue
        try:
            values[name] = named_id(raw, name.replace("_", " ").capitalize())
        except ChatError as exc:
            return error_response(404, exc.message)
    return values


async def _read_json(request: Request) -> Any:
    limit = request.app.state.settings.limits.max_body_bytes
    raw = await capped_body(request, limit)
    if raw is None:
        return error_response(413, f"Request body is larger than {limit} bytes")
    if not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_response(400, "Invalid JSON format")
    if not isinstance(parsed, dict):
        return error_response(422, "Request body must be a JSON object")
    reject_nul(parsed)
    return parsed


def invalid_response(exc: ValidationError) -> ORJSONResponse:
    """A 422 of validation: ``detail`` one line naming each bad field (errors are
    ``{"detail": "…"}``, CONTRACT section 3), ``errors`` the fields as ``{loc, msg, type}``."""
    return error_response(422, describe(exc), code="invalid", errors=[
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
    ])


def path_parameters(path: str) -> list[str]:
    return _PARAM.findall(path)
