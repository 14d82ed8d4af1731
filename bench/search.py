"""The search scenario: query time of ``GET /api/v1/chat/search`` over a million messages.

``python3 bench/run.py --scenario search --db sqlite|postgres [--messages N --rounds R]``

The data: users and group conversations through ``bench/fixtures.py`` (1,000 conversations of
two users), then the messages loaded with direct SQL in large batches (not through the API,
which would take hours): ``--messages`` rows, conversation ``i % 1000``, sent by one of its two
users, stamped over the last 365 days in id order, 2 % with a file. Their text is 4 to 20 words
drawn from a 20,000-word vocabulary with Zipf-like frequencies (word of rank r about as
frequent as 1/r), fixed by a seed, so common words match a large share of the messages and
rare ones a few. The search index is kept by the migration's triggers during the load, as
sends keep it (PostgreSQL: the GIN index is made after the load, as a restore would).

Two readers: ``member`` is in 100 of the conversations (a tenth of the messages), ``wide`` in
all 1,000. Each query of ``QUERIES`` is asked by both, ``--rounds`` times, one at a time,
through the real HTTP route of a node pinned to CPU 0 (as the other scenarios): the figures
are the client's wall time per request, p50/p95/max over all of them and per query, with
the number of hits the first page found.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

SEED = 20261206
VOCABULARY = 20_000
CONVERSATIONS = 1_000
#: One in this many conversations holds the ``member`` reader.
MEMBER_EVERY = 10
BATCH = 50_000

COLUMNS = ("conversation_id", "sender_type", "sender_key", "sender_user_id", "content",
           "message_type", "media_url", "mentions", "metadata", "is_urgent", "status",
           "is_edited", "is_deleted", "delivery_status", "delivery_error", "created_at")


def vocabulary() -> list[str]:
    """Distinct made-up words, in rank order (the first is the most frequent)."""
    rng = random.Random(SEED)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


WORDS = vocabulary()


@dataclass(frozen=True)
class Query:
    """One query of the set: its label, its text and its filters (``{member_conversation}``,
    ``{sender}`` and ``{recent}`` are filled in per reader)."""

    label: str
    params: dict[str, str]


QUERIES = [
    Query("rare word", {"q": WORDS[15_000]}),
    Query("medium word", {"q": WORDS[500]}),
    Query("common word", {"q": WORDS[20]}),
    Query("most common word", {"q": WORDS[0]}),
    Query("two words", {"q": f"{WORDS[20]} {WORDS[300]}"}),
    Query("three words", {"q": f"{WORDS[5]} {WORDS[50]} {WORDS[200]}"}),
    Query("prefix", {"q": WORDS[40][:4]}),
    Query("common, one conversation", {"q": WORDS[20], "conversation_id": "{member_conversation}"}),
    Query("common, by sender", {"q": WORDS[20], "sender_id": "{sender}"}),
    Query("common, last 30 days, no file", {"q": WORDS[20], "after": "{recent}",
                                            "has_file": "false"}),
    Query("common, newest first", {"q": WORDS[20], "sort": "newest"}),
    Query("common, second page", {"q": WORDS[20], "cursor": "{next}"}),
]


def contents(count: int) -> list[str]:
    rng = random.Random(SEED + 1)
    weights = [1.0 / (rank + 1) for rank in range(VOCABULARY)]
    cum = list(_accumulate(weights))
    lengths = [rng.randint(4, 20) for _ in range(count)]
    drawn = rng.choices(WORDS, cum_weights=cum, k=sum(lengths))
    out, at = [], 0
    for length in lengths:
        out.append(" ".join(drawn[at:at + length]))
        at += length
    return out


def _accumulate(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


@dataclass
class Layout:
    """Who is where: each conversation's two senders, and the readers."""

    conversations: list[int]
    senders: dict[int, tuple[int, int]]
    member: dict[str, Any]
    wide: dict[str, Any]


