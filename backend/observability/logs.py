"""Logging: JSON lines in production, readable text in development, one set-up for the app and
for uvicorn's own loggers.

Every line carries ``timestamp``, ``level``, ``logger`` and ``message``, the ``extra`` fields its
call passed (``event``, ``node``, ``redis_url``...), and, where known, ``request_id`` and
``connection_id`` (context.py). Secrets in query strings (``?token=``, ``device_id=``...) are
masked on every line before it is written: uvicorn prints WebSocket paths with their query
strings, and raw WebSocket clients authenticate with ``?token=``.

``configure_logging`` runs when the app is created, so it applies however uvicorn was started
(``confab serve``, the Procfile, a bare ``uvicorn backend.main:app``); ``confab serve`` also runs
it before starting uvicorn, so uvicorn's own first lines have the same format.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from backend.observability.context import CONNECTION_ID, REQUEST_ID

#: Loggers that come with handlers of their own (uvicorn's default config, python-socketio's and
#: python-engineio's servers): their lines are sent to the root handler instead.
_REROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "socketio.server",
             "engineio.server")
#: These two add a handler of their own when their level is unset (at Server construction).
_QUIET = ("socketio.server", "engineio.server")

#: A query parameter whose value is a credential: any ``...token``, ``secret``, ``password``,
#: ``device_id`` (the mobile door's credential), ``api_key``, ``signature``.
_SECRET_PARAM = re.compile(
    r"(?i)([?&][\w.\-]*(?:token|secret|password|device_id|api_key|signature)=)[^&\s\"'#]*"
)
#: Telegram's bot API puts the bot token in the path.
_BOT_PATH = re.compile(r"/bot\d+:[\w-]+")

#: Attributes every LogRecord has; anything else on a record came from ``extra`` (except
#: uvicorn's ``color_message``, its message with terminal colours).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


def redact(text: str) -> str:
    """``text`` with credentials in query strings (and Telegram bot paths) masked."""
    if "=" in text:
        text = _SECRET_PARAM.sub(r"\1***", text)
    if "/bot" in text:
        text = _BOT_PATH.sub("/bot***", text)
    return text


class AccessFields(logging.Filter):
    """Give uvicorn's access lines ``method``, ``path`` and ``status`` fields of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            _, method, path, _, status = args
            record.method, record.path, record.status = method, redact(str(path)), status
        return True


class WebSocketAccessLines(logging.Filter):
    """uvicorn logs each WebSocket handshake's outcome (``"WebSocket /path" [accepted]``, or
    its status) through ``uvicorn.error``: an access line by what it says, written whatever
    ``--no-access-log`` says. On ``uvicorn.error`` this drops those lines while the access
    log is switched off (uvicorn then leaves ``uvicorn.access`` with no handler and not
    propagating): a node that accepts thousands of sockets a second with its access log off
    wrote, and formatted, one line for each."""

    PREFIX = '%s - "WebSocket %s"'

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(self.PREFIX)):
            return True
        access = logging.getLogger("uvicorn.access")
        return access.propagate or bool(access.handlers)


class RedactSecrets(logging.Filter):
    """Mask credentials in the formatted message (see ``redact``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as usual
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class OutageWithoutTraceback(logging.Filter):
    """asyncpg's pool logs every failed attempt to reconnect during a database outage as a
    warning with the connect call's traceback: an expected condition, one line each is what an
    operator needs (the error's type and text stay, at the end of the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncpg.pool" and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


class AddContext(logging.Filter):
    """Add ``request_id`` and ``connection_id`` when the line is logged while serving one."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        connection_id = CONNECTION_ID.get()
        if connection_id is not None:
            record.connection_id = connection_id
        return True


class JsonFormatter(OrjsonFormatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, extras."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger"},
                         reserved_attrs=[*RESERVED_ATTRS, "color_message"])

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = _timestamp(record)
        super().add_fields(log_data, record, message_dict)


class TextFormatter(logging.Formatter):
    """``timestamp LEVEL logger: message key=value...``, extras and context at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items()
                  if k not in _STANDARD and not k.startswith("_")]
        if not extras:
            return text
        head, newline, rest = text.partition("\n")  # keep a traceback below the line
        return f"{head} [{' '.join(extras)}]{newline}{rest}"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed
    """The one handler on the root logger (its class tells ours apart on reconfiguration)."""


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    """Send every log line, uvicorn's included, to stderr in one format: JSON lines when
    ``json_lines`` (production), text otherwise. Safe to call more than once."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    if json_lines:  # in text the access line already reads as method, path, status
        handler.addFilter(AccessFields())
    handler.addFilter(OutageWithoutTraceback())
    handler.addFilter(RedactSecrets())
    handler.addFilter(AddContext())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        quiet = logging.getLogger(name)
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.ERROR)
    error_log = logging.getLogger("uvicorn.error")
    for old_filter in [f for f in error_log.filters if isinstance(f, WebSocketAccessLines)]:
        error_log.removeFilter(old_filter)
    error_log.addFilter(WebSocketAccessLines())
    for name in _REROUTED:
        logger = logging.getLogger(name)
        # A logger without handlers is left alone: it already reaches the root, or it was
        # switched off on purpose (uvicorn's --no-access-log empties uvicorn.access).
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
    logging.captureWarnings(True)


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
