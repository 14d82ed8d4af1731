"""tortoise-orm 1.1.9, aiosqlite 0.22.1 and asyncpg 0.32.0 (pyproject.toml's pins): the ORM's
SQLite client and the drivers under it.

The project relies on:

- ``Tortoise.init(_enable_global_fallback=True)`` (a private keyword): the lifespan opens the
  database in its own task, and request tasks must see the ORM (``init_orm``);
- the SQLite client's private ``_lock`` (the ``asyncio.Lock`` its ``acquire_connection`` and
  transactions hold), and its ``filename`` and ``pragmas``: the send path writes on its own
  connection when the lock is free (``backend/storage/sends.py``, ``InlineWrites``), opened on
  the same file with the same pragmas (``sqlite_lock``, ``sqlite_file``, ``sqlite_pragmas``);
- aiosqlite's private ``Connection._execute`` (runs a function on the connection's worker
  thread) and ``Connection._conn`` (the ``sqlite3.Connection`` there): a whole batch of sends
  is one job on the thread (``run_on_sqlite_thread``, ``GroupCommit``);
- asyncpg's ``Connection.fetchmany(query, args)`` (public), on the connection Tortoise's
  PostgreSQL client hands out (``PostgresTurns``);
- asyncpg's ``PreparedStatement.fetchrow`` as one coroutine (``prepared_row``): upstream's
  checks (the statement closed, its connection released or closed) and its protocol's
  ``bind_execute`` reached through the statement's private ``_state``, ``_connection`` and
  ``_con_release_ctr`` and the connection's ``_protocol`` and ``_pool_release_ctr``;
- ``Model._init_from_db(**row)``: a model instance from a row read with a plain statement, as
  its executors make one (saved, every field converted), for the pages of history read with
  plain statements (``model_from_row``, backend/storage/message_pages.py): the ORM's query
  building costs more than the read; and a relation's object kept in the instance's
  ``_<relation>``, where ``select_related`` puts it (``attach_related``), for the same pages;
- the text its SQLite executor stores for a datetime (the ``sqlite3`` adapter it registers):
  the send path formats a message's stamp once (``sqlite_stamp``) instead of the adapter
  formatting it for each of its four parameters;
- the PostgreSQL client's ``pool_maxsize`` (the send path holds a connection only from a
  pool of two or more, ``pool_size``);
- the PostgreSQL client hands the credentials it does not know to ``asyncpg.create_pool``,
  whose ``reset`` (public, asyncpg 0.30+) replaces the reset query a connection handed back
  to the pool runs otherwise (``pool_reset``).
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite
import asyncpg
from asyncpg.connresource import ConnectionResource  # type: ignore[import-untyped]
from asyncpg.exceptions import OutdatedSchemaCacheError  # type: ignore[attr-defined]
from asyncpg.prepared_stmt import PreparedStatement  # type: ignore[import-untyped]
from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.executor import BaseExecutor
from tortoise.backends.base_postgres.client import BasePostgresClient
from tortoise.backends.sqlite import executor as sqlite_executor
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.models import Model

from backend.compat.assumptions import (
    Assumption,
    Pin,
    accepts,
    assigned,
    holds,
    present,
    signature,
    unchanged,
    version,
)

TORTOISE = Pin("tortoise-orm", "1.1.9")
AIOSQLITE = Pin("aiosqlite", "0.22.1")
ASYNCPG = Pin("asyncpg", "0.32.0")
PINS = [TORTOISE, AIOSQLITE, ASYNCPG]

T = TypeVar("T")
M = TypeVar("M", bound=Model)

__all__ = ["attach_related", "init_orm", "model_from_row", "pool_reset", "pool_size",
           "prepared_row", "release_as_is", "run_on_sqlite_thread", "sqlite_file", "sqlite_lock",
           "sqlite_pragmas", "sqlite_stamp"]


async def init_orm(config: dict[str, Any]) -> None:
    """``Tortoise.init`` with the global fallback context, so that tasks other than the one
    that opened the database (every request's) see the ORM."""
    await Tortoise.init(config=config, _enable_global_fallback=True)


def sqlite_lock(client: BaseDBAsyncClient) -> asyncio.Lock:
    """The SQLite client's connection lock (held while Tortoise's connection is at work)."""
    return client._lock  # type: ignore[attr-defined,no-any-return]  # private, checked


def sqlite_file(client: BaseDBAsyncClient) -> str:
    """The SQLite client's database file (``:memory:`` or a URI for in-memory ones)."""
    return client.filename  # type: ignore[attr-defined,no-any-return]  # SQLite client only


def sqlite_pragmas(client: BaseDBAsyncClient) -> dict[str, Any]:
    """The pragmas the SQLite client sets on its connection."""
    return client.pragmas  # type: ignore[attr-defined,no-any-return]  # SQLite client only


async def run_on_sqlite_thread(connection: Any, job: Callable[..., T], *args: Any) -> T:
    """Run ``job(sqlite3_connection, *args)`` as one job on aiosqlite's worker thread of
    ``connection`` (what ``acquire_connection`` of Tortoise's SQLite client yields)."""
    return await connection._execute(job, connection._conn, *args)  # type: ignore[no-any-return]  # aiosqlite untyped here


def sqlite_stamp(stamp: datetime) -> str:
    """``stamp`` as Tortoise's SQLite executor stores it (the same text its adapter makes, so
    the ORM reads it back alike): a parameter that is already text skips the adapter, ~1 µs
    of CPU each."""
    return stamp.isoformat(" ")


def model_from_row(model: type[M], row: Mapping[str, Any]) -> M:
    """An instance of ``model`` from ``row`` (every column, by column name; a column that is
    not the model's is left out), as the ORM's executors build one from what they read:
    saved in the database, fields converted."""
    return model._init_from_db(**row)


def attach_related(instance: Model, relation: str, related: Model | None) -> None:
    """Give ``instance`` its loaded ``relation`` (a foreign key's object, or None), as the
    ORM's ``select_related`` does: reading ``instance.<relation>`` then returns it."""
    object.__setattr__(instance, f"_{relation}", related)


def _select_related_sets_the_private_attribute() -> bool:
    source = inspect.getsource(BaseExecutor.execute_select)
    return 'object.__setattr__(target, f"_{attr}", obj)' in source


def _init_from_db_builds_a_saved_instance() -> bool:
    # Marks the instance saved (a later ``save`` updates its row) and takes the row's
    # columns as keyword arguments, reading the model's own by name (a page's rows carry the
    # log's position beside them: storage/message_pages.py).
    source = inspect.getsource(Model._init_from_db)
    return ("self._saved_in_db = True" in source and "**kwargs" in source
            and "kwargs[key]" in source)


async def release_as_is(connection: asyncpg.connection.Connection) -> None:
    """The pool's ``reset``: run on a connection handed back to the pool, after asyncpg's own
    clean-up (an open transaction rolled back, listeners dropped); nothing more.

    asyncpg's default sends a query of four statements (advisory locks, cursors, LISTEN,
    settings) in a round trip of its own at every release, and Tortoise acquires and releases
    for every query it runs: a second round trip for each, the send's included, awaited
    before the query's result is returned. The node leaves none of that state on a pooled
    connection: its one advisory lock is taken on a connection of its own (the migration's),
    its settings are ``SET LOCAL`` (a search's plan mode), it declares no cursor and listens
    to nothing through PostgreSQL."""


def pool_size(client: BaseDBAsyncClient) -> int:
    """The most connections the PostgreSQL client's pool opens (1 for any other client)."""
    return int(getattr(client, "pool_maxsize", 1))


def pool_reset() -> dict[str, Any]:
    """The PostgreSQL client's credentials that set the pool's ``reset`` (see
    ``release_as_is``)."""
    return {"reset": release_as_is}


def _postgres_client_passes_extra_to_pool() -> bool:
    from tortoise.backends.asyncpg.client import AsyncpgDBClient

    source = inspect.getsource(AsyncpgDBClient.create_connection)
    return "**self._template" in source and "**self.extra" in inspect.getsource(
        AsyncpgDBClient)


def _sqlite_connection_is_aiosqlite() -> bool:
    # ``acquire_connection`` yields the client's aiosqlite connection (opened in
    # ``create_connection``); the send path hands that connection's thread its own job.
    return "aiosqlite.connect(" in inspect.getsource(SqliteClient.create_connection)


def _sqlite3_connection_on_thread() -> bool:
    return isinstance(aiosqlite.Connection.__dict__.get("_conn"), property) and (
        aiosqlite.Connection._conn.fget.__annotations__.get("return")  # type: ignore[attr-defined]  # a property
        in (sqlite3.Connection, "sqlite3.Connection"))


def _datetime_adapter_is_isoformat() -> bool:
    adapter = sqlite3.adapters.get((datetime, sqlite3.PrepareProtocol))
    sample = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    # Registered by the executor's module (imported above) for every sqlite3 connection.
    return (sqlite_executor.__name__ == "tortoise.backends.sqlite.executor"
            and adapter is not None and adapter(sample) == sqlite_stamp(sample))


async def prepared_row(statement: PreparedStatement, args: Sequence[Any]) -> Any:
    """``statement.fetchrow(*args)``: asyncpg 0.32.0's ``fetchrow``, its ``guarded`` check,
    ``__bind_execute`` and ``__do_execute`` (mirrored) in one coroutine. Upstream goes
    through three coroutine frames, a lambda and three check methods at every execution
    (~7,000 instructions); the same checks here, and a statement or connection that fails
    one goes to upstream's ``fetchrow``, which raises its own error."""
    if type(statement) is not PreparedStatement:  # another kind of statement: its own
        return await statement.fetchrow(*args)
    connection = statement._connection
    state = statement._state
    if (state.closed or connection._pool_release_ctr != statement._con_release_ctr
            or connection.is_closed()):
        return await statement.fetchrow(*args)
    try:
        data, status, _ = await connection._protocol.bind_execute(state, args, "", 1, True,
                                                                  None)
    except OutdatedSchemaCacheError:
        await connection.reload_schema_state()
        state.mark_closed()
        raise
    statement._last_status = status
    return data[0] if data else None


ASSUMPTIONS: list[Assumption] = [
    version(TORTOISE),
    version(AIOSQLITE),
    version(ASYNCPG),
    accepts(TORTOISE, Tortoise, "init", "config", "_enable_global_fallback"),
    assigned(TORTOISE, SqliteClient, "_lock"),
    assigned(TORTOISE, SqliteClient, "filename"),
    assigned(TORTOISE, SqliteClient, "pragmas"),
    signature(TORTOISE, SqliteClient, "acquire_connection", ("self",)),
    holds(TORTOISE, "SqliteClient.create_connection opens an aiosqlite connection",
          _sqlite_connection_is_aiosqlite, "no longer calls aiosqlite.connect"),
    signature(AIOSQLITE, aiosqlite.Connection, "_execute", ("self", "fn", "args", "kwargs")),
    present(AIOSQLITE, aiosqlite.Connection, "_conn"),
    holds(AIOSQLITE, "aiosqlite.Connection._conn is the thread's sqlite3.Connection",
          _sqlite3_connection_on_thread, "is no longer a property returning sqlite3.Connection"),
    holds(TORTOISE, "its SQLite executor stores a datetime as isoformat(' ')",
          _datetime_adapter_is_isoformat, "registers another sqlite3 adapter for datetime"),
    present(TORTOISE, Model, "_init_from_db"),
    holds(TORTOISE, "select_related keeps a relation's object in the instance's _<relation>",
          _select_related_sets_the_private_attribute, "no longer sets it there"),
    holds(TORTOISE, "Model._init_from_db(**row) builds a saved instance from a row's columns",
          _init_from_db_builds_a_saved_instance, "no longer builds one"),
    signature(ASYNCPG, asyncpg.connection.Connection, "fetchmany",
              ("self", "query", "args", "timeout", "record_class")),
    accepts(ASYNCPG, asyncpg, "create_pool", "reset"),
    # prepared_row: fetchrow and the calls under it, mirrored.
    unchanged(ASYNCPG, PreparedStatement, "fetchrow", "e04d3d9268220c13"),
    unchanged(ASYNCPG, PreparedStatement, "_PreparedStatement__bind_execute",
              "4ef91328f65f90fa"),
    unchanged(ASYNCPG, PreparedStatement, "_PreparedStatement__do_execute",
              "1b4990108b440164"),
    unchanged(ASYNCPG, PreparedStatement, "_check_conn_validity", "f60add234ef83aff"),
    unchanged(ASYNCPG, PreparedStatement, "_check_open", "1dc90efc559ffcb0"),
    unchanged(ASYNCPG, ConnectionResource, "_check_conn_validity", "8b3d8cfd1db4b9b7"),
    assigned(ASYNCPG, PreparedStatement, "_state"),
    assigned(ASYNCPG, PreparedStatement, "_last_status"),
    assigned(ASYNCPG, asyncpg.connection.Connection, "_protocol"),
    assigned(TORTOISE, BasePostgresClient, "pool_maxsize"),
    holds(TORTOISE, "the PostgreSQL client passes its other credentials to create_pool",
          _postgres_client_passes_extra_to_pool, "no longer passes them on"),
]