def layout(clients: list[Any]) -> Layout:
    """From the fixtures' clients (two per conversation, the readers apart)."""
    readers, pairs = clients[:2], clients[2:]
    by_conversation: dict[int, list[int]] = {}
    for client in pairs:
        by_conversation.setdefault(client.conversation_id, []).append(client.user_id)
    conversations = sorted(by_conversation)
    senders = {cid: (users[0], users[-1]) for cid, users in by_conversation.items()}
    member, wide = readers
    return Layout(conversations, senders,
                  {"user_id": member.user_id, "token": member.token},
                  {"user_id": wide.user_id, "token": wide.token})


def rows(plan: Layout, count: int, start: datetime) -> list[tuple[Any, ...]]:
    texts = contents(count)
    span = timedelta(days=365).total_seconds()
    out = []
    for i, text in enumerate(texts):
        cid = plan.conversations[i % len(plan.conversations)]
        sender = plan.senders[cid][i % 2]
        stamp = start + timedelta(seconds=span * i / count)
        media = "https://example.com/f.png" if i % 50 == 0 else ""
        out.append((cid, "user", f"user:{sender}", sender, text,
                    "image" if media else "text", media, "[]", "{}", False, "sent", False,
                    False, "none", "", stamp))
    return out


def memberships(plan: Layout) -> list[tuple[int, int]]:
    """(conversation, user) rows to add: the wide reader everywhere, the member in a tenth."""
    added = [(cid, plan.wide["user_id"]) for cid in plan.conversations]
    added += [(cid, plan.member["user_id"]) for cid in plan.conversations[::MEMBER_EVERY]]
    return added


async def load_postgres(url: str, plan: Layout, data: list[tuple[Any, ...]]) -> None:
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        columns = [r["column_name"] for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            "'participants' AND column_name NOT IN ('id', 'conversation_id', 'user_id')")]
        template = await db.fetchval('SELECT min("id") FROM "participants"')
        cols = ", ".join(f'"{c}"' for c in columns)
        await db.executemany(
            f'INSERT INTO "participants" ("conversation_id", "user_id", {cols}) '
            f'SELECT $1, $2, {cols} FROM "participants" WHERE "id" = $3',
            [(cid, uid, template) for cid, uid in memberships(plan)])
        await db.execute('DROP INDEX "messages_search_vector"')
        for at in range(0, len(data), BATCH):
            await db.copy_records_to_table("messages", records=data[at:at + BATCH],
                                           columns=list(COLUMNS))
        await db.execute('CREATE INDEX "messages_search_vector" ON "messages" '
                         'USING GIN ("search_vector")')
        await db.execute('ANALYZE "messages"')
    finally:
        await db.close()


def load_sqlite(path: str, plan: Layout, data: list[tuple[Any, ...]]) -> None:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        columns = [r[1] for r in db.execute('PRAGMA table_info("participants")')
                   if r[1] not in ("id", "conversation_id", "user_id")]
        template = db.execute('SELECT min("id") FROM "participants"').fetchone()[0]
        cols = ", ".join(f'"{c}"' for c in columns)
        with db:
            db.executemany(
                f'INSERT INTO "participants" ("conversation_id", "user_id", {cols}) '
                f'SELECT ?, ?, {cols} FROM "participants" WHERE "id" = ?',
                [(cid, uid, template) for cid, uid in memberships(plan)])
        insert = (f'INSERT INTO "messages" ({", ".join(COLUMNS)}) '
                  f'VALUES ({", ".join("?" for _ in COLUMNS)})')
        for at in range(0, len(data), BATCH):
            with db:  # one transaction per batch; the triggers index each row
                db.executemany(insert, [(*row[:-1], row[-1].isoformat(" "))
                                        for row in data[at:at + BATCH]])
        db.execute('ANALYZE')
        db.commit()
    finally:
        db.close()


