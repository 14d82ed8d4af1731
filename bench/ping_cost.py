#!/usr/bin/env python3
"""What an idle connection's heartbeat costs the node: instructions (or CPU µs) per ping/pong.

``python3 bench/ping_cost.py [--transport raw|sio] [--clients N] [--interval S]
[--seconds W] [--cpu] [--server-root DIR]``

One node on a fresh SQLite database (the benchmark's fixtures: users in group conversations of
10, a token each), started as the benchmark starts one, but pinging every ``--interval``
seconds rather than every 20-25 s so that many heartbeats happen in a short run: Engine.IO's
``ping_interval`` (the ``EngineServer``'s default, set before the app is imported, the node
having no setting for it) and uvicorn's ``--ws-ping-interval`` (the raw routes' keepalive),
with timeouts of ``--timeout`` seconds. ``--clients`` idle clients connect (raw:
``/ws/chat/{id}/?token=``, ready at their ``recent_messages``; Socket.IO: Engine.IO over
WebSocket joining ``/chat`` with ``{token, conversation_id}``, ready at its own ``user_joined``
or a ``presence_diff``) and then only answer the node's pings (raw: websockets' automatic
pong to a WebSocket ping; Socket.IO: ``3`` to each ``2``, as socket.io-client does) and count
them.

Under callgrind (the default) the node runs with instrumentation off until every client is
connected and a few heartbeats have gone by; then ``--seconds`` of wall time are counted and
divided by the pings the clients got meanwhile. Then the clients leave, and the node is
counted as long again with no connection (its own timers and threads): that is taken off. So
the figure is everything an idle connection costs the loop per heartbeat (the ping's timer
and write, the pong's read and handling, and any other per-connection periodic work), in
instructions, which do not depend on what else the machine runs. System calls are not
instructions of the process: ``--cpu`` reads the node's CPU time instead (``/proc``: the
event loop's thread in ns from ``schedstat``, every thread from ``stat``), which counts them,
and is noisy on a shared machine. ``--profile FILE`` (no valgrind either) writes a cProfile of
the loop's thread over the counted window: which Python calls a heartbeat makes, how often.

The clients are Python ``websockets`` connections in this process (outside valgrind).
``--server-root`` runs the node from another checkout (its own .venv), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402
from websockets.asyncio.client import ClientConnection  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402

from bench import fixtures, nodes  # noqa: E402

PER_CONVERSATION = 10
#: The node's periodic reads put far apart (as ``bench/message_cost.py`` does): they do not
#: depend on the connections, and under valgrind they would weigh on the idle count.
QUIET = {"OUTBOX_POLL_SECONDS": "3600", "WEBHOOK_REFRESH_SECONDS": "3600",
         "WEBHOOK_CATCH_UP_SECONDS": "3600"}
#: Runs uvicorn's command line with Engine.IO's default heartbeat replaced first (its two
#: arguments, then uvicorn's). ``EngineServer`` takes its options as keywords only.
#: With a third argument, a file: SIGUSR1 starts cProfile on the loop's thread, SIGUSR2 writes
#: its statistics there (``--profile``).
BOOT = """\
import sys
from backend.realtime import engine
interval, timeout = float(sys.argv.pop(1)), float(sys.argv.pop(1))
engine.EngineServer.__init__.__kwdefaults__.update(ping_interval=interval, ping_timeout=timeout)
if sys.argv[1].startswith("profile="):
    import cProfile, signal
    out, profile = sys.argv.pop(1)[len("profile="):], cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats(out)))
from uvicorn.main import main
sys.argv[0] = "uvicorn"
main()
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the node ------------------------------------------------------------------------------------


