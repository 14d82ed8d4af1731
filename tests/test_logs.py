"""Logs: JSON lines in production (``confab serve`` and a bare uvicorn alike), request ids in
log lines and response headers, credentials in WebSocket query strings never written; the
formatters and filters themselves, in process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.observability.context import CONNECTION_ID, REQUEST_ID, bind_connection
from backend.observability.logs import (
    AccessFields,
    AddContext,
    JsonFormatter,
    RedactSecrets,
    TextFormatter,
    WebSocketAccessLines,
    redact,
)
from backend.observability.request_ids import RequestIds, incoming_id
from tests.support.client import Api
from tests.support.server import ROOT, TEST_SECRET, ServerProcess, start_server
from tests.support.services import free_port
from tests.test_raw_support import device_conversation, raw
from tests.test_socketio_helpers import Client

FIELDS = {"timestamp", "level", "logger", "message"}


def production_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"DATA_DIR": str(data_dir), "JWT_SECRET": TEST_SECRET, "ENVIRONMENT": "production",
                "PYTHONUNBUFFERED": "1"})
    return env


def migrate(env: dict[str, str]) -> None:
    """Production does not migrate at start-up."""
    done = subprocess.run([sys.executable, "-m", "backend", "migrate"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of ``log`` as JSON (fails on the first that is not), with the base fields."""
    lines = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{log}") from None
        assert FIELDS <= record.keys(), line
        lines.append(record)
    assert lines, "the server logged nothing"
    return lines


@pytest.fixture(scope="module")
def served(work_dir: Path) -> Iterator[ServerProcess]:
    """``confab serve`` in production, access log on (its default)."""
    data_dir = work_dir / "logs-serve"
    data_dir.mkdir(parents=True)
    env = production_env(data_dir)
    migrate(env)
    port = free_port()
    log_path = data_dir / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    server = ServerProcess(port, env, process, log_path)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, server.log()
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    yield server
    server.stop()


async def wait_for_line(server: ServerProcess, text: str, within: float = 5.0) -> None:
    """Log lines are written as they happen; the access line right after the response."""
    deadline = time.monotonic() + within
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{server.log()}"
        await asyncio.sleep(0.05)


async def use_every_door(server: ServerProcess) -> list[str]:
    """Connect with credentials in query strings on each kind of door; returns the secrets."""
    api = Api(server.base_url)
    try:
        user = await api.register()
        conversation = await api.conversation(user)
        device_id, device_cid = await device_conversation(api)
        async with raw(f"{server.ws_url}/ws/chat/{conversation['id']}/?token={user.token}") as ws:
            await ws.next("connection_established")
        async with raw(f"{server.ws_url}/ws/mobile/chat/{device_cid}/?device_id={device_id}") as ws:
            await ws.next(lambda frame: True)
        client = await Client(server.base_url, "/chat").connect(query=f"token={user.token}")
        await client.close()
    finally:
        await api.aclose()
    return [user.token, device_id]


async def test_serve_logs_json_with_request_ids_and_no_secrets(served: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=served.base_url) as http:
        kept = await http.get("/healthz", headers={"X-Request-ID": "trace-4f2a.9"})
        made = await http.get("/healthz", headers={"X-Request-ID": "not sane\ttab"})
    assert kept.headers["x-request-id"] == "trace-4f2a.9"
    generated = made.headers["x-request-id"]
    assert len(generated) == 32 and generated != "not sane\ttab"
    secrets = await use_every_door(served)
    await wait_for_line(served, generated)

    log = served.log()
    lines = json_lines(log)
    for secret in secrets:
        assert secret not in log
    access = [r for r in lines if r["logger"] == "uvicorn.access"]
    about = [r for r in access if r.get("request_id") == "trace-4f2a.9"]
    assert about and about[0]["path"] == "/healthz" and about[0]["status"] == 200
    assert any(r.get("request_id") == generated for r in access)
    sockets = [r for r in lines if "WebSocket /ws/" in r["message"]]
    assert sockets and all("request_id" in r for r in sockets)
    assert any("?token=***" in r["message"] for r in sockets)
    assert any("?device_id=***" in r["message"] for r in sockets)
    # With the access log on, websockets' per-connection lines are written too.
    assert any(r["message"] == "connection open" and r["logger"] == "uvicorn.error"
               for r in lines)
    assert any(r["logger"] == "uvicorn.error" and "Started server process" in r["message"]
               for r in lines)


