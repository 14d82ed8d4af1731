"""Messages persisted during a measured window, counted in the database itself.

The server's CPU divided by what it stored in the window is its CPU per persisted message,
whatever the fan-out: the project's ``messages`` table, or the Node reference's own
``ref_messages`` (bench/js/reference-sio.js). The counter reads the largest id when the window
opens and counts the rows above it when it closes, on a connection opened beforehand, so that
the two reads cost the window milliseconds, not a connection set-up each.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any


class StoredCounter:
    """Rows of ``table`` added between ``start()`` and ``stop()``; with no table (a server
    that stores nothing), ``stop()`` gives None."""

    def __init__(self, database_url: str, table: str | None) -> None:
        if table is not None and not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self.database_url = database_url
        self.table = table
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pg: Any = None
        self._lite: sqlite3.Connection | None = None
        self._first = 0

    def open(self) -> None:
        if self.table is None:
            return
        if self.database_url.startswith("sqlite://"):
            path = self.database_url.removeprefix("sqlite://")
            self._lite = sqlite3.connect(path)
            return
        import asyncpg

        self._loop = asyncio.new_event_loop()
        self._pg = self._loop.run_until_complete(asyncpg.connect(self.database_url, timeout=5))

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend of this counter (left out of the database's CPU)."""
        return int(self._pg.get_server_pid()) if self._pg is not None else None

    def _scalar(self, sql: str, *params: int) -> int:
        if self._lite is not None:
            row = self._lite.execute(sql.replace("$1", "?"), params).fetchone()
            return int(row[0] or 0)
        assert self._loop is not None and self._pg is not None
        return int(self._loop.run_until_complete(self._pg.fetchval(sql, *params)) or 0)

    def start(self) -> None:
        if self.table is not None:
            self._first = self._scalar(f"SELECT max(id) FROM {self.table}")

    def stop(self) -> int | None:
        """Rows stored since ``start()``."""
        if self.table is None:
            return None
        return self._scalar(f"SELECT count(*) FROM {self.table} WHERE id > $1", self._first)

    def close(self) -> None:
        if self._lite is not None:
            self._lite.close()
            self._lite = None
        if self._loop is not None:
            if self._pg is not None:
                self._loop.run_until_complete(self._pg.close())
                self._pg = None
            self._loop.close()
            self._loop = None