class Node:
    """A node under callgrind (counting nothing until switched on), or with ``cpu`` a plain
    node whose CPU time is read."""

    def __init__(self, data_dir: Path, env: dict[str, str], args: argparse.Namespace) -> None:
        self.cpu = args.cpu or args.profile is not None
        self.profile = args.profile
        self.dir = data_dir
        self.port = nodes.free_port()
        root = Path(args.server_root).resolve() if args.server_root else ROOT
        python = str(root / ".venv" / "bin" / "python")
        counter = [] if self.cpu else [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            f"--callgrind-out-file={data_dir}/cg.out"]
        profiling = [] if args.profile is None else [f"profile={Path(args.profile).resolve()}"]
        command = [*counter, python, "-c", BOOT, str(args.interval), str(args.timeout),
                   *profiling,
                   "backend.main:app", "--host", "127.0.0.1", "--port", str(self.port),
                   *nodes.UVICORN_FLAGS, "--ws-ping-interval", str(args.interval),
                   "--ws-ping-timeout", str(args.timeout)]
        self.log_path = data_dir / "node.log"
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command, cwd=root, env={**env, **QUIET, "DATA_DIR": str(data_dir),
                                        "PYTHONHASHSEED": "0"},
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=nodes.raise_fd_limit)
        self.dumps = 0
        self.mark = (0, 0.0)

    def wait_ready(self, timeout: float = 900) -> None:
        nodes.wait_ready(self.process, self.port, self.log_path, timeout)

    def control(self, *flags: str) -> None:
        if not self.cpu:
            subprocess.run(["callgrind_control", *flags, str(self.process.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)

    def zero(self) -> None:
        if self.profile is not None and not self.dumps:
            self.process.send_signal(signal.SIGUSR1)
        if self.cpu:
            self.mark = self._times()
        else:
            self.control("-z")

    def _times(self) -> tuple[int, float]:
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/schedstat") as handle:
            loop_ns = int(handle.read().split()[0])
        return loop_ns, nodes.cpu_seconds(pid)

    def count(self) -> tuple[int, int]:
        """Since the last ``zero``: the loop thread's and every thread's count (instructions;
        with ``cpu``, nanoseconds of CPU time)."""
        if self.cpu:
            if self.profile is not None and not self.dumps:
                self.process.send_signal(signal.SIGUSR2)
            self.dumps += 1
            loop_ns, seconds = self._times()
            return loop_ns - self.mark[0], round((seconds - self.mark[1]) * 1e9)
        self.dumps += 1
        self.control("-d")
        counts = nodes.callgrind_dump(self.dir, self.dumps)
        return counts.get(1, 0), sum(counts.values())

    def stop(self) -> None:
        nodes.stop_counted(self.process)


# -- the clients ---------------------------------------------------------------------------------


class Pings:
    """The pings every client got."""

    count = 0


class CountingConnection(ClientConnection):
    """websockets' client connection, counting the WebSocket pings it answers."""

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            Pings.count += 1
        super().process_event(event)


async def connect_raw(base: str, spec: fixtures.Client) -> Any:
    ws = await websockets.connect(
        f"{base}/ws/chat/{spec.conversation_id}/?token={spec.token}", max_size=None,
        compression=None, open_timeout=600, ping_interval=None,
        create_connection=CountingConnection)
    while not str(await ws.recv()).startswith('{"type":"recent_messages"'):
        pass
    return ws


async def connect_sio(base: str, spec: fixtures.Client) -> Any:
    ws = await websockets.connect(f"{base}/socket.io/?EIO=4&transport=websocket",
                                  max_size=None, compression=None, open_timeout=600,
                                  ping_interval=None)
    mine = f'"user_id":{spec.user_id},'
    while True:
        text = await ws.recv()
        if text == "2":
            Pings.count += 1
            await ws.send("3")
        elif isinstance(text, str) and text.startswith("0{"):
            auth = {"token": spec.token, "conversation_id": spec.conversation_id}
            await ws.send(f"40/chat,{json.dumps(auth)}")
        elif isinstance(text, str) and text.startswith("44/chat,"):
            raise RuntimeError(text[:200])
        elif isinstance(text, str) and (text.startswith('42/chat,["presence_diff"') or (
                text.startswith('42/chat,["user_joined"') and mine in text)):
            return ws


async def keep_reading(ws: Any) -> None:
    """Read on, answering Engine.IO's pings (websockets answers WebSocket pings itself)."""
    try:
        async for text in ws:
            if text == "2":
                Pings.count += 1
                await ws.send("3")
    except websockets.ConnectionClosed:
        pass


# -- a run ---------------------------------------------------------------------------------------


async def drive(node: Node, made: list[fixtures.Client], args: argparse.Namespace,
                ) -> dict[str, Any]:
    base = f"ws://127.0.0.1:{node.port}"
    connect = connect_raw if args.transport == "raw" else connect_sio
    gate = asyncio.Semaphore(50)
    opened: list[Any] = []
    readers: list[asyncio.Task[None]] = []

    async def one(spec: fixtures.Client) -> None:
        async with gate:
            ws = await asyncio.wait_for(connect(base, spec), timeout=600)
        opened.append(ws)
        readers.append(asyncio.ensure_future(keep_reading(ws)))

    await asyncio.gather(*(one(spec) for spec in made))
    say(f"{len(opened)} clients connected")
    # Presence and welcome frames settle, and the heartbeats spread as they will.
    await asyncio.sleep(max(3.0, 3 * args.interval))
    node.control("-i", "on")
    await asyncio.sleep(max(2.0, 2 * args.interval))  # counted code's first runs, not kept
    node.zero()
    pings0, started = Pings.count, time.monotonic()
    await asyncio.sleep(args.seconds)
    busy = node.count()
    pings, wall = Pings.count - pings0, time.monotonic() - started
    lost = sum(1 for ws in opened if ws.state is not websockets.State.OPEN)
    say(f"{pings} pings in {wall:.1f} s ({pings / wall / len(opened):.2f} per client per s, "
        f"{lost} connections lost)")
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    await asyncio.sleep(max(3.0, 3 * args.interval))  # the disconnects are handled
    node.zero()
    await asyncio.sleep(wall)
    idle = node.count()
    node.control("-i", "off")
    if not pings:
        raise RuntimeError("no ping reached the clients")
    unit = "ns" if node.cpu else "instructions"
    return {
        "transport": args.transport, "clients": len(opened), "interval_s": args.interval,
        "unit": unit, "pings": pings, "wall_s": round(wall, 1), "lost": lost,
        "loop_thread_per_ping": round((busy[0] - idle[0]) / pings),
        "all_threads_per_ping": round((busy[1] - idle[1]) / pings),
        "loop_thread_busy": busy[0], "loop_thread_idle": idle[0],
        "all_threads_busy": busy[1], "all_threads_idle": idle[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["raw", "sio"], default="sio")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="ping interval, seconds (both Engine.IO's and uvicorn's)")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="ping timeout, seconds (generous: valgrind is slow)")
    parser.add_argument("--seconds", type=float, default=20.0, help="counted wall time")
    parser.add_argument("--cpu", action="store_true",
                        help="no valgrind: the node's CPU time (noisy on a shared machine)")
    parser.add_argument("--profile", metavar="FILE",
                        help="no valgrind: cProfile of the loop's thread over the counted "
                        "window, written to FILE (pstats)")
    parser.add_argument("--server-root", help="run the node from this checkout")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    args = parser.parse_args()
    if not args.cpu and (shutil.which("valgrind") is None
                         or shutil.which("callgrind_control") is None):
        raise SystemExit("valgrind (with callgrind_control) is needed")
    nodes.raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="confab-ping-cost-"))
    node: Node | None = None
    try:
        url = f"sqlite://{work}/chat.sqlite3"
        secret = secrets.token_urlsafe(32)
        made = fixtures.build_in_subprocess(
            url, work / "setup", secret,
            {"idle": fixtures.Shape(args.clients, PER_CONVERSATION)}).scenarios["idle"]
        (work / "node").mkdir()
        node = Node(work / "node", nodes.node_env(url, secret), args)
        say(f"node (pid {node.process.pid}) starting" + ("" if args.cpu else " under valgrind"))
        node.wait_ready()
        result = asyncio.run(drive(node, made, args))
        node.stop()
        node = None
    finally:
        if node is not None:
            node.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    unit = "ns of CPU" if result["unit"] == "ns" else "instructions"
    say(f"{result['transport']}: {result['loop_thread_per_ping']:,} {unit} per ping/pong on the "
        f"loop's thread, {result['all_threads_per_ping']:,} in all threads (idle taken off)")


if __name__ == "__main__":
    main()
