"""The database: Tortoise configuration, start-up, migrations and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import Any

from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as run_migrations
from tortoise.migrations.api import plan as plan_migrations

from backend.compat.tortoise import init_orm, pool_reset
from backend.settings import Settings
from backend.storage import lookups, sends
from backend.storage.checkpoints import AUTOCHECKPOINT_PAGES, JOURNAL_SIZE_LIMIT, Checkpointer
from models import MODEL_MODULES

log = logging.getLogger("confab.database")


def tortoise_config(settings: Settings, *, migrating: bool = False) -> dict[str, Any]:
    """The Tortoise ORM configuration for ``settings.database_url``.

    Every statement and every connect is bounded by ``DB_TIMEOUT_SECONDS`` (asyncpg's
    ``command_timeout`` and ``timeout``; SQLite's busy timeout), so a hung database fails a
    request instead of holding it. ``migrating`` lifts the statement bound (a migration may
    rewrite a large table) but keeps the connect bound."""
    url = settings.database_url
    timeout = settings.db_timeout_seconds
    if url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        _scheme, rest = url.split("://", 1)
        credentials: dict[str, Any] = {
            "minsize": 1, "maxsize": settings.db_pool_size,
            "timeout": timeout,  # connect, startup and authentication included
            # Also bounds asyncpg's cancel of a timed-out query; past it the connection is
            # dropped rather than returned to the pool half-way through a statement.
            "command_timeout": None if migrating else timeout,
            # A connection goes back to the pool without a reset query of its own (a round
            # trip after every query): backend/compat/tortoise.py, ``release_as_is``.
            **pool_reset(),
        }
        connection: Any = _postgres_connection(f"postgres://{rest}", credentials)
    else:
        path = _sqlite_file(url)
        if path is not None:
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = {
            "engine": "tortoise.backends.sqlite",
            "credentials": {
                "file_path": url.removeprefix("sqlite://"),
                # First, so the pragmas below wait no longer than this for a lock either.
                "busy_timeout": round(timeout * 1000),
                # WAL lets readers proceed during a write; NORMAL sync is durable in WAL mode
                # against process crashes, which is what an acknowledged message needs.
                "journal_mode": "WAL",
                "synchronous": "NORMAL",
                # Checkpoints run in the background (checkpoints.py); the writer's own is
                # the backstop.
                "wal_autocheckpoint": AUTOCHECKPOINT_PAGES,
                "journal_size_limit": JOURNAL_SIZE_LIMIT,
                "foreign_keys": "ON",
            },
        }
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _postgres_connection(url: str, extra: dict[str, Any]) -> dict[str, Any]:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    credentials = {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password or ""),
        "database": parsed.path.lstrip("/") or "postgres",
        **extra,
    }
    for pair in filter(None, parsed.query.split("&")):
        key, _, value = pair.partition("=")
        if key == "schema":
            credentials["schema"] = value
        elif key == "host":  # a unix socket directory
            credentials["host"] = unquote(value)
    return {"engine": "tortoise.backends.asyncpg", "credentials": credentials}


# Any fixed number: the PostgreSQL advisory lock nodes take while they migrate.
MIGRATION_LOCK = 0x636F6E666162


async def migrate(settings: Settings) -> None:
    """Apply every pending migration (idempotent). On PostgreSQL, nodes starting together take
    turns under an advisory lock, so only the first one migrates."""
    config = tortoise_config(settings, migrating=True)
    connection = config["connections"]["default"]
    if connection["engine"] != "tortoise.backends.asyncpg":
        await run_migrations(config=config)
        await Tortoise.close_connections()
        return
    import asyncpg

    credentials = {k: v for k, v in connection["credentials"].items()
                   if k in ("host", "port", "user", "password", "database", "timeout")}
    lock = await asyncpg.connect(**credentials)
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await run_migrations(config=config)
            await Tortoise.close_connections()
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await lock.close()


class NotMigrated(RuntimeError):
    """The database lacks migrations of this release, and the node does not apply them
    (production: ``confab migrate`` first)."""


async def pending_migrations(settings: Settings) -> list[str] | None:
    """The migrations this release has that the database lacks, by name (Tortoise's
    ``plan``, which marks each step to apply with ``+``; what it prints is kept off stdout).
    None when the database does not answer now: ``plan`` then reads no applied migration
    and lists them all, which says nothing (the node starts; ``/readyz`` tells)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            lines = await plan_migrations(config=tortoise_config(settings))
        pending = [line[2:].strip() for line in lines if line.startswith("+ ")]
        if pending and not await _select_one():
            return None
        return pending
    finally:
        await Tortoise.close_connections()


async def open_database(settings: Settings, *, apply_migrations: bool) -> None:
    """Connect; on the embedded default, bring the schema up to date first. Otherwise refuse
    (``NotMigrated``) a database without every migration of this release: a node would
    answer its health checks and fail every request."""
    global _probe_timeout, _checkpointer
    _probe_timeout = settings.db_timeout_seconds
    if apply_migrations:
        await migrate(settings)
    elif (pending := await pending_migrations(settings)) is None:
        log.warning("the database does not answer: its migrations were not checked")
    elif pending:
        raise NotMigrated(
            f"the database lacks {len(pending)} migration(s) of this release "
            f"({', '.join(pending[:3])}{', …' if len(pending) > 3 else ''}): "
            "run `confab migrate` first")
    # The lifespan runs in its own task; the global fallback lets request tasks see the ORM.
    await init_orm(tortoise_config(settings))
    path = _sqlite_file(settings.database_url)
    if path is not None:
        _checkpointer = Checkpointer(path)
        _checkpointer.start()
    log.info("database open", extra={"engine": settings.database_url.split("://", 1)[0]})


async def close_database() -> None:
    global _checkpointer
    if _checkpointer is not None:
        await _checkpointer.stop()
        _checkpointer = None
    await sends.close()
    await lookups.close()
    await Tortoise.close_connections()


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite database URL; None for PostgreSQL or an in-memory database."""
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://")
    return None if path in (":memory:", "") else path


#: Background WAL checkpoints of the SQLite file, while the database is open.
_checkpointer: Checkpointer | None = None


#: How long a readiness probe waits (``DB_TIMEOUT_SECONDS``, set when the database opens).
_probe_timeout = 5.0
#: The probe query in flight, shared by the probes that arrive while it runs.
_probe: asyncio.Task[bool] | None = None


async def database_ready() -> bool:
    """True when a trivial query succeeds within ``DB_TIMEOUT_SECONDS``.

    The answer is bounded even when the database hangs: the query runs in a task of its own,
    which the driver's timeouts end later; the caller stops waiting at the timeout. Probes
    arriving meanwhile (load balancers, scrapes) wait on that same query instead of piling
    more onto a database that is not answering."""
    global _probe
    loop = asyncio.get_running_loop()
    if _probe is None or _probe.done() or _probe.get_loop() is not loop:
        _probe = loop.create_task(_select_one())
    try:
        return await asyncio.wait_for(asyncio.shield(_probe), _probe_timeout)
    except TimeoutError:
        return False


async def _select_one() -> bool:
    try:
        await get_connection("default").execute_query("SELECT 1")
    except Exception:  # any driver error means "not ready"; /readyz reports it
        return False
    return True
