#!/usr/bin/env python3
"""The send path's write cost on SQLite, alone: CPU µs per message of ``insert_message``.

``python3 bench/sends_cost.py [--messages N] [--conversations M] [--batch B] [--runs R]``

A fresh SQLite file per run (migrated as the server does, in a temporary directory), M group
conversations of two users, then N sends through ``backend.storage.sends.insert_message``, B
of them submitted in each turn of the event loop, each in a distinct conversation (as the
server's ``Sequencer`` lets them through): the server's batching (one transaction per turn,
``InlineWrites``). It reports the CPU time of the process (``time.process_time``: the loop's
thread writes the transactions) per message, for each run and their median. Latency is not
measured: on a shared machine CPU time is the figure that holds still.

It imports only what every version of the send path since the derived unread counts has
(``SentMessage``, ``Counters``, ``insert_message``), so that run from an older checkout
(``PYTHONPATH=<checkout> python3 <this file>``) it measures that checkout's path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tortoise.backends.base.executor import EXECUTOR_CACHE

from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.clock import now
from backend.settings import Settings
from backend.storage.database import close_database, open_database
from backend.storage.sends import Counters, SentMessage, insert_message
from models import SenderType, User


class _Sink:
    """The service's event sink: nothing is published anywhere."""

    async def publish(self, event: object, *, here_only: bool = False) -> None:
        return None


async def _one_run(messages: int, conversations: int, batch: int) -> float:
    """CPU µs per message of one run on a fresh database."""
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite://{Path(work) / 'sends.sqlite3'}"
        settings = Settings.from_env({"DATABASE_URL": url, "JWT_SECRET": "s" * 40,
                                      "DATA_DIR": work})
        EXECUTOR_CACHE.clear()
        await open_database(settings, apply_migrations=True)
        try:
            chat = ChatService(_Sink(), settings.limits)
            await User.bulk_create([User(email=f"u{i}@example.com", username=f"u{i}",
                                         password_hash="x") for i in range(2)])
            people = list(await User.all().order_by("id"))
            cids = []
            for _ in range(conversations):
                view = await chat.create_conversation(
                    Actor.of_user(people[0]), title="g", kind="group",
                    participant_ids=[people[1].id])
                cids.append(int(view["id"]))
            author = people[0]
            counters = Counters(bump_device=True, staff="keep", sender_member=author.id)

            def message(cid: int, n: int) -> SentMessage:
                return SentMessage(
                    id=0, conversation_id=cid, sender_type=SenderType.USER,
                    sender_key=f"user:{author.id}", sender_user=author, sender_device=None,
                    sender_customer=None, content=f"message {n} " + "x" * 48,
                    message_type="text", media_url="", file=None, parent_message_id=None,
                    reply_to_id=None, mentions=[], metadata={}, is_urgent=False,
                    client_msg_id=None, created_at=now())

            # Warm-up: opens the send path's own connection, fills the caches.
            await asyncio.gather(*(insert_message(message(c, 0), counters) for c in cids[:batch]))
            sent, turn = 0, 0
            started = time.process_time()
            while sent < messages:
                count = min(batch, messages - sent)
                first = (turn * batch) % conversations
                chosen = [cids[(first + i) % conversations] for i in range(count)]
                await asyncio.gather(*(insert_message(message(c, sent + i), counters)
                                       for i, c in enumerate(chosen)))
                sent += count
                turn += 1
            return (time.process_time() - started) / messages * 1e6
        finally:
            await close_database()


async def _main(arguments: argparse.Namespace) -> None:
    figures = []
    for run in range(arguments.runs):
        figure = await _one_run(arguments.messages, arguments.conversations, arguments.batch)
        figures.append(figure)
        print(f"run {run + 1}: {figure:.1f} µs/message", file=sys.stderr)
    print(f"batch {arguments.batch}, {arguments.messages} messages in "
          f"{arguments.conversations} conversations: median {statistics.median(figures):.1f} "
          f"µs/message (runs: {', '.join(f'{f:.1f}' for f in figures)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--conversations", type=int, default=250)
    parser.add_argument("--batch", type=int, default=1, help="sends submitted per loop turn")
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(_main(parser.parse_args()))