async def test_bare_uvicorn_in_production_logs_json_too(work_dir: Path) -> None:
    """The Procfile's way (``uvicorn backend.main:app``): the app sets the format itself."""
    data_dir = work_dir / "logs-uvicorn"
    data_dir.mkdir(parents=True)
    migrate(production_env(data_dir))
    server = start_server(data_dir, ENVIRONMENT="production")
    try:
        secrets = await use_every_door(server)
    finally:
        server.stop(signal.SIGTERM)
    log = server.log()
    lines = json_lines(log)
    for secret in secrets:
        assert secret not in log
    # Started with --no-access-log: uvicorn's per-handshake access lines are off too,
    assert not any('"WebSocket /' in r["message"] for r in lines)
    # and so are websockets' own per-connection lines, the start-up checks' included (their
    # parsers have no client behind them).
    assert not [r for r in lines if r["message"] in ("connection open", "connection closed")]
    assert any(r["logger"] == "confab.database" for r in lines)


# -- in process: the pieces ----------------------------------------------------------------


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    for line_filter in (AccessFields(), RedactSecrets(), AddContext()):
        handler.addFilter(line_filter)
    logger = logging.getLogger(f"confab.test.{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, out


async def test_json_lines_carry_extras_and_context() -> None:
    logger, out = _logger(JsonFormatter())

    async def serve_one() -> None:
        REQUEST_ID.set("req-1")
        bind_connection("raw:abcd:7")
        logger.warning("redis unavailable (%s)", "publish",
                       extra={"event": "redis_down", "redis_url": "redis://h:6379/0"})

    await asyncio.create_task(serve_one())
    logger.info("outside any request")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == logger.name
    assert first["message"] == "redis unavailable (publish)"
    assert first["event"] == "redis_down" and first["redis_url"] == "redis://h:6379/0"
    assert first["request_id"] == "req-1" and first["connection_id"] == "raw:abcd:7"
    assert first["timestamp"].endswith("+00:00")
    assert "request_id" not in second and "connection_id" not in second
    assert REQUEST_ID.get() is None and CONNECTION_ID.get() is None


def test_text_lines_and_exceptions() -> None:
    logger, out = _logger(TextFormatter())
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed on /ws/chat/1/?token=%s", "s3cret", extra={"node": "n1"})
    text = out.getvalue()
    head = text.splitlines()[0]
    assert head.endswith("failed on /ws/chat/1/?token=*** [node=n1]"), head
    assert "RuntimeError: boom" in text and "s3cret" not in text


def test_access_lines_get_fields_and_masked_paths() -> None:
    logger, out = _logger(JsonFormatter())
    access = logging.getLogger("uvicorn.access")
    record = access.makeRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", "/a?x=1&access_token=t0k", "1.1", 200), None)
    logger.handle(record)
    line = json.loads(out.getvalue())
    assert line["path"] == "/a?x=1&access_token=***" and line["status"] == 200
    assert line["method"] == "GET" and "t0k" not in line["message"]


@pytest.mark.parametrize(("text", "clean"), [
    ("/ws/chat/1/?token=abc.def-ghi", "/ws/chat/1/?token=***"),
    ("/ws/mobile/chat/2/?x=1&device_id=dev-123&y=2", "/ws/mobile/chat/2/?x=1&device_id=***&y=2"),
    ("/webhook?hub.mode=subscribe&hub.verify_token=v&hub.challenge=c",
     "/webhook?hub.mode=subscribe&hub.verify_token=***&hub.challenge=c"),
    ("https://api.telegram.org/bot123:AA-b_c/sendMessage", "https://api.telegram.org/bot***/sendMessage"),
    ("/api/v1/chat/sessions?limit=50&offset=0", "/api/v1/chat/sessions?limit=50&offset=0"),
    ("tokens=3 left", "tokens=3 left"),
])
def test_redact(text: str, clean: str) -> None:
    assert redact(text) == clean


def test_incoming_request_ids_must_be_sane() -> None:
    def scope(value: bytes) -> dict[str, Any]:
        return {"headers": [(b"x-request-id", value)]}

    assert incoming_id(scope(b"abc-123_x.y:z")) == "abc-123_x.y:z"
    assert incoming_id(scope(b"x" * 129)) is None
    assert incoming_id(scope(b"a b")) is None
    assert incoming_id(scope(b'a"}\n{"level":"ERROR"')) is None
    assert incoming_id({"headers": []}) is None


async def test_a_websocket_keeps_its_request_id_for_its_life_and_gets_it_echoed() -> None:
    seen: list[str | None] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept", "headers": [(b"x-request-id", b"theirs")]})
        seen.append(REQUEST_ID.get())

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def connection() -> None:  # uvicorn runs each connection in a task of its own
        await RequestIds(app)({"type": "websocket", "headers": [(b"x-request-id", b"ws-1")]},
                              None, send)

    await asyncio.ensure_future(connection())
    assert seen == ["ws-1"] and REQUEST_ID.get() is None  # set in the connection's task only
    assert sent == [{"type": "websocket.accept", "headers": [(b"x-request-id", b"ws-1")]}]


def test_websocket_handshake_lines_follow_the_access_log_switch() -> None:
    """uvicorn's per-handshake line on ``uvicorn.error`` is kept while the access log is on
    and dropped with ``--no-access-log`` (no handler, not propagating); other lines stay."""
    access = logging.getLogger("uvicorn.access")
    saved = (access.propagate, list(access.handlers))
    lines = WebSocketAccessLines()

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, msg, args, None)

    accepted = record('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/ws/chat/1/")
    refused = record('%s - "WebSocket %s" %d', "127.0.0.1:5", "/ws/chat/1/", 403)
    other = record("Started server process [%d]", 1)
    try:
        access.propagate = True
        assert lines.filter(accepted) and lines.filter(refused) and lines.filter(other)
        access.propagate, access.handlers = False, []
        assert not lines.filter(accepted) and not lines.filter(refused)
        assert lines.filter(other)
        access.handlers = [logging.NullHandler()]
        assert lines.filter(accepted)
    finally:
        access.propagate, access.handlers = saved[0], saved[1]


async def test_without_access_log_a_connection_makes_no_record_of_its_lines() -> None:
    """uvicorn's ``[accepted]`` line and websockets' ``connection open`` / ``connection
    closed`` are dropped at the level check when the access log is off (a node accepting
    thousands of sockets a second made a record of each); warnings and errors still go out,
    and with the access log on, or while debugging, every line does."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from backend.realtime.protocol import WebSocketProtocol

    def protocol(access_log: bool, log_level: str = "info") -> WebSocketProtocol:
        # uvicorn's Config sets its loggers up (levels included), as at a node's start.
        config = Config(app=None, access_log=access_log, log_level=log_level)
        return WebSocketProtocol(config, ServerState(), {})

    # uvicorn's set-up is undone afterwards for the tests that follow in this process.
    uvicorn_logs = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(log.level, list(log.handlers), log.propagate) for log in uvicorn_logs]
    try:
        quiet = protocol(access_log=False)
        for logger in (quiet.logger, quiet.conn.logger):
            assert not logger.isEnabledFor(logging.INFO)
            assert logger.isEnabledFor(logging.WARNING)
        loud = protocol(access_log=True)
        assert loud.logger.isEnabledFor(logging.INFO)
        assert loud.conn.logger.isEnabledFor(logging.INFO)
        debugging = protocol(access_log=False, log_level="debug")
        assert debugging.logger.isEnabledFor(logging.INFO)
        assert debugging.conn.logger.isEnabledFor(logging.INFO)
    finally:
        for log, (level, handlers, propagate) in zip(uvicorn_logs, saved, strict=True):
            log.setLevel(level)
            log.handlers = handlers
            log.propagate = propagate
