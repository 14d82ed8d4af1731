#!/usr/bin/env python3
"""What one connect costs the node: CPU µs (or, under callgrind, instructions) per connection.

``python3 bench/connect_cost.py [--transport raw|sio] [--db sqlite|postgres] [--conversations M]
[--per-conversation P] [--messages K] [--resume N | --cold] [--concurrency C] [--rounds R]
[--callgrind] [--server-root DIR]``

One node on a fresh database, SQLite unless ``--db postgres`` (bench/services.py: a database of
its own on the local PostgreSQL, dropped afterwards), with the benchmark's fixtures (users in
group conversations of P, tokens as the idle scenario's), then R rounds, each of M fresh
conversations' P clients connecting, C at a time, each until the client is ready (raw
``/ws/chat/{id}/``: its ``recent_messages``; Socket.IO ``/chat`` with ``auth.conversation_id``:
its own ``user_joined`` or a ``presence_diff``), the connections held open until the round ends
and then closed. The first client of each conversation connects first, outside the measured
window (the conversation's facts and statements cached as on a node that has been up for a
while); the other M*(P-1) connects are measured. Reports the node's CPU time (``/proc``) per
connect of the measured window, per round and the median. With ``--messages K`` each
conversation first gets K messages over REST, so that the history a connect reads is not empty.
The node keeps a conversation's latest page for the whole run (``LATEST_PAGE_KEEP_SECONDS``, 5
s by default, set to an hour here): every measured raw connect of a conversation gets the page
its warm-up client read, as a burst of reconnects does, and the count does not depend on how
slowly the node runs. With ``--cold`` the first client of each conversation is the one measured
(M connects a round, no warm-up): the conversation's facts (who may see it, who takes part) and
its page are read at that connect, as at the first connect to each small conversation on a
node.

With ``--resume N`` each client resumes N positions behind the log (CONTRACT §9), as a client
of a reconnect storm does. Socket.IO: it connects to ``/chat`` with its token alone and then
``join``s with ``since``, ready when the join's ack (holding what it missed) arrives; the
warm-up client joins without ``since`` and its ack tells the log's position and epoch. Raw:
``/ws/chat/{id}/?since=&epoch=``, ready once the last missed event has arrived; the warm-up
client's REST read of the log tells the position and epoch.

With ``--profile FILE`` py-spy samples the node during each measured window.
With ``--callgrind`` the node runs under ``valgrind --tool=callgrind`` with instrumentation
switched on only for the measured window (``callgrind_control``): instructions per connect,
a count that does not depend on what else the machine runs. Slow: keep N in the hundreds.

The client is Python's ``websockets`` on the other CPU; it reads frames the way the Node load
generator does (only what it needs to know the connection is ready).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import services
from bench.fixtures import Shape, build_in_subprocess
from bench.nodes import (
    UVICORN_FLAGS,
    cpu_seconds,
    free_port,
    node_env,
    raise_fd_limit,
)

ROOT = Path(__file__).resolve().parents[1]
#: The node's ``LATEST_PAGE_KEEP_SECONDS`` for these runs: longer than any run (see ``run``).
KEPT_PAGE_SECONDS = "3600"


async def connect_raw(base: str, client: dict[str, Any],
                      since: dict[str, Any] | None = None, top: int = 0) -> Any:
    """A raw ``/ws/chat/`` client, ready at its ``recent_messages``; resuming (``since``),
    once the event at ``top`` has been replayed too."""
    resume = "" if since is None else f"&since={since['position']}&epoch={since['epoch']}"
    ws = await websockets.connect(
        f"{base}/ws/chat/{client['conversation_id']}/?token={client['token']}{resume}",
        max_size=None, compression=None, open_timeout=300, ping_interval=None)
    last = f'"position":{top}'
    while True:
        text = await ws.recv()
        if not isinstance(text, str):
            continue
        if since is None and text.startswith('{"type":"recent_messages"'):
            return ws
        if since is not None and last in text and not text.startswith('{"type":"recent'):
            return ws
        if isinstance(text, str) and '"type":"error"' in text[:20]:
            raise RuntimeError(text[:200])


async def open_engineio(base: str) -> Any:
    """An Engine.IO connection over WebSocket, read and answered by the caller."""
    return await websockets.connect(f"{base}/socket.io/?EIO=4&transport=websocket",
                                    max_size=None, compression=None, open_timeout=300,
                                    ping_interval=None)


async def connect_sio(base: str, client: dict[str, Any]) -> Any:
    ws = await open_engineio(base)
    mine = f'"user_id":{client["user_id"]},'
    while True:
        text = await ws.recv()
        if not isinstance(text, str):
            continue
        if text == "2":
            await ws.send("3")
        elif text.startswith("0{"):
            auth = {"token": client["token"], "conversation_id": client["conversation_id"]}
            await ws.send(f"40/chat,{json.dumps(auth)}")
        elif text.startswith("44/chat,"):
            raise RuntimeError(text[:200])
        elif text.startswith('42/chat,["presence_diff"') or (
                text.startswith('42/chat,["user_joined"') and mine in text):
            return ws


async def connect_sio_join(base: str, client: dict[str, Any],
                           since: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """A Socket.IO client that connects with its token alone and then joins its conversation
    (from ``since`` when given): the socket and the join's ack."""
    ws = await open_engineio(base)
    while True:
        text = await ws.recv()
        if not isinstance(text, str):
            continue
        if text == "2":
            await ws.send("3")
        elif text.startswith("0{"):
            await ws.send(f"40/chat,{json.dumps({'token': client['token']})}")
        elif text.startswith("44/chat,"):
            raise RuntimeError(text[:200])
        elif text.startswith("40/chat,"):
            data: dict[str, Any] = {"conversation_id": client["conversation_id"]}
            if since is not None:
                data["since"] = since
            await ws.send(f"42/chat,1{json.dumps(['join', data])}")
        elif text.startswith("43/chat,1["):
            ack: dict[str, Any] = json.loads(text[len("43/chat,1"):])[0]
            if not ack.get("ok"):
                raise RuntimeError(text[:200])
            return ws, ack


