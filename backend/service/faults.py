"""Database faults as clients see them: one mapping, used by every door.

A *fault* is the database being away or too slow: a driver timeout (``DB_TIMEOUT_SECONDS``), a
refused, reset or dropped connection, the server shutting down or out of connections, a
deadlock or serialization failure, SQLite's lock held past its busy timeout. Each becomes the
``unavailable`` ChatError (503, ``retry_after``), which every door answers in its own shape
(REST 503 with ``Retry-After``, a Socket.IO ack or ``error`` event, a raw ``error`` frame) while
the connection stays open. Bugs (bad SQL) and bad input are not faults and are not mapped: they
stay ``internal_error`` / 4xx as before, with their traceback in the log.

Nothing is lost by answering ``unavailable``: a send is acknowledged only after its commit, so a
refused send either did not commit, or committed without an acknowledgement and is returned
(not stored again) when the client retries it with the same ``client_msg_id``.
"""

from __future__ import annotations

import logging
import sqlite3

import asyncpg
from tortoise.exceptions import DBConnectionError

from backend.service.errors import ChatError, unavailable

log = logging.getLogger("confab.database")

#: PostgreSQL errors that say "the server cannot serve now", not "this query is wrong":
#: class 08 (connection), 57 (operator intervention: shutdown, cancelled, cannot connect now),
#: 53 (insufficient resources: too many connections, disk full), 40 (deadlock, serialization).
_POSTGRES_FAULTS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)
#: asyncpg's InterfaceError is mostly misuse (a bug); these two say the connection died under
#: the operation (closed, or still cancelling a timed-out query).
_CONNECTION_GONE = ("connection is closed", "another operation is cancelling")
#: sqlite3.OperationalError is also raised for bad SQL; these messages are the file's faults.
_SQLITE_FAULTS = ("database is locked", "database table is locked", "disk i/o error",
                  "unable to open database file", "database or disk is full")
#: How far along ``__cause__`` / ``__context__`` to look: Tortoise wraps driver errors
#: (OperationalError, TransactionManagementError) around the fault that caused them.
_CHAIN_DEPTH = 5


def is_database_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a fault of the database rather than a bug."""
    current: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if current is None:
            return False
        if _is_fault(current):
            return True
        wrapped = current.args[0] if current.args else None
        if isinstance(wrapped, BaseException) and _is_fault(wrapped):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_fault(exc: BaseException) -> bool:
    # TimeoutError is asyncio's too (3.11+), and an OSError subclass: connect or query timeout.
    if isinstance(exc, (OSError, DBConnectionError, *_POSTGRES_FAULTS)):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return any(text in str(exc) for text in _CONNECTION_GONE)
    if isinstance(exc, sqlite3.OperationalError):
        return str(exc).lower().startswith(_SQLITE_FAULTS)
    return False


def database_fault(exc: BaseException, *, door: str, action: str) -> ChatError | None:
    """The ``unavailable`` error a database fault becomes, or None when ``exc`` is not one.

    The fault is logged here, once, as a warning without a traceback (an outage is an
    operator's matter, not a bug); the caller answers the client and logs nothing more.
    ``door`` names the transport or route, ``action`` the route or event that failed."""
    if not is_database_fault(exc):
        return None
    log.warning(
        "database unavailable: %s %s answered 'unavailable'", door, action[:120],
        extra={"event": "database_unavailable", "door": door, "action": action[:120],
               "error": f"{type(exc).__name__}: {exc}"[:300]},
    )
    return unavailable()
