#!/usr/bin/env python3
"""How long a node holding many idle connections takes to stop on SIGTERM.

``python3 bench/stop_time.py [--clients N] [--transport sio|raw] [--per-conversation P]
[--goodbye SECONDS] [--profile FILE] [--server-root DIR]``

One node on a fresh SQLite database (the benchmark's fixtures: N users in conversations of P),
N idle clients connected to it (Socket.IO ``/chat`` with ``auth.conversation_id``, or raw
``/ws/chat/{id}/``; Python's ``websockets``, answering the Engine.IO pings), then SIGTERM.
Reports the seconds from the signal to the process's exit, to the last client's close, and the
close codes the clients got. With ``--profile FILE`` py-spy records the node from the signal
to its exit (raw format; bench/profile_summary.py reads it).

A wall-clock figure on a shared machine: for before/after comparisons, run both on the same
machine at the same time of day, and look at where the time goes, not at the last tenth.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.connect_cost import connect_raw, connect_sio
from bench.fixtures import Shape, build_in_subprocess
from bench.nodes import node_env, start_node


async def watch(ws: Any, closed: dict[int, float], codes: collections.Counter[int]) -> None:
    """Read until the node closes the connection (answering Engine.IO pings); note when, and
    with what code."""
    try:
        async for text in ws:
            if text == "2":
                await ws.send("3")
    except Exception:
        pass
    closed[id(ws)] = time.monotonic()
    codes[ws.close_code if ws.close_code is not None else -1] += 1


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stop-time-") as work:
        data_dir = Path(work)
        url = f"sqlite://{data_dir / 'bench.sqlite3'}"
        secret = secrets.token_urlsafe(32)
        made = build_in_subprocess(url, data_dir, secret, {
            "stop": Shape(args.clients, args.per_conversation)})
        clients = [{"user_id": c.user_id, "token": c.token,
                    "conversation_id": c.conversation_id} for c in made.scenarios["stop"]]
        env = {**node_env(url, secret), "SHUTDOWN_GOODBYE_SECONDS": str(args.goodbye)}
        root = Path(args.server_root) if args.server_root else None
        node = start_node(data_dir, env, None, server_root=root)
        base = f"ws://127.0.0.1:{node.port}"
        connect = connect_raw if args.transport == "raw" else connect_sio
        gate = asyncio.Semaphore(args.concurrency)
        closed: dict[int, float] = {}
        codes: collections.Counter[int] = collections.Counter()
        watchers: list[asyncio.Task[None]] = []

        async def one(client: dict[str, Any]) -> None:
            async with gate:
                ws = await connect(base, client)
            watchers.append(asyncio.create_task(watch(ws, closed, codes)))

        try:
            started = time.monotonic()
            await asyncio.gather(*(one(client) for client in clients))
            print(f"{len(clients)} {args.transport} clients connected in "
                  f"{time.monotonic() - started:.1f} s", flush=True)
            await asyncio.sleep(1)
            spy = None
            if args.profile:
                spy = subprocess.Popen(  # noqa: ASYNC220 (started, not awaited)
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                     str(node.pid), "--format", "raw", "--rate", "100", "--nonblocking",
                     "--output", args.profile],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1)
            signalled = time.monotonic()
            node.process.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(node.process.wait, 120)
            stopped = time.monotonic() - signalled
            async with asyncio.timeout(30):
                await asyncio.gather(*watchers)
            last_close = max(closed.values()) - signalled
            if spy is not None:
                spy.wait(timeout=60)
        finally:
            node.stop()
        print(f"stopped in {stopped:.2f} s (exit {returncode}; goodbye {args.goodbye} s); "
              f"the last client closed at {last_close:.2f} s; close codes "
              f"{dict(sorted(codes.items()))}", flush=True)
        log = node.log().splitlines()
        print("\n".join(line for line in log[-12:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--transport", choices=["raw", "sio"], default="sio")
    parser.add_argument("--per-conversation", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--goodbye", type=float, default=5.0)
    parser.add_argument("--profile", default=None, metavar="FILE")
    parser.add_argument("--server-root", default=None,
                        help="another checkout whose .venv runs the node")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