async def keep_reading(ws: Any) -> None:
    """Read (and answer pings) until closed, so that frames do not pile up unread."""
    try:
        async for text in ws:
            if text == "2":
                await ws.send("3")
    except websockets.ConnectionClosed:
        pass


async def connect_all(base: str, transport: str, clients: list[dict[str, Any]],
                      concurrency: int, points: dict[int, dict[str, Any]] | None = None,
                      behind: int = 0) -> list[Any]:
    """Connect ``clients``, ``concurrency`` at a time. With ``points`` (resume) each resumes
    from ``behind`` positions before its conversation's point when the point is known; else
    (the warm-up) it connects plainly and the point is recorded (Socket.IO: its join's ack;
    raw: the REST log read)."""
    gate = asyncio.Semaphore(concurrency)
    opened: list[Any] = []

    async def connect(client: dict[str, Any]) -> Any:
        if points is None:
            return await (connect_raw if transport == "raw" else connect_sio)(base, client)
        point = points.get(client["conversation_id"])
        since = None if point is None else {
            "position": max(0, point["position"] - behind), "epoch": point["epoch"]}
        if transport == "raw":
            if point is not None:
                return await connect_raw(base, client, since, point["position"])
            ws = await connect_raw(base, client)
            http = base.replace("ws://", "http://", 1)
            async with httpx.AsyncClient(base_url=http, timeout=300) as api:
                response = await api.get(
                    f"/api/v1/chat/sessions/{client['conversation_id']}/events",
                    params={"since": 0},
                    headers={"Authorization": f"Bearer {client['token']}"})
            response.raise_for_status()
            body = response.json()
            points[client["conversation_id"]] = {"position": body["position"],
                                                 "epoch": body["epoch"]}
            return ws
        ws, ack = await connect_sio_join(base, client, since)
        if point is None:
            points[client["conversation_id"]] = {"position": ack["position"],
                                                 "epoch": ack["epoch"]}
        elif len(ack["events"]) < min(behind, point["position"]):
            raise RuntimeError(f"a resume got {len(ack['events'])} events, not {behind}")
        return ws

    async def one(client: dict[str, Any]) -> None:
        async with gate:
            ws = await connect(client)
        opened.append(ws)
        readers.append(asyncio.ensure_future(keep_reading(ws)))

    readers: list[asyncio.Future[None]] = []
    await asyncio.gather(*(one(c) for c in clients))
    return opened


