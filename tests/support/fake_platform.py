"""A fake Telegram Bot API and Instagram Graph API on 127.0.0.1, for the integration tests.

It answers ``POST /telegram/bot<token>/sendMessage``, ``…/sendDocument`` (``multipart/form-data``,
read as the Bot API reads it) and ``POST /graph/v19.0/me/messages`` the way the platforms do,
records every request, and can be told to fail a recipient's next N sends (or all of them) with
a given status. It runs in a thread, so the server process under test and the test's own event
loop both reach it; ``wait_calls`` waits on a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TELEGRAM_PREFIX = "/telegram"
GRAPH_PREFIX = "/graph/v19.0"
BOT_TOKEN = "123456:fake-bot-token"
ACCESS_TOKEN = "fake-instagram-access-token"


@dataclass(frozen=True)
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int  # what the fake answered

    @property
    def recipient(self) -> str | None:
        """Telegram's ``chat_id`` or Instagram's ``recipient.id``, as a string."""
        if not isinstance(self.body, dict):
            return None
        if "chat_id" in self.body:
            return str(self.body["chat_id"])
        recipient = self.body.get("recipient")
        return str(recipient.get("id")) if isinstance(recipient, dict) else None

    @property
    def text(self) -> str | None:
        """The text sent: Telegram's ``text`` (or a document's ``caption``), Instagram's."""
        if not isinstance(self.body, dict):
            return None
        for field in ("text", "caption"):
            if field in self.body:
                return str(self.body[field])
        message = self.body.get("message")
        return message.get("text") if isinstance(message, dict) else None

    @property
    def document(self) -> Upload | None:
        """The file a ``sendDocument`` uploaded."""
        document = self.body.get("document") if isinstance(self.body, dict) else None
        return document if isinstance(document, Upload) else None


@dataclass(frozen=True)
class Upload:
    """A file part of a ``multipart/form-data`` request."""

    filename: str | None
    content_type: str
    data: bytes


def read_form(content_type: str, raw_body: bytes) -> dict[str, Any]:
    """A ``multipart/form-data`` body: its fields as text, its files as ``Upload``."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw_body)
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        form[str(name)] = (Upload(filename, part.get_content_type(), data)
                           if filename is not None else data.decode())
    return form


class FakePlatform:
    """Start with ``FakePlatform()``; ``stop()`` when done."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._failures: dict[str, tuple[int | None, int]] = {}  # recipient -> (times, status)
        self._changed = threading.Condition()
        self._ids = itertools.count(1000)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Server settings pointing both platforms' API bases and credentials here."""
        return {
            "TELEGRAM_API_BASE": self.base_url + TELEGRAM_PREFIX,
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "INSTAGRAM_API_BASE": self.base_url + GRAPH_PREFIX,
            "INSTAGRAM_ACCESS_TOKEN": ACCESS_TOKEN,
        }

    def fail(self, recipient: str | int, times: int | None, status: int = 500) -> None:
        """Answer ``status`` to the next ``times`` sends to ``recipient`` (None: every send)."""
        with self._changed:
            self._failures[str(recipient)] = (times, status)

    def calls_to(self, recipient: str | int) -> list[Request]:
        with self._changed:
            return [r for r in self.requests if r.recipient == str(recipient)]

    async def wait_calls(self, recipient: str | int, count: int,
                         within: float = 10.0) -> list[Request]:
        """The first ``count`` requests to ``recipient``, waiting up to ``within`` seconds."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(
                    lambda: len([r for r in self.requests if r.recipient == str(recipient)])
                    >= count, timeout=within)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"expected {count} sends to {recipient}, got "
                                 f"{self.calls_to(recipient)}")
        return self.calls_to(recipient)[:count]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- request handling (server threads) --------------------------------------------------

    def answer(self, method: str, raw_path: str, raw_body: bytes,
               content_type: str = "") -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        try:
            body = (read_form(content_type, raw_body)
                    if content_type.startswith("multipart/form-data")
                    else json.loads(raw_body) if raw_body else None)
        except ValueError:
            body = None
        status, payload = self._route(method, parts.path, body)
        with self._changed:
            self.requests.append(Request(method, parts.path, parse_qs(parts.query), body, status))
            self._changed.notify_all()
        return status, payload

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        telegram = path.startswith(TELEGRAM_PREFIX + "/bot") and path.endswith(
            ("/sendMessage", "/sendDocument"))
        instagram = path == GRAPH_PREFIX + "/me/messages"
        if method != "POST" or not (telegram or instagram) or not isinstance(body, dict):
            return 404, {"error": "not found"}
        probe = Request(method, path, {}, body, 0)
        failure = self._take_failure(probe.recipient or "")
        if failure is not None:
            if telegram:
                return failure, {"ok": False, "error_code": failure,
                                 "description": f"fake failure {failure}"}
            return failure, {"error": {"message": f"fake failure {failure}", "code": 2}}
        message_id = next(self._ids)
        if telegram:
            return 200, {"ok": True, "result": {"message_id": message_id, "text": probe.text,
                                                "chat": {"id": body.get("chat_id")}}}
        return 200, {"recipient_id": probe.recipient, "message_id": f"m_{message_id}"}

    def _take_failure(self, recipient: str) -> int | None:
        with self._changed:
            rule = self._failures.get(recipient)
            if rule is None:
                return None
            times, status = rule
            if times is not None:
                if times <= 0:
                    return None
                self._failures[recipient] = (times - 1, status)
            return status


def _handler(fake: FakePlatform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            status, payload = fake.answer(self.command, self.path, self.rfile.read(length),
                                          self.headers.get("content-type") or "")
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None  # keep test output clean

    return Handler
