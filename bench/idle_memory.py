"""What an idle connection holds on the node, by allocation site and by type.

``python3 bench/idle_memory.py --transport raw|sio [--clients 1000] [--warm 200]``:

1. makes the users, conversations (10 clients each) and tokens on a fresh SQLite database
   (``bench/fixtures.py``);
2. starts one node the way ``confab serve`` does (uvloop, httptools, the project's WebSocket
   protocol), in a process of its own that runs this file with ``--serve``: it starts
   ``tracemalloc`` on SIGUSR1 and, on SIGUSR2, collects garbage and writes a snapshot, the
   count of live objects by type and its RSS;
3. connects ``--warm`` clients (their conversations' caches are then loaded), snapshots,
   connects ``--clients`` more in other conversations, lets them settle, snapshots again,
   holds them ``--hold`` seconds reading the node's CPU time, and prints per connection: the
   bytes traced, the RSS grown, the largest allocation sites, the object types that grew, and
   the node's CPU while they idle.

The clients are Python ``websockets`` connections in a process of their own (``--clients-of``):
``/ws/chat/{id}/?token=`` (raw), or Engine.IO over WebSocket joining ``/chat`` with
``{token, conversation_id}`` (sio), answering pings as socket.io-client does. tracemalloc slows
the node, so the CPU figure here is an upper bound; ``bench/run.py --scenario idle`` is the
benchmark's own figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PER_CONVERSATION = 10


# -- the node ---------------------------------------------------------------------------------


def serve(port: int, out: Path) -> None:
    """Run the node on ``port``; SIGUSR1 starts tracing, SIGUSR2 writes ``out``-prefixed
    files (snapshot, type counts, RSS)."""
    import uvicorn

    from backend.realtime.protocol import UVICORN_OPTIONS

    taken = [0]

    def start(*_: object) -> None:
        tracemalloc.start(4)

    def snapshot(*_: object) -> None:
        gc.collect()
        taken[0] += 1
        stem = f"{out}-{taken[0]}"
        tracemalloc.take_snapshot().dump(f"{stem}.snapshot")
        counts = Counter(type(obj).__qualname__ for obj in gc.get_objects())
        Path(f"{stem}.types.json").write_text(json.dumps(counts))
        Path(f"{stem}.rss").write_text(str(_rss_kb(os.getpid())))
        Path(f"{stem}.done").write_text("")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, snapshot)
    options = {**UVICORN_OPTIONS, "access_log": False}
    uvicorn.run("backend.main:app", host="127.0.0.1", port=port, **options)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the clients ------------------------------------------------------------------------------


async def hold_clients(port: int, transport: str, specs: list[dict[str, object]]) -> None:
    """Connect every client of ``specs`` (100 at a time), print ``ready``, keep them until
    stdin closes."""
    import websockets

    connections = []
    readers: list[asyncio.Task[None]] = []

    async def one(spec: dict[str, object]) -> None:
        if transport == "raw":
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/ws/chat/{spec['conversation_id']}/?token="
                f"{spec['token']}", max_size=None, ping_interval=None)
            while not str(await ws.recv()).startswith('{"type":"recent_messages"'):
                pass
        else:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
                max_size=None, ping_interval=None)
            assert str(await ws.recv()).startswith("0{")
            auth = {"token": spec["token"], "conversation_id": spec["conversation_id"]}
            await ws.send(f"40/chat,{json.dumps(auth)}")
            while not str(await ws.recv()).startswith("40/chat,"):
                pass
        # Read on, as a client does (an unread client stops answering the node's pings).
        readers.append(asyncio.ensure_future(read(ws)))
        connections.append(ws)

    async def read(ws: websockets.ClientConnection) -> None:
        async for text in ws:
            if text == "2":  # an Engine.IO ping
                await ws.send("3")

    for first in range(0, len(specs), 100):
        await asyncio.gather(*(one(spec) for spec in specs[first:first + 100]))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


# -- the orchestrator -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("raw", "sio"), default="raw")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clients-of", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.out)
        return 0
    if args.clients_of:
        specs = json.loads(args.clients_of.read_text())
        asyncio.run(hold_clients(args.port, args.transport, specs))
        return 0
    return measure(args)


def measure(args: argparse.Namespace) -> int:
    from bench import fixtures
    from bench.nodes import RAISED_LIMITS, free_port, node_env, raise_fd_limit, wait_ready

    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="idle-memory-"))
    secret = os.urandom(24).hex()
    database_url = f"sqlite://{work}/chat.sqlite3"
    total = args.warm + args.clients
    made = fixtures.build_in_subprocess(
        database_url, work, secret,
        {"idle": fixtures.Shape(total, PER_CONVERSATION)}).scenarios["idle"]
    specs = [client.spec(0) for client in made]
    port = free_port()
    env = {**node_env(database_url, secret), "DATA_DIR": str(work), **RAISED_LIMITS}
    out = work / "node"
    log = (work / "node.log").open("wb")
    node = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=raise_fd_limit)
    holders: list[subprocess.Popen[str]] = []
    try:
        wait_ready(node, port, work / "node.log", 60)
        os.kill(node.pid, signal.SIGUSR1)
        holders.append(_hold(args, port, specs[:args.warm], work / "warm.json"))
        time.sleep(2)
        before = _snapshot(node.pid, out, 1)
        holders.append(_hold(args, port, specs[args.warm:], work / "measured.json"))
        time.sleep(3)  # presence and welcome frames of the ramp are over
        after = _snapshot(node.pid, out, 2)
        cpu0, t0 = _cpu_seconds(node.pid), time.monotonic()
        time.sleep(args.hold)
        cpu = (_cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)
        report(args, before, after, cpu)
    finally:
        for holder in holders:
            if holder.stdin is not None:
                holder.stdin.close()
        for holder in holders:
            holder.wait(timeout=60)
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
    return 0


def _hold(args: argparse.Namespace, port: int, specs: list[dict[str, object]],
          path: Path) -> subprocess.Popen[str]:
    path.write_text(json.dumps(specs))
    holder = subprocess.Popen(
        [sys.executable, __file__, "--clients-of", str(path), "--port", str(port),
         "--transport", args.transport],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=_raise_limit)
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != "ready":
        raise RuntimeError("the clients did not all connect")
    return holder


def _raise_limit() -> None:
    from bench.nodes import raise_fd_limit

    raise_fd_limit()


def _snapshot(pid: int, out: Path, n: int) -> dict[str, object]:
    os.kill(pid, signal.SIGUSR2)
    done = Path(f"{out}-{n}.done")
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("no snapshot from the node")
        time.sleep(0.1)
    return {"snapshot": tracemalloc.Snapshot.load(f"{out}-{n}.snapshot"),
            "types": json.loads(Path(f"{out}-{n}.types.json").read_text()),
            "rss": int(Path(f"{out}-{n}.rss").read_text())}


def report(args: argparse.Namespace, before: dict[str, object], after: dict[str, object],
           cpu: float) -> None:
    n = args.clients
    old, new = before["snapshot"], after["snapshot"]
    assert isinstance(old, tracemalloc.Snapshot) and isinstance(new, tracemalloc.Snapshot)
    traced = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename"))
    rss = int(after["rss"]) - int(before["rss"])  # type: ignore[call-overload]
    print(f"{args.transport}: {n} connections: traced {traced / n / 1024:.2f} KB, "
          f"RSS {rss / n:.2f} KB per connection; node CPU idle {cpu * 100:.2f} % of a core "
          f"(tracing on)")
    print(f"\nlargest allocation sites (bytes and blocks per connection, top {args.top}):")
    for stat in new.compare_to(old, "lineno")[:args.top]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / n:8.1f} B {stat.count_diff / n:6.2f}  "
              f"{_short(frame.filename)}:{frame.lineno}")
    print("\nby traceback (top 12, three innermost frames):")
    for stat in new.compare_to(old, "traceback")[:12]:
        print(f"  {stat.size_diff / n:8.1f} B {stat.count_diff / n:6.2f}")
        for frame in list(stat.traceback)[-3:]:
            print(f"        {_short(frame.filename)}:{frame.lineno}")
    grown = (Counter(cast(dict[str, int], after["types"]))
             - Counter(cast(dict[str, int], before["types"])))
    print("\nobjects that grew, per connection (gc-tracked types):")
    for name, count in grown.most_common(args.top):
        print(f"  {count / n:6.2f}  {name}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


if __name__ == "__main__":
    sys.exit(main())