async def close_all(opened: list[Any]) -> None:
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)


async def fill(base: str, clients: list[dict[str, Any]], per_conversation: int,
               messages: int) -> None:
    """``messages`` messages in each conversation, sent over REST by its first client."""
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:

        async def one(client: dict[str, Any]) -> None:
            url = f"/api/v1/chat/sessions/{client['conversation_id']}/messages"
            headers = {"Authorization": f"Bearer {client['token']}"}
            for n in range(messages):
                async with gate:
                    response = await http.post(url, headers=headers,
                                               json={"content": f"message {n} " + "x" * 40})
                response.raise_for_status()

        await asyncio.gather(*(one(c) for c in clients[::per_conversation]))


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dumped_instructions(out_dir: Path, before: set[Path]) -> int:
    """Instructions of the newest callgrind dump in ``out_dir`` not in ``before``."""
    fresh = sorted(set(out_dir.glob("callgrind.out.*")) - before,
                   key=lambda p: p.stat().st_mtime)
    for path in reversed(fresh):
        for line in path.read_text(errors="replace").splitlines():
            match = re.match(r"totals:\s+(\d+)", line)
            if match:
                return int(match.group(1))
    raise RuntimeError(f"no callgrind dump found in {out_dir}")


def start(args: argparse.Namespace, data_dir: Path, env: dict[str, str]) -> tuple[Any, int]:
    port = free_port()
    root = Path(args.server_root) if args.server_root else ROOT
    python = str(root / ".venv" / "bin" / "python") if args.server_root else sys.executable
    command = [python, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
               "--port", str(port), *UVICORN_FLAGS]
    if args.callgrind:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={data_dir}/callgrind.out.%p", *command]
    elif shutil.which("taskset"):
        command = ["taskset", "-c", args.server_cpu, *command]
    log = open(data_dir / "server.log", "wb")  # lives as long as the node
    process = subprocess.Popen(command, cwd=root,
                               env={**env, "DATA_DIR": str(data_dir), "PYTHONHASHSEED": "0"},
                               stdout=log, stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)
    deadline = time.monotonic() + (900 if args.callgrind else 60)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((data_dir / "server.log").read_text(errors="replace"))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("node did not become ready")


