"""A PostgreSQL pool connection kept between statements by one path of the node."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient

from backend.compat.tortoise import pool_size


def usable(connection: Any) -> bool:
    """Whether the held connection can run a query: not closed (a cut connection is, once
    asyncpg saw it go), and still the pool's (a pool closed after an outage, and made anew,
    takes its connections back from whoever holds them)."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:  # "connection has been released back to the pool"
        return False


class HeldConnection:
    """One pool connection a path keeps while its statements keep coming (the send path's
    writes, the connect's reads): taken from the pool at the first use, handed back once no
    one has used it for ``LINGER_SECONDS``, when it fails, and when the database closes. Not
    held at all from a pool smaller than ``min_pool``, which everything else needs too. Used
    by one caller at a time: a caller that finds it busy takes a pool connection, as before.

    Tortoise acquires and releases a pool connection for every statement it runs (asyncpg's
    pool: a dozen coroutine frames each way); a held one skips both."""

    #: How long it stays out of the pool unused.
    LINGER_SECONDS = 1.0

    def __init__(self, min_pool: int) -> None:
        self.min_pool = min_pool
        self._client: BaseDBAsyncClient | None = None
        self._wrapper: Any = None
        self._connection: Any = None
        self._busy = False
        self._taking = False
        self._used = False
        #: Writes on the connection since it was taken from the pool.
        self.uses = 0
        #: A statement its user prepared on it (asyncpg's ``PreparedStatement``), or None.
        self.statement: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        #: The connection (and its pool wrapper) a write was using when the database
        #: closed: handed back when that write ends.
        self._orphan: tuple[Any, Any] | None = None

    async def take(self, client: BaseDBAsyncClient) -> Any:
        """The held connection, now this caller's, or None (busy, being taken, or not
        held for this pool): then use the pool."""
        if self._busy or self._taking:
            return None
        if self._connection is not None and self._client is client and usable(
                self._connection):
            self._busy = self._used = True
            self.uses += 1
            return self._connection
        if self._connection is not None:  # closed, its pool gone, or the database reopened
            self._release_later()
        if pool_size(client) < self.min_pool:
            return None
        self._taking = True
        try:
            wrapper = client.acquire_connection()
            connection = await wrapper.__aenter__()
        finally:
            self._taking = False
        self._client, self._wrapper, self._connection = client, wrapper, connection
        self._busy = self._used = True
        self.uses = 1
        self._timer = asyncio.get_running_loop().call_later(self.LINGER_SECONDS, self._idle)
        return connection

    def give_back(self, connection: Any) -> None:
        """The caller is done with it."""
        if connection is self._connection:
            self._busy = False
        elif self._orphan is not None and self._orphan[0] is connection:
            self._release_later(self._take_orphan())

    async def drop(self, connection: Any) -> None:
        """It failed under the caller: back to the pool, which closes it if it is broken."""
        if connection is self._connection:
            await self._release(self._forget())
        elif self._orphan is not None and self._orphan[0] is connection:
            await self._release(self._take_orphan())

    def _take_orphan(self) -> Any:
        assert self._orphan is not None
        wrapper = self._orphan[1]
        self._orphan = None
        return wrapper

    def _idle(self) -> None:
        """The linger timer: hand the connection back if no send used it since the last
        tick (and none is using it now)."""
        self._timer = None
        if self._connection is None:
            return
        if self._used or self._busy:
            self._used = False
            self._timer = asyncio.get_running_loop().call_later(self.LINGER_SECONDS, self._idle)
            return
        self._release_later()

    def _forget(self) -> Any:
        wrapper = self._wrapper
        if self._timer is not None:
            self._timer.cancel()
        self._client = self._wrapper = self._connection = self._timer = None
        self._busy = self._used = False
        self.uses = 0
        self.statement = None  # bound to that holding of the connection
        return wrapper

    def _release_later(self, wrapper: Any = None) -> None:
        if wrapper is None:
            wrapper = self._forget()
        task = asyncio.ensure_future(self._release(wrapper))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _release(wrapper: Any) -> None:
        with contextlib.suppress(Exception):  # its pool closed meanwhile: nothing to hand back
            await wrapper.__aexit__(None, None, None)

    async def close(self) -> None:
        """Hand the connection back now (the pool's close waits for every connection)."""
        if self._connection is not None:
            if self._busy:  # a write is under way: it hands the connection back when done
                self._orphan = (self._connection, self._wrapper)
                self._forget()
            else:
                self._release_later()
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
