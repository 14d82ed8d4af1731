"""Fuzzing the REST API (issue 6): never a 500, always ``{"detail": ...}`` on a 4xx (CONTRACT
section 3), against a real server on each database.

- ``test_openapi_operations``: schemathesis drives every operation of ``/openapi.json``
  (valid and invalid inputs) as a registered user, with path ids and ``device_id`` often the
  user's own (so the authenticated routes are reached, not only their 401s and 404s). Checks:
  no server error, and each response matches the schema the document declares for it.
- ``test_arbitrary_json_bodies``: hypothesis throws any JSON value (nested, odd types, huge
  numbers, NULs, unicode) and objects with the route's own field names holding odd values at
  every route that takes a body.

Both are bounded (a fixed number of examples per operation, ``FUZZ_EXAMPLES`` scales it) and
derandomized. The server log must show no exception afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import example, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from backend.integrations import instagram, telegram
from backend.rest.integrations import INSTAGRAM_PATH, TELEGRAM_PATH
from backend.rest.openapi import build_document
from backend.rest.routes import build_api
from tests.support.client import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.fuzz import (
    FUZZ_WEBHOOK_SECRET,
    body_fields,
    faults,
    fuzz_settings,
    json_values,
    shaped,
)
from tests.support.server import ServerProcess

# -- the fuzz user and what it owns ---------------------------------------------------------


class World:
    """A user with a token, and objects of theirs whose ids the fuzzing reuses."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=20)
        self.log_start = len(server.log())
        self.user, self.token = self._register()
        other, other_token = self._register()
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.sessions = [self._post("/api/v1/chat/sessions", {"title": f"s{i}"})["id"]
                         for i in range(3)]
        self.messages = [self._post(f"/api/v1/chat/sessions/{sid}/messages",
                                    {"content": f"hello {sid}"})["id"] for sid in self.sessions]
        # a connection the fuzz user may accept, and the direct conversation of another
        asked = self.http.post("/api/chat/connections/", json={"user_id": self.user["id"]},
                               headers={"Authorization": f"Bearer {other_token}"})
        assert asked.status_code == 201, asked.text
        self.connections = [asked.json()["id"]]
        self.users = [other["id"], self.user["id"]]
        device = self.http.post("/mobile/sessions/", json={"platform": "ios"})
        self.device = device.json()["device_id"]
        started = self.http.post("/mobile/chat/start/", json={"device_id": self.device})
        self.device_conversations = [started.json()["id"]]
        self.sacrificial_device = self.http.post("/mobile/sessions/", json={}).json()["device_id"]
        # Logging out (all of a user's sessions, even) is fuzzed as a user of its own, so the
        # fuzz user's token keeps working for every other operation.
        self.sacrificial_token = self._register()[1]

    def token_for(self, path: str) -> str:
        """The bearer token to send to ``path``."""
        return self.sacrificial_token if path == LOGOUT_PATH else self.token

    def _register(self) -> tuple[dict[str, Any], str]:
        response = self.http.post("/api/v1/auth/register", json={
            "email": f"fuzz-{uuid.uuid4().hex[:10]}@example.com", "password": "password123"})
        assert response.status_code == 201, response.text
        return response.json()["user"], response.json()["access_token"]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def ids(self, name: str) -> list[Any]:
        """Real values for a path parameter, query field or body field called ``name``."""
        if name in ("session_id", "conversation_id"):
            return [*self.sessions, *self.device_conversations]
        if name in ("message_id", "up_to_message_id", "reply_to_id", "parent_message_id",
                    "message_ids"):
            return self.messages
        if name == "connection_id":
            return self.connections
        if name in ("user_id", "participant_ids", "assigned_agent_id"):
            return self.users
        if name == "device_id":
            return [self.device]
        return []

    def new_faults(self, since: int | None = None) -> list[str]:
        """Exception lines the server logged since ``since`` (default: since the start)."""
        return faults(self.server.log()[self.log_start if since is None else since:])

    def log_size(self) -> int:
        return len(self.server.log())

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def world(fuzz_server: ServerProcess) -> Iterator[World]:
    state = World(fuzz_server)
    yield state
    state.close()


# -- schemathesis over /openapi.json --------------------------------------------------------


