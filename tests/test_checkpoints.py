"""SQLite's WAL checkpoints run in the background, not inside the commits of sends."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tortoise import connections

from backend.storage import database
from backend.storage.checkpoints import AUTOCHECKPOINT_PAGES, Checkpointer
from tests.support.in_process import opened, users


async def wait_for_copy(checkpointer: Checkpointer, at_least: int) -> tuple[int, int, int]:
    """The first pass that has copied the whole log, once it holds ``at_least`` pages."""
    async with asyncio.timeout(10):
        while True:
            last = checkpointer.last
            if last is not None and last[1] >= at_least and last[2] == last[1]:
                return last
            await asyncio.sleep(0.01)


async def test_a_background_pass_copies_the_log_without_the_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "wal.sqlite3")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the writer never checkpoints here
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    checkpointer = Checkpointer(path, interval=0.01)
    checkpointer.start()
    try:
        for _ in range(200):
            writer.execute("INSERT INTO t (body) VALUES (?)", ("x" * 2000,))
        busy, log_pages, copied = await wait_for_copy(checkpointer, at_least=100)
        assert busy == 0 and copied == log_pages
        # The copy is in the database file: a reader of the file alone (no log) sees it.
        writer.close()
    finally:
        await checkpointer.stop()
    reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    reader.close()


async def test_passes_wait_while_the_log_is_unchanged_since_a_full_copy(
    tmp_path: Path
) -> None:
    """An idle database is not checkpointed ten times a second: once a pass copied the whole
    log, the next runs when the log file changes (or after ``IDLE_PASS_SECONDS``)."""
    path = str(tmp_path / "idle.sqlite3")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    checkpointer = Checkpointer(path, interval=0.01)
    checkpointer.start()
    try:
        writer.execute("INSERT INTO t (body) VALUES ('a')")
        await wait_for_copy(checkpointer, at_least=1)
        await asyncio.sleep(0.1)  # the pass that follows the last change, if one is under way
        passes = checkpointer.passes
        await asyncio.sleep(0.3)  # thirty intervals: thirty passes if none were skipped
        assert checkpointer.passes == passes
        writer.execute("INSERT INTO t (body) VALUES (?)", ("b" * 5000,))
        async with asyncio.timeout(10):
            while True:  # the changed log is copied
                if checkpointer.passes > passes:
                    break
                await asyncio.sleep(0.01)
        writer.close()
    finally:
        await checkpointer.stop()


async def test_the_server_database_checkpoints_in_the_background(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'chat.sqlite3'}"
    async with opened(url, tmp_path):
        client = connections.get("default")
        _, rows = await client.execute_query("PRAGMA wal_autocheckpoint")
        assert rows[0][0] == AUTOCHECKPOINT_PAGES
        checkpointer = database._checkpointer
        assert checkpointer is not None
        await users(50)
        await wait_for_copy(checkpointer, at_least=1)
    assert database._checkpointer is None  # stopped with the database