def _fill(params: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    return {k: v.format(**values) if "{" in v else v for k, v in params.items()}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(base_url: str, plan: Layout, rounds: int, say: Any) -> dict[str, Any]:
    """Every query of the set, by both readers, ``rounds`` times: wall times in ms."""
    recent = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    samples: dict[str, list[float]] = {q.label: [] for q in QUERIES}
    hits: dict[str, dict[str, int]] = {q.label: {} for q in QUERIES}
    with httpx.Client(base_url=base_url, timeout=120) as http:
        readers = {"member": plan.member, "wide": plan.wide}
        cursors: dict[str, str] = {}
        for name, reader in readers.items():  # the second page's cursors
            first = http.get("/api/v1/chat/search", params={"q": WORDS[20]},
                             headers={"Authorization": f"Bearer {reader['token']}"})
            first.raise_for_status()
            cursors[name] = first.json()["next_cursor"] or ""
        for round_no in range(rounds + 1):  # round 0 warms the caches, not counted
            for query in QUERIES:
                for name, reader in readers.items():
                    conversation = plan.conversations[0]
                    values = {"member_conversation": str(conversation),
                              "sender": str(plan.senders[conversation][0]),
                              "recent": recent, "next": cursors[name]}
                    params = _fill(query.params, values)
                    started = time.perf_counter()
                    response = http.get("/api/v1/chat/search", params=params, headers={
                        "Authorization": f"Bearer {reader['token']}"})
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise RuntimeError(f"{query.label}: {response.status_code} "
                                           f"{response.text[:300]}")
                    if round_no:
                        samples[query.label].append(elapsed)
                    hits[query.label][name] = len(response.json()["results"])
            if round_no:
                say(f"  round {round_no}/{rounds}: p95 so far "
                    f"{percentile([s for v in samples.values() for s in v], 0.95):.1f} ms")
    everything = [s for values in samples.values() for s in values]
    return {
        "queries": len(everything),
        "p50_ms": round(statistics.median(everything), 1),
        "p95_ms": round(percentile(everything, 0.95), 1),
        "max_ms": round(max(everything), 1),
        "per_query": {label: {"p50_ms": round(statistics.median(values), 1),
                              "p95_ms": round(percentile(values, 0.95), 1),
                              "first_page_hits": hits[label]}
                      for label, values in samples.items()},
    }


def run(args: Any, db: str, database_url: str, run_dir: Path, secret: str,
        say: Any) -> dict[str, Any]:
    """The whole scenario on one database: fixtures, load, node, queries."""
    from bench import fixtures, nodes

    started = time.monotonic()
    shape = fixtures.Shape(2 * CONVERSATIONS + 2, 2)
    made = fixtures.build_in_subprocess(database_url, run_dir / f"{db}-setup", secret,
                                        {"search": shape})
    plan = layout(made.scenarios["search"])
    say(f"[search {db}] fixtures ready in {time.monotonic() - started:.1f} s; making "
        f"{args.messages:,} messages")
    started = time.monotonic()
    data = rows(plan, args.messages, datetime.now(UTC) - timedelta(days=365))
    made_s = time.monotonic() - started
    started = time.monotonic()
    if db == "postgres":
        asyncio.run(load_postgres(database_url, plan, data))
    else:
        load_sqlite(database_url.removeprefix("sqlite://"), plan, data)
    load_s = time.monotonic() - started
    del data
    say(f"[search {db}] texts made in {made_s:.1f} s, loaded and indexed in {load_s:.1f} s")
    node = nodes.start_node(run_dir / f"{db}-search-node", nodes.node_env(database_url, secret),
                            args.server_cpus)
    try:
        figures = measure(node.base_url, plan, args.rounds, say)
    finally:
        node.stop()
    return {"scenario": "search", "db": db, "messages": args.messages,
            "conversations": CONVERSATIONS, "rounds": args.rounds, "load_s": round(load_s, 1),
            **figures}


def summary(figures: dict[str, Any]) -> str:
    lines = [f"{figures['messages']:,} messages, {figures['queries']} queries: p50 "
             f"{figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, max {figures['max_ms']} ms "
             f"(load {figures['load_s']} s)"]
    for label, q in figures["per_query"].items():
        lines.append(f"    {label:32} p50 {q['p50_ms']:8.1f} ms  p95 {q['p95_ms']:8.1f} ms  "
                     f"hits {json.dumps(q['first_page_hits'])}")
    return "\n".join(lines)