class Fuzzer:
    """The live server's ``/openapi.json`` loaded by schemathesis, with the fuzz user's
    bearer token (an auth provider) and hooks that often put the user's own ids in."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.schema = schemathesis.openapi.from_url(f"{world.server.base_url}/openapi.json")
        self.strategies: dict[tuple[str, str], st.SearchStrategy[Any]] = {}
        def which_token(case: Any, context: Any) -> str:
            return world.token_for(case.operation.path)

        # Tokens are cached per key: one per user, so logout gets its own.
        @self.schema.auth(cache_by_key=which_token)
        class Bearer:
            """The fuzz user's access token on every operation that declares bearer auth."""

            def get(self, case: Any, context: Any) -> str:
                return world.token_for(case.operation.path)

            def set(self, case: Any, data: str, context: Any) -> None:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

        def flatmap_path_parameters(context: Any, path_parameters: Any) -> Any:
            """Half the time, the path names the user's own objects (a device path names a
            device of its own: deleting the fuzz device would make later mobile calls 401)."""
            if not isinstance(path_parameters, dict):
                return st.just(path_parameters)
            real = {name: world.ids(name) for name in path_parameters if world.ids(name)}
            if "device_id" in path_parameters:
                real["device_id"] = [world.sacrificial_device]
            if not real:
                return st.just(path_parameters)
            return st.one_of(st.just(path_parameters), st.fixed_dictionaries(
                {name: st.sampled_from(values) for name, values in real.items()}
            ).map(lambda chosen: {**path_parameters, **chosen}))

        def with_device(values: Any) -> Any:
            if not isinstance(values, dict) or "device_id" not in values:
                return st.just(values)
            return st.sampled_from([values, {**values, "device_id": world.device}])

        def flatmap_query(context: Any, query: Any) -> Any:
            return with_device(query)

        def flatmap_body(context: Any, body: Any) -> Any:
            return with_device(body)

        for hook in (flatmap_path_parameters, flatmap_query, flatmap_body):
            self.schema.hook(hook)

    def cases(self, method: str, path: str) -> st.SearchStrategy[Any]:
        """Valid and invalid requests for one operation."""
        key = (method, path)
        if key not in self.strategies:
            operation = self.schema[path][method]
            self.strategies[key] = st.one_of(*(
                operation.as_strategy(mode, auth_storage=self.schema.auth)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)))
        return self.strategies[key]


@pytest.fixture(scope="module")
def fuzzer(world: World) -> Fuzzer:
    return Fuzzer(world)


def _operations() -> list[tuple[str, str]]:
    document = build_document(build_api(), "fuzz", "0")
    return sorted((method.upper(), path) for path, methods in document["paths"].items()
                  for method in methods)


OPERATIONS = _operations()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@fuzz_settings(12)
@given(data=st.data())
def test_openapi_operations(fuzzer: Fuzzer, method: str, path: str, data: st.DataObject) -> None:
    case = data.draw(fuzzer.cases(method, path), label="case")
    mark = fuzzer.world.log_size()
    response = _signed_call(case) if path in WEBHOOKS and method == "POST" else case.call(
        timeout=20)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    assert not fuzzer.world.new_faults(mark), fuzzer.world.server.log()[mark:]


WEBHOOKS = (TELEGRAM_PATH, INSTAGRAM_PATH)
LOGOUT_PATH = "/api/v1/auth/logout"


def _signed_call(case: Any) -> requests.Response:
    """A webhook call with the right secret (Telegram) or body signature (Instagram), so
    that the payload parsers are reached rather than the credential check."""
    kwargs = case.as_transport_kwargs()
    if "json" in kwargs:
        kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
    raw = kwargs.get("data") or b""
    raw = raw.encode() if isinstance(raw, str) else raw
    kwargs["headers"] = {**kwargs["headers"], **_webhook_headers(raw)}
    return requests.request(**kwargs, timeout=20)


