"""SQLite: WAL checkpoints off the write path.

In WAL mode a commit only appends to the log; a *checkpoint* copies the log back into the
database file and syncs both files. By default SQLite runs it inside the commit that takes the
log past 1,000 pages: at 1,000 messages a second that is several commits a second taking
3-8 ms instead of ~0.1 ms, and every send queued behind them waits as long (it was the rooms
benchmark's p99).

``Checkpointer`` runs PASSIVE checkpoints every ``INTERVAL_SECONDS`` on a connection and a
thread of its own: they copy without blocking the writer. The writer's own automatic
checkpoint stays, further out (``AUTOCHECKPOINT_PAGES``), because SQLite starts the log over
only once it has been copied to its very end, which a pass running while sends keep arriving
rarely reaches: the writer's checkpoint is what restarts it, with only the pages since the
last pass left to copy. The log file keeps its size between restarts (``JOURNAL_SIZE_LIMIT``):
truncating it and growing it again costs the writer file-system work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("confab.database")

#: The writer connection's ``wal_autocheckpoint``, in pages (SQLite's default is 1,000).
AUTOCHECKPOINT_PAGES = 4000
#: Bytes of log file kept after a restart (Tortoise's default is 16 KiB).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: How often the background pass runs. A pass with nothing to copy costs a few microseconds.
INTERVAL_SECONDS = 0.1


class Checkpointer:
    """Background PASSIVE checkpoints of one SQLite database file (see the module doc)."""

    def __init__(self, path: str, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        # One thread, so the connection stays on the thread that opened it.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: The last pass's (busy, log pages, pages copied), for the tests and the curious.
        self.last: tuple[int, int, int] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-checkpoint")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        copied: tuple[int, int] | None = None  # the log as it was when last copied whole
        while True:
            await asyncio.sleep(self.interval)
            mark = self._log_mark()
            if mark is not None and mark == copied:
                # Nothing written since the log was copied whole: no pass, and no hand-over
                # to the checkpoint thread, whose wake-up took the event loop's GIL from it
                # ten times a second on an idle node.
                continue
            copied = None
            try:
                self.last = await loop.run_in_executor(self._thread, self.checkpoint)
                if self.last[0] == 0 and self.last[1] == self.last[2]:
                    copied = mark
            except sqlite3.Error as exc:
                # The writer's own checkpoint still runs; say it once, not ten times a second.
                if not self._failing:
                    log.warning("background WAL checkpoint failed: %s", exc)
                self._failing = True
            else:
                self._failing = False

    def _log_mark(self) -> tuple[int, int] | None:
        """The log file's size and modification time (None: no log file): a commit appends
        to the log, so a mark unchanged since a pass copied it whole means nothing to copy.
        Where timestamps are coarse a commit that rewrites the log from its start within the
        same tick is missed until the next commit: its pages wait, copied by the next pass
        or by the writer's own checkpoint."""
        try:
            stat = os.stat(f"{self.path}-wal")
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE pass (runs in the checkpoint thread): SQLite's (busy, log pages,
        pages copied)."""
        if self._connection is None:
            self._connection = sqlite3.connect(self.path, isolation_level=None)
        row = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
