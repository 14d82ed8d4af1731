#!/usr/bin/env python3
"""What the search index adds to each send: the database's work for one message insert, with
and without migration 0010's triggers.

``python3 bench/search_trigger_cost.py [--inserts 20000] [--repeats 5]`` (in the project's venv)

SQLite: two fresh files migrated as the server migrates them, the triggers dropped from one;
then ``--inserts`` single-row inserts of the send path's shape, each its own transaction (as a
lone send commits; ``--batch N``: N per transaction, as a burst is group-committed), timed
with ``time.process_time`` (this process runs SQLite, so that is all of its CPU).
PostgreSQL: one fresh database, the same inserts one statement at a time in a server-side
loop (one backend, CPU-bound: its wall time is its CPU), with the trigger and after dropping
it. The runs alternate; the medians are printed. Texts: bench/search.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.search import COLUMNS, contents  # noqa: E402
from bench.services import _with_database, postgres_admin_url  # noqa: E402

SQLITE_TRIGGERS = ("message_search_insert", "message_search_update", "message_search_delete")


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "backend", "migrate"], cwd=ROOT, check=True,
                   env={**os.environ, **env}, capture_output=True)


def sqlite_file(folder: Path, triggers: bool) -> Path:
    folder.mkdir(parents=True)
    migrate({"DATA_DIR": str(folder), "DATABASE_URL": f"sqlite://{folder}/chat.sqlite3"})
    path = folder / "chat.sqlite3"
    if not triggers:
        with sqlite3.connect(path) as db:
            for name in SQLITE_TRIGGERS:
                db.execute(f'DROP TRIGGER "{name}"')
    return path


def row(text: str, stamp: datetime) -> tuple[object, ...]:
    return (1, "user", "user:1", 1, text, "text", "", "[]", "{}", False, "sent", False,
            False, "none", "", stamp.isoformat(" "))


def sqlite_run(path: Path, texts: list[str], batch: int) -> float:
    """CPU seconds per insert, ``batch`` inserts per transaction."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=OFF")  # no conversation or user rows: the same in both
    insert = (f'INSERT INTO "messages" ({", ".join(COLUMNS)}) '
              f'VALUES ({", ".join("?" for _ in COLUMNS)})')
    stamp = datetime.now(UTC)
    rows = [row(text, stamp) for text in texts]
    started = time.process_time()
    for at in range(0, len(rows), batch):
        db.execute("BEGIN")
        for values in rows[at:at + batch]:
            db.execute(insert, values)
        db.execute("COMMIT")
    spent = time.process_time() - started
    db.close()
    return spent / len(texts)


async def postgres_runs(texts: list[str], repeats: int) -> tuple[list[float], list[float]]:
    import asyncpg

    admin = postgres_admin_url()
    name = f"confab_trigger_cost_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(admin)
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    url = _with_database(admin, name)
    try:
        await asyncio.to_thread(migrate, {"DATABASE_URL": url, "DATA_DIR": tempfile.mkdtemp()})
        db = await asyncpg.connect(url)
        await db.execute('ALTER TABLE "messages" DROP CONSTRAINT '
                         '"messages_conversation_id_fkey"')
        await db.execute('ALTER TABLE "messages" DROP CONSTRAINT '
                         '"messages_sender_user_id_fkey"')
        await db.execute('CREATE TABLE "texts" ("n" int PRIMARY KEY, "t" text)')
        await db.copy_records_to_table("texts", records=list(enumerate(texts)))
        loop = (
            f"DO $$ BEGIN FOR i IN 0..{len(texts) - 1} LOOP "
            'INSERT INTO "messages" ("conversation_id", "sender_type", "sender_key", '
            '"sender_user_id", "content", "message_type", "media_url", "mentions", '
            '"metadata", "is_urgent", "status", "is_edited", "is_deleted", '
            '"delivery_status", "delivery_error", "created_at") SELECT 1, \'user\', '
            "'user:1', 1, \"t\", 'text', '', '[]', '{}', false, 'sent', false, false, "
            "'none', '', now() FROM \"texts\" WHERE \"n\" = i; END LOOP; END $$"
        )
        with_trigger: list[float] = []
        without: list[float] = []
        create = ('CREATE TRIGGER "message_search_vector" BEFORE INSERT OR UPDATE OF '
                  '"content" ON "messages" FOR EACH ROW EXECUTE FUNCTION '
                  '"message_search_vector"()')
        for _ in range(repeats):
            for triggered, into in ((True, with_trigger), (False, without)):
                await db.execute('DROP TRIGGER IF EXISTS "message_search_vector" '
                                 'ON "messages"')
                if triggered:
                    await db.execute(create)
                await db.execute('TRUNCATE "messages" CASCADE')
                started = time.perf_counter()
                await db.execute(loop)
                into.append((time.perf_counter() - started) / len(texts))
        await db.close()
        return with_trigger, without
    finally:
        connection = await asyncpg.connect(admin)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


def report(engine: str, with_trigger: list[float], without: list[float]) -> None:
    a, b = statistics.median(with_trigger) * 1e6, statistics.median(without) * 1e6
    print(f"{engine}: {a:.1f} µs per insert with the search trigger, {b:.1f} µs without: "
          f"+{a - b:.1f} µs (+{(a - b) / b * 100:.0f} %); runs with "
          f"{[round(x * 1e6, 1) for x in with_trigger]}, without "
          f"{[round(x * 1e6, 1) for x in without]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inserts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1,
                        help="SQLite: inserts per transaction (the server commits a burst of "
                             "sends together)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    texts = contents(args.inserts)
    if args.db in ("sqlite", "both"):
        with_trigger: list[float] = []
        without: list[float] = []
        with tempfile.TemporaryDirectory() as folder:
            for n in range(args.repeats):
                for triggered, into in ((True, with_trigger), (False, without)):
                    path = sqlite_file(Path(folder) / f"{n}-{triggered}", triggered)
                    into.append(sqlite_run(path, texts, args.batch))
        report(f"sqlite ({args.batch} per transaction)", with_trigger, without)
    if args.db in ("postgres", "both"):
        report("postgres", *asyncio.run(postgres_runs(texts, args.repeats)))


if __name__ == "__main__":
    main()