def _webhook_headers(raw: bytes) -> dict[str, str]:
    digest = hmac.new(FUZZ_WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {telegram.SECRET_HEADER: FUZZ_WEBHOOK_SECRET,
            instagram.SIGNATURE_HEADER: f"sha256={digest}"}


# -- arbitrary JSON at every body ------------------------------------------------------------


def _body_routes() -> list[tuple[str, str, list[str]]]:
    """(method, path, body field names) of every operation that reads a JSON body."""
    api = build_api()
    document = build_document(api, "fuzz", "0")
    components = document["components"]["schemas"]
    routes = []
    for path, methods in document["paths"].items():
        for method, entry in methods.items():
            body = entry.get("requestBody")
            if body is None:
                continue
            # A route taking another body (a multipart form, raw chunks) gets JSON all the
            # same: it must refuse it with a 4xx and a detail.
            json_body = body["content"].get("application/json")
            fields = body_fields(json_body["schema"], components) if json_body else []
            routes.append((method.upper(), path, fields))
    return sorted(routes)


BODY_ROUTES = _body_routes()


def _fill(path: str, world: World, data: st.DataObject) -> str:
    """The path with each parameter a real id of the fuzz user's, or something else."""
    for name in re.findall(r"{(\w+)}", path):
        real = world.ids(name) if name != "device_id" else [world.sacrificial_device]
        value = data.draw(st.one_of(st.sampled_from(real or [1]), st.integers(-3, 2**40),
                                    st.text(min_size=1, max_size=12)), label=name)
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


@pytest.mark.parametrize(("method", "path", "fields"), BODY_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
@fuzz_settings(25)
@given(data=st.data())
@example(data=None)  # the sharp edges below; "\x00" in any field was a 500 on PostgreSQL
def test_arbitrary_json_bodies(world: World, method: str, path: str, fields: list[str],
                               data: st.DataObject | None) -> None:
    if data is None:
        bodies: list[Any] = [b"\x00", b'{"a": 1', b"\xff\xfe", b'{"content": "\\ud800"}',
                             b"[" * 5000, b'{"user_id": 1e999}', 2**64, -(2**63) - 1,
                             {f: 2**63 for f in fields}, {f: "\x00" for f in fields},
                             {f: [2**64] for f in fields}, {f: {"": None} for f in fields}]
        target = path
        for name in re.findall(r"{(\w+)}", path):
            target = target.replace("{" + name + "}", str((world.ids(name) or [1])[0]))
        for body in bodies:
            _check(world, method, target, body)
        return
    target = _fill(path, world, data)
    ids = {name: world.ids(name) for name in fields}
    body = data.draw(st.one_of(json_values, shaped(fields, ids)), label="body")
    _check(world, method, target, body)


def _check(world: World, method: str, path: str, body: Any) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {world.token_for(path)}",
               "Content-Type": "application/json"}
    headers.update(_webhook_headers(content))  # so that their parsers are reached
    mark = world.log_size()
    response = world.http.request(method, path, content=content, headers=headers)
    where = f"{method} {path} {content[:300]!r}"
    assert response.status_code < 500, (where, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), where
        assert "detail" in response.json(), (where, response.text)
    assert not world.new_faults(mark), (where, world.server.log()[mark:])


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


#: Query strings and paths that reached the database as they were (found by the fuzzing, on
#: PostgreSQL: a NUL in text, an id past 32 bits in a cursor).
EDGES = [
    ("GET", "/api/v1/chat/search?q=%00"),
    ("GET", "/api/v1/chat/sessions?cursor=%00"),
    ("GET", f"/api/v1/chat/sessions?cursor={_cursor('2025-01-01T00:00:00|9999999999999')}"),
    ("GET", f"/api/v1/chat/sessions?cursor={_cursor('2025-01-01T00:00:00+00:00|0')}"),
    ("GET", "/mobile/chat/list/?device_id=%00%00%00%00%00%00%00%00"),
    ("GET", "/mobile/chat/1/detail/?device_id=abc%00defgh"),
    ("DELETE", "/mobile/sessions/abcdefgh%00/"),
    ("POST", "/mobile/chat/start/?device_id=%00"),
]


@pytest.mark.parametrize(("method", "path"), EDGES, ids=[f"{m} {p}" for m, p in EDGES])
def test_query_and_path_edges(world: World, method: str, path: str) -> None:
    _check(world, method, path, {})


def test_a_normal_request_still_works(world: World) -> None:
    """After the fuzzing the server still serves: a login, a send, a history read."""
    login = world.http.post("/api/v1/auth/login",
                            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert login.status_code == 200, login.text
    created = world.http.post("/api/v1/chat/sessions", json={"title": "after"},
                              headers=world.headers)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    sent = world.http.post(f"/api/v1/chat/sessions/{sid}/messages", json={"content": "fine"},
                           headers=world.headers)
    assert sent.status_code == 201, sent.text
    history = world.http.get(f"/api/v1/chat/sessions/{sid}/messages", headers=world.headers)
    assert [m["content"] for m in history.json()] == ["fine"]
    assert not world.new_faults(), world.new_faults()
