"""The SQL statements a piece of code runs, as the database clients log them: Tortoise's
clients on ``tortoise.db_client`` and the plain statements of ``backend/storage/lookups.py``
on its own logger, both at DEBUG."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

from backend.storage import lookups

H = TypeVar("H", bound=logging.Handler)

#: The loggers every statement is logged on.
STATEMENT_LOGGERS = ("tortoise.db_client", lookups.__name__)


@contextlib.contextmanager
def listening(handler: H) -> Iterator[H]:
    """``handler`` on the statement loggers at DEBUG; their levels put back after."""
    loggers = [logging.getLogger(name) for name in STATEMENT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
