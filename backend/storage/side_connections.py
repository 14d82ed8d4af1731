"""A second ``sqlite3`` connection to the file Tortoise's SQLite client has open, set up as the
client sets up its own (its pragmas), for the work the node does beside the ORM: the send
path's batched writes (sends.py) and the single-row reads of every connect (lookups.py).
Neither waits for a lock (``busy_timeout`` 0): each has a way around a busy database."""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import BaseDBAsyncClient

from backend.compat.tortoise import sqlite_file, sqlite_pragmas


def open_beside(client: BaseDBAsyncClient, **pragmas: object) -> sqlite3.Connection | None:
    """A connection to ``client``'s database file with its pragmas, ``busy_timeout`` 0 and
    ``pragmas``; None for an in-memory database, where a second connection would open another
    database. Raises ``sqlite3.Error`` when a pragma cannot be set now (the file busy)."""
    path = sqlite_file(client)
    if path in ("", ":memory:") or "mode=memory" in path:
        return None
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma, value in {**sqlite_pragmas(client), "busy_timeout": 0, **pragmas}.items():
            connection.execute(f"PRAGMA {pragma}={value}")
    except sqlite3.Error:
        connection.close()
        raise
    return connection
