#!/usr/bin/env python3
"""Instructions per message of a node's whole send path, counted by valgrind: stable under load.

``python3 bench/message_cost.py [--transport raw|sio] [--db sqlite|postgres] [--messages N]``

The rooms scenario's shape, small: ``--conversations`` group conversations of two clients each,
made as the benchmark makes them (bench/fixtures.py), a node started as the benchmark starts one
but under ``valgrind --tool=callgrind`` with instrumentation off. Once every client is connected
and ``--warmup`` messages have gone through (caches filled, statements prepared), counting is
turned on (``callgrind_control``), ``--messages`` messages are sent and counting stops. Each
message goes to the next conversation in turn, from its two clients alternately, and is waited
for until every client that gets it has it (raw: the echo to the sender and the other client's
copy; Socket.IO: the sender's ack and the other client's copy); ``--concurrency`` messages (in
distinct conversations) are in flight at once. Then the node is counted as long again with
nothing sent (its timers, its checkpoint thread: under valgrind a message takes ~50 times
longer, so what runs per second weighs ~50 times more per message than at full speed), and
that is taken off; the node's periodic reads are put far apart for the run (``QUIET``).

It prints instructions per message for the event loop's thread and for the whole process
(every thread), raw and with the idle count taken off. The clients run outside valgrind (plain
asyncio and ``websockets``); PostgreSQL's own backends are not counted. ``--server-root``
runs the node from another checkout (with its own .venv), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from bench import fixtures, nodes, services  # noqa: E402


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the node under valgrind -------------------------------------------------------------------

#: The node's periodic reads (the outbox's poll, the webhooks' refresh and catch-up: ORM queries
#: every second or few) put far apart: they do not depend on the messages sent, and under
#: valgrind, where a message takes ~50 times longer, they would weigh ~50 times more per message
#: and make the idle count taken off noisy.
QUIET = {"OUTBOX_POLL_SECONDS": "3600", "WEBHOOK_REFRESH_SECONDS": "3600",
         "WEBHOOK_CATCH_UP_SECONDS": "3600"}


class CountedNode:
    """A node under callgrind, counting nothing until ``control("-i", "on")``; with ``cpu``,
    a plain node whose CPU time (/proc, every thread) is read instead."""

    def __init__(self, data_dir: Path, env: dict[str, str], server_root: Path | None,
                 cpu: bool = False) -> None:
        self.cpu = cpu
        self.cpu_mark = 0.0
        self.dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = nodes.free_port()
        root = server_root or ROOT
        python = str(root / ".venv" / "bin" / "python")
        counter = [] if cpu else [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            f"--callgrind-out-file={data_dir}/cg.out"]
        command = [*counter, python, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
                   "--port", str(self.port), *nodes.UVICORN_FLAGS]
        self.log_path = data_dir / "node.log"
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command, cwd=root, env={**env, **QUIET, "DATA_DIR": str(data_dir),
                                        "PYTHONHASHSEED": "0"},
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=nodes.raise_fd_limit)
        self.dumps = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 600) -> None:
        nodes.wait_ready(self.process, self.port, self.log_path, timeout)

    def control(self, *flags: str) -> None:
        if self.cpu:
            if flags == ("-z",):
                self.cpu_mark = nodes.cpu_seconds(self.process.pid)
            return
        subprocess.run(["callgrind_control", *flags, str(self.process.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=300)

    def dump(self) -> dict[int, int]:
        """Dump the counts since the last zeroing; instructions by thread number (with
        ``cpu``: nanoseconds of CPU time, all threads as thread 1)."""
        if self.cpu:
            return {1: round((nodes.cpu_seconds(self.process.pid) - self.cpu_mark) * 1e9)}
        self.dumps += 1
        self.control("-d")
        return nodes.callgrind_dump(self.dir, self.dumps)

    def stop(self) -> None:
        nodes.stop_counted(self.process)


# -- the clients -------------------------------------------------------------------------------


class Client:
    """One connection; ``expect(content)`` is a future of that content's arrival here."""

    def __init__(self, spec: fixtures.Client) -> None:
        self.spec = spec
        self.ws: Any = None
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reader: asyncio.Task[None] | None = None

    def expect(self, content: str) -> asyncio.Future[None]:
        future = self.waiting[content] = asyncio.get_running_loop().create_future()
        return future

    def arrived(self, content: str) -> None:
        future = self.waiting.pop(content, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def read(self) -> None:
        async for text in self.ws:
            self.frame(text if isinstance(text, str) else text.decode())

    def frame(self, text: str) -> None:
        raise NotImplementedError

    async def connect(self, base: str) -> None:
        raise NotImplementedError

    async def send(self, content: str) -> Awaitable[None]:
        raise NotImplementedError


_CONTENT = re.compile(r'"content":"(M[^"]*)"')


class RawClient(Client):
    async def connect(self, base: str) -> None:
        url = f"{base}/ws/chat/{self.spec.conversation_id}/?token={self.spec.token}"
        self.ws = await websockets.connect(url, max_size=None, compression=None)
        self.reader = asyncio.ensure_future(self.read())
        await self.ready

    def frame(self, text: str) -> None:
        if text.startswith('{"type":"chat_message"'):
            found = _CONTENT.search(text)
            if found:
                self.arrived(found.group(1))
        elif text.startswith('{"type":"recent_messages"') and not self.ready.done():
            self.ready.set_result(None)
        elif text.startswith('{"type":"error"'):
            raise RuntimeError(f"error frame: {text[:300]}")

    async def send(self, content: str) -> Awaitable[None]:
        echo = self.expect(content)
        await self.ws.send(json.dumps({"type": "chat_message", "content": content}))
        return echo


class SioClient(Client):
    _acks = itertools.count(1)

    def __init__(self, spec: fixtures.Client) -> None:
        super().__init__(spec)
        self.replies: set[asyncio.Task[None]] = set()

    async def connect(self, base: str) -> None:
        self.ws = await websockets.connect(f"{base}/socket.io/?EIO=4&transport=websocket",
                                           max_size=None, compression=None)
        self.reader = asyncio.ensure_future(self.read())
        await self.ready

    def frame(self, text: str) -> None:
        if text.startswith('42/chat,["chat_message"'):
            found = _CONTENT.search(text)
            if found:
                self.arrived(found.group(1))
        elif text.startswith("43/chat,"):
            ack = int(re.match(r"43/chat,(\d+)", text).group(1))  # type: ignore[union-attr]
            if '"ok":true' not in text:
                raise RuntimeError(f"refused: {text[:300]}")
            future = self.acks.pop(ack, None)
            if future is not None:
                future.set_result(None)
        elif text == "2":
            self.reply("3")
        elif text.startswith("0{"):
            auth = {"token": self.spec.token, "conversation_id": self.spec.conversation_id}
            self.reply("40/chat," + json.dumps(auth))
        elif text.startswith('42/chat,["user_joined"') and not self.ready.done():
            if json.loads(text[text.index("["):])[1].get("user_id") == self.spec.user_id:
                self.ready.set_result(None)
        elif text.startswith("44/chat,"):
            raise RuntimeError(f"connect refused: {text[:300]}")

    def reply(self, text: str) -> None:
        """Send ``text`` from the reader's callback (kept referenced until sent)."""
        task = asyncio.ensure_future(self.ws.send(text))
        self.replies.add(task)
        task.add_done_callback(self.replies.discard)

    async def send(self, content: str) -> Awaitable[None]:
        ack = next(self._acks)
        future = self.acks[ack] = asyncio.get_running_loop().create_future()
        body = {"conversation_id": self.spec.conversation_id, "content": content}
        await self.ws.send(f"42/chat,{ack}" + json.dumps(["chat_message", body]))
        return future


async def exchange(clients: list[list[Client]], count: int, concurrency: int,
                   start: int) -> int:
    """Send ``count`` messages, ``concurrency`` at once in distinct conversations, each
    waited for everywhere it goes. Returns the next message number."""
    number = start
    sent = 0
    while sent < count:
        batch = []
        for _ in range(min(concurrency, count - sent)):
            pair = clients[number % len(clients)]
            sender = pair[(number // len(clients)) % len(pair)]
            content = f"M{number:07d} " + "x" * 48
            waits = [c.expect(content) for c in pair if c is not sender]
            waits.append(await sender.send(content))  # type: ignore[arg-type]
            batch.extend(waits)
            number += 1
            sent += 1
        await asyncio.wait_for(asyncio.gather(*batch), timeout=300)
    return number


# -- a run -------------------------------------------------------------------------------------


async def drive(node: CountedNode, made: list[fixtures.Client],
                arguments: argparse.Namespace) -> dict[str, Any]:
    kind: Callable[[fixtures.Client], Client] = (RawClient if arguments.transport == "raw"
                                                 else SioClient)
    pairs: dict[int, list[Client]] = {}
    for spec in made:
        pairs.setdefault(spec.conversation_id, []).append(kind(spec))
    clients = list(pairs.values())
    base = node.base_url.replace("http", "ws", 1)
    for pair in clients:
        for client in pair:
            await asyncio.wait_for(client.connect(base), timeout=300)
    say(f"{len(made)} clients connected")
    await asyncio.sleep(2)  # presence frames settle
    number = await exchange(clients, arguments.warmup, arguments.concurrency, 0)
    node.control("-i", "on")
    number = await exchange(clients, max(20, arguments.warmup // 5), arguments.concurrency,
                            number)  # warm-up, counted: code first run with counting on
    node.control("-z")
    started = time.monotonic()
    await exchange(clients, arguments.messages, arguments.concurrency, number)
    busy = node.dump()
    wall = time.monotonic() - started
    say(f"{arguments.messages} messages in {wall:.1f} s")
    node.control("-z")
    await asyncio.sleep(wall)
    idle = node.dump()
    node.control("-i", "off")
    for pair in clients:
        for client in pair:
            await client.ws.close()
    loop_busy, loop_idle = busy.get(1, 0), idle.get(1, 0)
    all_busy, all_idle = sum(busy.values()), sum(idle.values())
    n = arguments.messages
    return {
        "transport": arguments.transport, "db": arguments.db, "messages": n,
        "conversations": arguments.conversations, "concurrency": arguments.concurrency,
        "wall_s": round(wall, 1),
        "loop_thread_per_message": round((loop_busy - loop_idle) / n),
        "all_threads_per_message": round((all_busy - all_idle) / n),
        "loop_thread_per_message_with_idle": round(loop_busy / n),
        "all_threads_per_message_with_idle": round(all_busy / n),
        "threads_busy": busy, "threads_idle": idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["raw", "sio"], default="raw")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="messages in flight at once (distinct conversations)")
    parser.add_argument("--cpu", action="store_true",
                        help="no valgrind: the node's CPU nanoseconds (noisy on a shared machine)")
    parser.add_argument("--server-root", type=Path, help="run the node from this checkout")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    arguments = parser.parse_args()
    if not arguments.cpu and (shutil.which("valgrind") is None
                              or shutil.which("callgrind_control") is None):
        raise SystemExit("valgrind (with callgrind_control) is needed")
    work = Path(tempfile.mkdtemp(prefix="confab-message-cost-"))
    node: CountedNode | None = None
    try:
        with services.database(arguments.db, work) as url:
            secret = secrets.token_urlsafe(32)
            shape = fixtures.Shape(2 * arguments.conversations, 2)
            made = fixtures.build_in_subprocess(url, work / "setup", secret,
                                                {"rooms": shape}).scenarios["rooms"]
            node = CountedNode(work / "node", nodes.node_env(url, secret),
                               arguments.server_root, arguments.cpu)
            say(f"node (pid {node.process.pid}) starting under valgrind")
            node.wait_ready()
            result = asyncio.run(drive(node, made, arguments))
            node.stop()
            node = None
    finally:
        if node is not None:
            node.stop()
        if arguments.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    unit = "ns of CPU" if arguments.cpu else "instructions"
    say(f"{result['transport']}/{result['db']}: {result['loop_thread_per_message']:,} "
        f"{unit} per message on the loop's thread, "
        f"{result['all_threads_per_message']:,} in all threads "
        f"(idle taken off; with it {result['loop_thread_per_message_with_idle']:,} and "
        f"{result['all_threads_per_message_with_idle']:,})")


if __name__ == "__main__":
    main()