async def run(args: argparse.Namespace, data_dir: Path, url: str) -> None:
    secret = secrets.token_urlsafe(32)
    per_round = args.conversations * args.per_conversation
    made = build_in_subprocess(url, data_dir, secret, {
        "connect": Shape(per_round * args.rounds, args.per_conversation)})
    clients = [{"user_id": c.user_id, "token": c.token,
                "conversation_id": c.conversation_id} for c in made.scenarios["connect"]]
    # A conversation's latest page stays kept for the whole run: the measured connects
    # of a conversation find the page its warm-up client read, however slowly the node
    # runs (under callgrind some fifty times slower than the 5 s default allows for).
    env = {**node_env(url, secret), "LATEST_PAGE_KEEP_SECONDS": KEPT_PAGE_SECONDS}
    process, port = start(args, data_dir, env)
    base = f"ws://127.0.0.1:{port}"
    if args.messages:
        await fill(f"http://127.0.0.1:{port}", clients, args.per_conversation,
                   args.messages)
    figures: list[float] = []
    try:
        for round_ in range(args.rounds):
            batch = clients[round_ * per_round:(round_ + 1) * per_round]
            # The warm-up: one client of each conversation first, so that every measured
            # connect finds its conversation's facts cached, as most connects do. With
            # --cold the first client of each is measured instead, no one before it: its
            # conversation's facts and page are read at its connect.
            firsts = batch[::args.per_conversation]
            measured = [c for i, c in enumerate(batch) if i % args.per_conversation]
            if args.cold:
                firsts, measured = [], firsts
            points: dict[int, dict[str, Any]] | None = (
                {} if args.resume is not None else None)
            warm = await connect_all(base, args.transport, firsts, args.concurrency, points)
            before = set(data_dir.glob("callgrind.out.*"))  # noqa: ASYNC240 (a few files)
            if args.callgrind:
                callgrind(process.pid, "-z")
                callgrind(process.pid, "-i", "on")
            spy = None
            if args.profile:
                spy = subprocess.Popen(  # noqa: ASYNC220 (started, not awaited)
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                     str(process.pid), "--format", "raw", "--rate", "250", "--nonblocking",
                     "--output", f"{args.profile}.{round_ + 1}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1)
            cpu0 = cpu_seconds(process.pid)
            opened = await connect_all(base, args.transport, measured,
                                       args.concurrency, points, args.resume or 0)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            if args.callgrind:
                callgrind(process.pid, "-i", "off")
                callgrind(process.pid, "-d")
                await asyncio.sleep(1)
                figure = dumped_instructions(data_dir, before) / len(measured)
                if args.callgrind_out:
                    newest = max(set(data_dir.glob("callgrind.out.*")) - before,  # noqa: ASYNC240
                                 key=lambda p: p.stat().st_mtime)
                    shutil.copy(newest, f"{args.callgrind_out}.{round_ + 1}")
                unit = "instructions"
            else:
                figure = (cpu_seconds(process.pid) - cpu0) * 1e6 / len(measured)
                unit = "CPU µs"
            figures.append(figure)
            print(f"round {round_ + 1}: {figure:,.0f} {unit} per connect", flush=True)
            await close_all(opened + warm)
            await asyncio.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"median: {statistics.median(figures):,.0f} per connect "
          f"({args.transport}{' resume' if args.resume is not None else ''}, "
          f"{args.conversations * (1 if args.cold else args.per_conversation - 1)} "
          f"measured{' first' if args.cold else ''} connects per round, {args.db})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["raw", "sio"], default="raw")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--conversations", type=int, default=50,
                        help="conversations per round")
    parser.add_argument("--per-conversation", type=int, default=10,
                        help="clients per conversation; the first of each is the warm-up")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--messages", type=int, default=0,
                        help="messages sent (over REST) in each conversation before connecting")
    parser.add_argument("--resume", type=int, default=None, metavar="N",
                        help="resume from N positions behind the log (Socket.IO: a join "
                        "with since; raw: ?since=)")
    parser.add_argument("--cold", action="store_true",
                        help="measure the first connect to each conversation (its facts and "
                        "page read then), no warm-up client before it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--callgrind-out", default=None, metavar="FILE",
                        help="with --callgrind, keep each measured window's dump as "
                        "FILE.<round> (for callgrind_annotate)")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="py-spy over each measured window, to FILE.<round> (raw format; "
                        "bench/profile_summary.py reads it)")
    parser.add_argument("--server-root", default=None,
                        help="another checkout whose .venv runs the node")
    args = parser.parse_args()
    if args.cold and args.resume is not None:
        parser.error("--resume needs the warm-up client's position: not with --cold")
    with tempfile.TemporaryDirectory(prefix="connect-cost-") as work, \
            services.database(args.db, Path(work)) as url:
        asyncio.run(run(args, Path(work), url))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
