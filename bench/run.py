#!/usr/bin/env python3
"""The benchmark: ``python3 bench/run.py`` (see the README's "Benchmark" section).

It installs what it needs (the project's venv, the load generator's pinned npm packages), makes
the users, conversations and tokens through the project's models before any server starts,
then for each database, scenario and transport: starts the server node(s) pinned to one CPU,
runs the Node load generator pinned to the other, reads the nodes' CPU time and memory from
/proc around the measured window, and prints a table and writes JSON at the end.

Transports: sio (Socket.IO /chat), raw (/ws/chat/{id}/), both (those two), ref (the bare
websockets broadcast of bench/reference.py, raw dialect, nothing stored), node (Node's
socket.io 4.8 with every message stored in PostgreSQL by pg, bench/js/reference-sio.js, on a
fresh PostgreSQL database of its own even with --db sqlite, one node, run once per scenario),
all (the four).

Scenarios (defaults; ``--clients``, ``--duration``, ``--warmup`` shrink them):
  fanout  1 conversation x 500 clients; 1 sender, 20 messages in flight, 64-byte messages,
          5 s warm-up then 20 s measured: deliveries/s, server CPU µs per delivery, latency
          percentiles, lost deliveries.
  rooms   250 conversations x 2 clients, each sending 2 msg/s (1,000 msg/s in all): latency
          percentiles at a fixed load, lost deliveries, server CPU %.
  idle    5,000 clients in 500 conversations, connected and held: KB of server memory per
          connection, connections per second.
  join-storm  500 clients of one conversation connecting all at once: seconds until every
          client has been told the room holds them all (total_users), presence frames
          received in all (user_joined, user_left, user_status, presence_diff).
  connect 5,000 clients in conversations of 2, connecting --connect-concurrency (100) at a
          time: connects/s, server CPU µs per connect, connect latency p50/p99 (opening to
          recent_messages on raw, to one's own user_joined on Socket.IO), server RSS growth.
  search  (only when named) 1,000,000 messages loaded with direct SQL, then a set of queries
          through GET /api/v1/chat/search: p50/p95/max milliseconds (bench/search.py).

Every traffic run (fanout, rooms) reports the server's CPU per message persisted in the window
(rows counted in the database). With --nodes 2 the clients alternate between the two nodes
(fanout's sender on the first): the CPU per delivery is both nodes' CPU summed, and each
node's own CPU is reported beside it.

Scale scenarios, only when named (bench/scale.py; each has a module of its own beside this one
and a generator module in bench/js/; the node gets uvicorn --backlog 16384):
  idle-100k  100,000 clients in conversations of 10, from loopback source addresses 127.0.0.2
          and up, held 60 s (--hold), then 50 pairs sending 1 msg/s each: KB per connection,
          connections/s, idle CPU % of the node, the light load's p99, generator peak memory.
  big-room  1 conversation of 10,000 members, and one of 500 in the same run: one sender at
          the maximum rate, then at 10 msg/s (--big-rate): µs per delivery of each and their
          ratio, the spread of members' median latency, members missing any message.
  storm   20,000 clients in 4 conversations of 5,000, senders at 5 msg/s (--storm-rate); the
          node is restarted (SIGTERM, new process on the same port) and every client
          reconnects within 1 s, resuming from its last position: seconds until all are
          joined and caught up, frames received in the storm, node peak memory, lost, duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.stored import StoredCounter

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
JS = BENCH / "js"
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
NEEDED_MODULES = "backend, uvicorn, uvloop, httptools, asyncpg, redis, httpx, tortoise"

SCENARIOS = ("fanout", "rooms", "idle", "join-storm", "connect")
#: Run only when named (bench/scale.py).
SCALE_SCENARIOS = ("idle-100k", "big-room", "storm")
TRANSPORTS = ("sio", "raw")
#: ``--transport all``: the project's two, then the references.
ALL_TRANSPORTS = ("sio", "raw", "node", "ref")
DATABASES = ("sqlite", "postgres")
DEFAULT_CLIENTS = {"fanout": 500, "rooms": 500, "idle": 5000, "join-storm": 500,
                   "connect": 5000}
PER_CONVERSATION: dict[str, int | None] = {"fanout": None, "rooms": 2, "idle": 10,
                                           "join-storm": None, "connect": 2}
#: The table each server stores a message in (the bare reference stores none).
STORED_TABLES = {"sio": "messages", "raw": "messages", "node": "ref_messages"}


# -- installing what the benchmark needs ---------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


def bootstrap() -> None:
    """Run under the project's venv (made and installed when missing), with the load
    generator's npm packages installed from the committed lockfile."""
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not VENV_PYTHON.exists():
            say(f"bench: creating {VENV}")
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        probe = subprocess.run([str(VENV_PYTHON), "-c", f"import {NEEDED_MODULES}"],
                               cwd=ROOT, capture_output=True)
        if probe.returncode != 0:
            say("bench: installing the project into the venv (pip install -e .)")
            subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", "-e", str(ROOT)],
                           check=True)
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()),
                                    *sys.argv[1:]])
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("bench: node and npm are needed for the load generator")
    wanted = json.loads((JS / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        installed = JS / "node_modules" / name / "package.json"
        if not installed.exists() or json.loads(installed.read_text())["version"] != version:
            say("bench: npm ci in bench/js")
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True,
                           stdout=subprocess.DEVNULL)
            break


def ensure_py_spy() -> str:
    binary = VENV / "bin" / "py-spy"
    if not binary.exists():
        say("bench: installing py-spy into the venv (--profile)")
        subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(binary)


# -- arguments -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, *SCALE_SCENARIOS, "search", "all"],
                        default="all",
                        help="all: every scenario but search, idle-100k, big-room and storm, "
                             "which run only when named")
    parser.add_argument("--transport", choices=[*TRANSPORTS, "both", "ref", "node", "all"],
                        default="both",
                        help="sio: Socket.IO /chat; raw: /ws/chat/{id}/; both: sio and raw; "
                             "ref: the bare websockets reference server (bench/reference.py), "
                             "raw dialect; node: Node socket.io 4.8 + PostgreSQL "
                             "(bench/js/reference-sio.js; always PostgreSQL, one node, once "
                             "per scenario); all: sio, raw, node and ref")
    parser.add_argument("--db", choices=[*DATABASES, "both"], default="both")
    parser.add_argument("--nodes", type=int, choices=[1, 2], default=1,
                        help="2: two nodes over Redis (REDIS_URL or 127.0.0.1:6379), clients "
                             "alternating between them; CPU per delivery sums both, each "
                             "node's own CPU is reported too")
    parser.add_argument("--clients", type=int,
                        help="clients of every selected scenario (default: fanout 500, rooms "
                             "500 in pairs, idle 5000 in tens, join-storm 500, connect 5000 "
                             "in pairs, idle-100k 100000 in tens, big-room 10000 in one room "
                             "(beside one of 500), storm 20000 in 4 rooms)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="warm-up seconds (storm: seconds of sending before the restart)")
    parser.add_argument("--inflight", type=int, default=20, help="fanout: messages in flight")
    parser.add_argument("--rate", type=float, default=2.0, help="rooms: messages/s per client")
    parser.add_argument("--hold", type=float,
                        help="idle, idle-100k: seconds the clients stay connected before memory "
                             "is read (default 5; idle-100k 60: two heartbeat intervals)")
    parser.add_argument("--big-rate", type=float, default=10.0,
                        help="big-room: messages/s of the fixed-rate phase")
    parser.add_argument("--storm-rate", type=float, default=5.0,
                        help="storm: messages/s of each room's sender")
    parser.add_argument("--sio-receivers", choices=["auto", "official", "lean"], default="auto",
                        help="Socket.IO clients that only receive: the official socket.io-client, "
                             "or lean ones (Engine.IO/Socket.IO frames on ws, half its CPU per "
                             "delivery); auto: lean in fanout, where the official client would "
                             "make the generator the bottleneck, official elsewhere. Senders "
                             "always use the official client")
    parser.add_argument("--message-bytes", type=int, default=64)
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="connections the generator opens at once (the connect scenario's "
                             "load; join-storm opens all at once)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the node(s)")
    parser.add_argument("--loadgen-cpu", default="1", help="taskset CPU list of the generator")
    parser.add_argument("--no-pin", action="store_true", help="do not pin anything")
    parser.add_argument("--server-root", type=Path,
                        help="run the node(s) from this other checkout of the project, with its "
                             "own .venv (e.g. the previous commit, in a git worktree), to "
                             "compare; fixtures and generator stay this checkout's")
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT",
                        help="before/after in one run: every scenario x transport runs first "
                             "on a node of CHECKOUT (another checkout with its own .venv, e.g. "
                             "the previous commit in a git worktree), then on this checkout's "
                             "(or --server-root's), back to back on the same fixtures; each "
                             "run's `version` names the commit it ran")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the first node during each measured window, the "
                             "connect scenario's ramp and idle-100k's hold (slows it; the run "
                             "is marked profiled)")
    parser.add_argument("--messages", type=int, default=1_000_000,
                        help="search: messages loaded")
    parser.add_argument("--rounds", type=int, default=10,
                        help="search: times each query is asked by each reader")
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/...)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (server logs)")
    args = parser.parse_args(argv)
    if args.no_pin or (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        args.server_cpus = args.loadgen_cpu = None
    return args


def shapes_of(args: argparse.Namespace) -> dict[str, Any]:
    from bench import scale
    from bench.fixtures import Shape

    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    shapes = {}
    for name in scenarios:
        extra = scale.module_for(name)
        if extra is not None:
            shapes.update(extra.shapes(args.clients))
            continue
        clients = args.clients or DEFAULT_CLIENTS[name]
        per = PER_CONVERSATION[name] or clients
        if name in ("rooms", "connect"):
            clients += clients % 2
        shapes[name] = Shape(clients, per)
    return shapes


# -- one run ---------------------------------------------------------------------------------


class Run:
    """One scenario x transport x database x node count: nodes up, generator, figures."""

    def __init__(self, args: argparse.Namespace, scenario: str, transport: str, db: str,
                 database_url: str, clients: list[Any], run_dir: Path, secret: str,
                 redis: str | None) -> None:
        self.args = args
        self.scenario = scenario
        self.transport = transport
        self.db = db
        self.database_url = database_url
        self.clients = clients
        self.dir = run_dir / f"{db}-{scenario}-{transport}-{args.nodes}n"
        self.secret = secret
        self.redis = redis
        self.tag = f"[{scenario} {transport} {db} {args.nodes}n]"
        self.marks: dict[str, Any] = {}
        #: The checkout whose node runs (None: this one), and the commit it is at.
        self.server_root: Path | None = args.server_root
        self.version: str | None = None
        self.env: dict[str, str] = {}
        #: Every scenario's clients (big-room also uses another scenario's room).
        self.all_clients: dict[str, list[Any]] = {}
        from bench import scale

        #: The scenario's own module (bench/scale.py), for the scale scenarios.
        self.extra = scale.module_for(scenario)

    def say(self, message: str) -> None:
        say(f"{self.tag} {message}")

    def execute(self) -> dict[str, Any]:
        from bench import nodes as nodes_mod
        from bench import services

        prefix = f"confab-bench-{uuid.uuid4().hex[:10]}" if self.args.nodes > 1 else None
        from bench import scale

        env = nodes_mod.node_env(self.database_url, self.secret, self.redis, prefix)
        self.env = env
        nodes: list[Any] = []
        extra_flags = scale.uvicorn_flags() if self.extra is not None else None
        if self.extra is not None:
            scale.check_open_files(len(self.clients))
        try:
            reference = self.transport in ("ref", "node")
            for i in range(self.args.nodes):
                nodes.append(nodes_mod.start_node(self.dir / f"node{i}", env,
                                                  self.args.server_cpus, self.transport == "ref",
                                                  self.server_root,
                                                  node_reference=self.transport == "node",
                                                  extra_flags=extra_flags))
            self.say("node(s) up: " + ", ".join(f"{n.base_url} (pid {n.pid})" for n in nodes))
            if not reference:
                self.check_api(nodes[0])
            return self.drive(nodes)
        finally:
            for node in nodes:
                node.stop()
            if prefix and self.redis:
                asyncio.run(services.drop_redis_prefix(self.redis, prefix))

    def check_api(self, node: Any) -> None:
        """The fixtures are what the API sees: a client's token reads its conversation."""
        import httpx

        client = self.clients[0]
        response = httpx.get(f"{node.base_url}/api/v1/chat/sessions/{client.conversation_id}",
                             headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"fixture check failed: {response.status_code} {response.text}")

    @property
    def sio_receivers(self) -> str:
        """Which Socket.IO client the receiving clients use (see ``--sio-receivers``)."""
        if self.extra is not None:
            return "lean"  # the scale scenarios' clients, senders included (bench/js/scale.js)
        if self.args.sio_receivers != "auto":
            return str(self.args.sio_receivers)
        return "lean" if self.scenario == "fanout" else "official"

    def config(self, nodes: list[Any]) -> dict[str, Any]:
        count = len(nodes)
        specs = []
        for i, client in enumerate(self.clients):
            sender = self.scenario == "fanout" and client.pos == 0
            specs.append(client.spec(node=0 if sender else i % count, sender=sender))
        base = {
            "scenario": self.scenario,
            "transport": {"ref": "raw", "node": "sio"}.get(self.transport, self.transport),
            "sio_receivers": self.sio_receivers,
            "nodes": [n.base_url for n in nodes],
            "clients": specs,
            "warmup_s": self.args.warmup,
            "duration_s": self.args.duration,
            "inflight": self.args.inflight,
            "rate_per_client": self.args.rate,
            "hold_s": 5.0 if self.args.hold is None else self.args.hold,
            "message_bytes": self.args.message_bytes,
            # A join storm: every client at once.
            "connect_concurrency": (len(specs) if self.scenario == "join-storm"
                                    else self.args.connect_concurrency),
            "progress_every_s": 5 if self.args.duration >= 10 else 1,
            "drain_s": 15,
            "drain_max_s": 120,
            "settle_max_s": 120,
        }
        return base if self.extra is None else dict(self.extra.config(self, nodes, base))

    def drive(self, nodes: list[Any]) -> dict[str, Any]:
        from bench import nodes as nodes_mod
        from bench import services

        pids = [n.pid for n in nodes]
        config_path = self.dir / "loadgen.json"
        config_path.write_text(json.dumps(self.config(nodes)))
        from bench import scale

        node_flags = scale.NODE_FLAGS if self.extra is not None else []
        command = [*nodes_mod.pin_prefix(self.args.loadgen_cpu), "node", *node_flags,
                   str(JS / "loadgen.js"), str(config_path)]
        stderr_path = self.dir / "loadgen.stderr"
        marks = self.marks
        result: dict[str, Any] | None = None
        profiler: subprocess.Popen[bytes] | None = None
        db_pids: list[int] = []
        redis_pid: int | None = None
        counter = self.stored_counter()
        with open(stderr_path, "wb") as stderr, contextlib.closing(counter):
            generator = subprocess.Popen(command, cwd=JS, stdout=subprocess.PIPE, stderr=stderr,
                                         stdin=subprocess.PIPE, text=True,
                                         preexec_fn=nodes_mod.raise_fd_limit)
            assert generator.stdout is not None
            try:
                for text in generator.stdout:
                    event = json.loads(text)
                    kind = event["event"]
                    now = time.monotonic()
                    if kind == "progress":
                        self.say(event["message"])
                    elif kind == "connecting":
                        marks["rss_before"] = [nodes_mod.rss_kb(p) for p in pids]
                        marks["cpu_connect0"] = nodes_mod.total_cpu(pids)
                        self.say(f"connecting {event['clients']} clients")
                        if self.args.profile and self.scenario == "connect":
                            # Its window is the ramp: stopped (py-spy then writes its file)
                            # once every client is in.
                            profiler = self.start_profiler(pids[0], seconds=600)
                    elif kind == "connected":
                        marks["cpu_connect1"] = nodes_mod.total_cpu(pids)
                        if profiler is not None and self.scenario == "connect":
                            profiler.send_signal(signal.SIGINT)
                        marks["rss_connected"] = [nodes_mod.rss_kb(p) for p in pids]
                        self.say(f"connected in {event['seconds']:.1f} s "
                                 f"({event['per_second']:.0f}/s)")
                    elif kind == "settled":
                        marks["settled"] = now
                        marks["cpu_settled"] = nodes_mod.total_cpu(pids)
                        marks["kernel_settled"] = nodes_mod.kernel_cpu(pids)
                        if self.args.profile and self.scenario == "idle-100k":
                            # The hold, in a file of its own, sampled ten times as often: an
                            # idle node is on the CPU about one sample in a hundred.
                            profiler = self.start_profiler(pids[0], seconds=600, part="hold",
                                                           rate=1000)
                    elif kind == "window_start":
                        marks["t0"] = now
                        marks["cpu0"] = nodes_mod.total_cpu(pids)
                        marks["kernel0"] = nodes_mod.kernel_cpu(pids)
                        marks["cpu0_each"] = [nodes_mod.total_cpu([p]) for p in pids]
                        counter.start()
                        marks["wait0"] = nodes_mod.runqueue_wait_seconds(pids)
                        marks["psi0"] = nodes_mod.cpu_pressure_seconds()
                        # The database's and Redis's CPU, when they run on this machine.
                        if (self.database_url.startswith("postgres")
                                and services.is_local(self.database_url)):
                            db_pids = [pid for pid in asyncio.run(
                                services.postgres_backends(self.database_url))
                                if pid != counter.backend_pid]
                            marks["db_cpu0"] = nodes_mod.total_cpu(db_pids)
                        if self.redis and services.is_local(self.redis):
                            redis_pid = asyncio.run(services.redis_pid(self.redis))
                            if redis_pid and Path(f"/proc/{redis_pid}").exists():
                                marks["redis_cpu0"] = nodes_mod.cpu_seconds(redis_pid)
                        if self.args.profile:
                            profiler = self.start_profiler(pids[0])
                    elif kind == "window_end":
                        marks["t1"] = now
                        marks["cpu1"] = nodes_mod.total_cpu(pids)
                        marks["kernel1"] = nodes_mod.kernel_cpu(pids)
                        marks["cpu1_each"] = [nodes_mod.total_cpu([p]) for p in pids]
                        marks["stored_in_window"] = counter.stop()
                        marks["wait1"] = nodes_mod.runqueue_wait_seconds(pids)
                        marks["psi1"] = nodes_mod.cpu_pressure_seconds()
                        if db_pids:
                            marks["db_cpu1"] = nodes_mod.total_cpu(db_pids)
                        if redis_pid and "redis_cpu0" in marks:
                            marks["redis_cpu1"] = nodes_mod.total_cpu([redis_pid])
                    elif kind == "hold_end":
                        marks["t_hold"] = now
                        marks["cpu_hold"] = nodes_mod.total_cpu(pids)
                        marks["kernel_hold"] = nodes_mod.kernel_cpu(pids)
                        if profiler is not None and self.scenario == "idle-100k":
                            profiler.send_signal(signal.SIGINT)
                            profiler.wait(timeout=120)
                            profiler = None
                        marks["rss_after"] = [nodes_mod.rss_kb(p) for p in pids]
                    elif kind == "result":
                        result = event
                    elif kind == "failed":
                        raise RuntimeError(f"load generator failed: {event['message']}")
                    elif self.extra is not None:
                        self.extra.on_event(self, event, nodes, generator)
                generator.wait(timeout=60)
                if profiler is not None:
                    profiler.wait(timeout=120)  # py-spy writes its file when its time is up
            finally:
                for child in (generator, profiler):
                    if child is not None and child.poll() is None:
                        child.kill()
                        child.wait(timeout=10)
        if result is None:
            raise RuntimeError(f"load generator gave no result (exit {generator.returncode}):\n"
                               + stderr_path.read_text(errors="replace")[-3000:])
        return self.figures(result, nodes)

    def stored_counter(self) -> StoredCounter:
        """Counts the messages the server stores in the measured window (bench/stored.py)."""
        from bench.stored import StoredCounter

        counter = StoredCounter(self.database_url, STORED_TABLES.get(self.transport))
        counter.open()
        return counter

    def start_profiler(self, pid: int, seconds: float | None = None, part: str = "",
                       rate: int = 100) -> subprocess.Popen[bytes]:
        """py-spy on ``pid`` for ``seconds`` (the measured window's length by default), ``rate``
        samples a second, into ``profile-SCENARIO[-PART]-TRANSPORT-DB.txt``."""
        from bench import nodes as nodes_mod

        name = f"{self.scenario}-{part}" if part else self.scenario
        out = RESULTS / f"profile-{name}-{self.transport}-{self.db}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.marks[f"profile_{part}" if part else "profile"] = str(out)
        self.say(f"py-spy recording to {out.relative_to(ROOT)}")
        command = [*nodes_mod.pin_prefix(self.args.loadgen_cpu), ensure_py_spy(), "record",
                   "--pid", str(pid), "--duration",
                   str(max(1, int(self.args.duration if seconds is None else seconds))),
                   "--rate", str(rate), "--nonblocking", "--format", "raw", "-o", str(out)]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def figures(self, result: dict[str, Any], nodes: list[Any]) -> dict[str, Any]:
        from bench import costs

        marks = self.marks
        clients = result["clients"]
        figures: dict[str, Any] = {
            "scenario": self.scenario,
            "transport": self.transport,
            **({"version": self.version} if self.version else {}),
            "db": self.db,
            "nodes": len(nodes),
            "clients": clients,
            **({"sio_receivers": self.sio_receivers} if self.transport in ("sio", "node")
               else {}),
            **({"store": "PostgreSQL (its own fresh database, whatever --db)"}
               if self.transport == "node" else {}),
            "connections_per_s": round(result["connections_per_second"], 1),
            "server_connect_cpu_us_per_connection": round(
                (marks["cpu_connect1"] - marks["cpu_connect0"]) * 1e6 / clients, 1),
            **costs.connect_figures(result, marks),
            "generator": {k: result.get(k) for k in (
                "generator_cpu_s", "generator_cpu_pct", "generator_loop_delay_p99_ms")},
            "profiled": any(key.startswith("profile") for key in marks),
        }
        if self.extra is not None:
            return dict(self.extra.figures(self, result, figures))
        if self.scenario == "connect":
            # Its memory figure is the ramp's (idle's is read after the hold).
            figures["kb_per_connection"] = figures.get("kb_per_connection_at_connect")
            return figures
        if self.scenario == "join-storm":
            figures.update({
                "all_joined_s": round(result["all_joined_s"], 2),
                "presence_frames": result["presence_frames"],
                "presence_frames_per_client": round(result["presence_frames"] / clients, 1),
            })
            return figures
        if self.scenario == "idle":
            grown = sum(after - before for after, before in
                        zip(marks["rss_after"], marks["rss_before"], strict=True))
            held = marks["t_hold"] - marks["settled"]
            figures.update({
                "kb_per_connection": round(grown / clients, 2),
                "server_rss_kb_before": marks["rss_before"],
                "server_rss_kb_after": marks["rss_after"],
                "server_cpu_pct": round((marks["cpu_hold"] - marks["cpu_settled"])
                                        / held * 100, 1) if held > 0 else None,
            })
            return figures
        window = marks["t1"] - marks["t0"]
        cpu = marks["cpu1"] - marks["cpu0"]
        delivered = result["window_deliveries"]
        latency = result["latency"]
        figures.update({
            "window_s": round(result["window_s"], 3),
            "messages_sent": result["sent"],
            "messages_per_s": round(result["window_sent"] / result["window_s"], 1),
            "deliveries_per_s": round(delivered / result["window_s"], 1),
            "deliveries_in_window": delivered,
            "server_cpu_s": round(cpu, 3),
            "server_cpu_pct": round(cpu / window * 100, 1),
            "server_kernel_share_pct": costs.kernel_share(marks, "kernel0", "kernel1", cpu),
            "us_per_delivery": round(cpu * 1e6 / delivered, 2) if delivered else None,
            "p50_ms": latency["p50_ms"],
            "p90_ms": latency["p90_ms"],
            "p99_ms": latency["p99_ms"],
            "max_ms": latency["max_ms"],
            "mean_ms": latency["mean_ms"],
            "lost": result["lost"],
            "unacked": result["unconfirmed"],
            "unacked_undelivered": result["undelivered"],
            "drain_s": round(result["drain_s"], 2),
            "duplicates": result["duplicates"],
            "send_errors": result["send_errors"],
            "error_samples": result["error_samples"],
            "generator_cpu_pct": round(result["generator_cpu_pct"], 1),
            **costs.stored_figures(marks, cpu, result["window_sent"]),
            **costs.per_node_figures(marks, delivered, window),
        })
        # Contention: the node(s) waiting for their CPU while runnable (other work on it),
        # and the machine's CPU pressure over the window.
        figures["server_runqueue_wait_pct"] = round((marks["wait1"] - marks["wait0"])
                                                    / window * 100, 1)
        if marks.get("psi0") is not None and marks.get("psi1") is not None:
            figures["machine_cpu_pressure_pct"] = round((marks["psi1"] - marks["psi0"])
                                                        / window * 100, 1)
        if "db_cpu1" in marks:
            figures["postgres_cpu_pct"] = round((marks["db_cpu1"] - marks["db_cpu0"])
                                                / window * 100, 1)
        if "redis_cpu1" in marks:
            figures["redis_cpu_pct_shared"] = round((marks["redis_cpu1"] - marks["redis_cpu0"])
                                                    / window * 100, 1)
        for key in ("profile", "profile_hold"):
            if key in marks:
                figures[key] = marks[key]
        return figures


# -- the whole benchmark ---------------------------------------------------------------------


RESULTS = BENCH / "results"


def machine() -> dict[str, Any]:
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "node": node_version.strip(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    bootstrap()
    sys.path.insert(0, str(ROOT))
    from bench import fixtures, report, services
    from bench.nodes import RAISED_LIMITS, UVICORN_FLAGS

    args = parse_args(argv)
    if args.scenario == "search":
        return search_main(args)
    shapes = shapes_of(args)
    transports = transports_of(args)
    # Shapes that are another scenario's fixtures (big-room's room of 500) are not run.
    runnable = SCENARIOS if args.scenario == "all" else (args.scenario,)
    dbs = DATABASES if args.db == "both" else (args.db,)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"results-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    redis = asyncio.run(services.redis_url()) if args.nodes > 1 else None

    meta = {
        **machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "server": {"uvicorn_flags": UVICORN_FLAGS, "raised_limits": RAISED_LIMITS,
                   "pinned_cpus": args.server_cpus},
        "generator": {"program": "bench/js/loadgen.js", "pinned_cpus": args.loadgen_cpu},
        "shapes": {name: vars(shape) for name, shape in shapes.items()},
    }
    say(f"bench: {', '.join(shapes)} x {', '.join(transports)} x {', '.join(dbs)}, "
        f"{args.nodes} node(s); warm-up {args.warmup:g} s, measured {args.duration:g} s")
    say(f"bench: server = uvicorn {' '.join(UVICORN_FLAGS)}, pinned to CPU "
        f"{args.server_cpus or '(not pinned)'}; generator = node bench/js/loadgen.js, pinned "
        f"to CPU {args.loadgen_cpu or '(not pinned)'}")
    say("bench: limits raised for the benchmark: "
        + " ".join(f"{k}={v}" for k, v in RAISED_LIMITS.items()))
    if "node" in transports:
        say("bench: node = Node socket.io 4.8 + PostgreSQL (bench/js/reference-sio.js), pinned "
            "like a node, on a fresh PostgreSQL database of its own whatever --db, once per "
            "scenario")
    if any(name in SCALE_SCENARIOS for name in runnable):
        scale_notes()
    load = os.getloadavg()
    if load[0] > 0.5:
        say(f"bench: note: load average {load[0]:.2f} before starting: other work is running, "
            "figures will be noisy")

    runs: list[dict[str, Any]] = []
    results = {"meta": meta, "runs": runs}
    run_root = Path(tempfile.mkdtemp(prefix="confab-bench-"))
    secret = secrets.token_urlsafe(48)
    failed = False
    node_done: set[str] = set()  # scenarios the Node reference has run (once each)
    versions = versions_of(args)
    if args.compare:
        say("bench: before/after: each run on " + ", then on ".join(
            f"{version} ({root or ROOT})" for root, version in versions))
    try:
        for db in dbs:
            with services.database(db, run_root) as database_url:
                started = time.monotonic()
                say(f"bench: [{db}] making users, conversations and tokens "
                    f"({max(s.clients for s in shapes.values())} users)")
                made = fixtures.build_in_subprocess(database_url, run_root / f"{db}-setup",
                                                    secret, shapes)
                say(f"bench: [{db}] fixtures ready in {time.monotonic() - started:.1f} s")
                for scenario in shapes:
                    if scenario not in runnable:
                        continue
                    for transport in transports:
                        if transport == "node":
                            if scenario in node_done:
                                continue
                            node_done.add(scenario)
                        # The references are no version of the project: run once.
                        mine = versions if transport in TRANSPORTS else versions[-1:]
                        for server_root, version in mine:
                            tag = f"[{scenario} {transport} {db} {args.nodes}n]"
                            try:
                                with server_database(transport, db, database_url,
                                                     run_root) as (run_db, run_url):
                                    run = Run(args, scenario, transport, run_db, run_url,
                                              made.scenarios[scenario], run_root, secret, redis)
                                    run.all_clients = made.scenarios
                                    if version is not None and transport in TRANSPORTS:
                                        run.server_root, run.version = server_root, version
                                        run.tag = tag = f"{tag[:-1]} {version}]"
                                        run.dir = run.dir.with_name(f"{run.dir.name}-{version}")
                                    tag = run.tag
                                    figures = run.execute()
                            except Exception as exc:
                                failed = True
                                say(f"{tag} FAILED: {exc}")
                                figures = {"scenario": scenario, "transport": transport,
                                           "db": db, "nodes": args.nodes,
                                           "error": str(exc)[:2000]}
                            runs.append(figures)
                            out.write_text(json.dumps(results, indent=2))
                            say(f"{tag} done: " + summary(figures))
    finally:
        if args.keep or failed:
            say(f"bench: run folder (server logs) kept at {run_root}")
        else:
            shutil.rmtree(run_root, ignore_errors=True)
    out.write_text(json.dumps(results, indent=2))
    say("")
    say(report.text_table([r for r in runs if "error" not in r]))
    say("")
    say(f"bench: results written to {out}")
    return 1 if failed else 0


def versions_of(args: argparse.Namespace) -> list[tuple[Path | None, str | None]]:
    """The checkouts whose nodes run, in order, with the commit each is at (``--compare``):
    the compared one first, then this one (or ``--server-root``); without ``--compare`` just
    the latter, unnamed."""
    if args.compare is None:
        return [(args.server_root, None)]
    return [(args.compare, commit_of(args.compare)),
            (args.server_root, commit_of(args.server_root or ROOT))]


def commit_of(root: Path) -> str:
    """The short commit a checkout is at, marked ``+`` when its tree has changes."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True,
                           check=True).stdout.strip()
    return f"{head}+" if dirty else head


def transports_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The transports ``--transport`` names; the Node reference runs on one node only."""
    named = {"both": TRANSPORTS, "all": ALL_TRANSPORTS}.get(args.transport, (args.transport,))
    if args.nodes > 1 and "node" in named:
        say("bench: the Node reference runs on one node only (no Redis adapter): left out")
        named = tuple(t for t in named if t != "node")
    return named


@contextlib.contextmanager
def server_database(transport: str, db: str, database_url: str,
                    run_root: Path) -> Iterator[tuple[str, str]]:
    """The database a run's server uses, and its kind: a copy of the pass's fixtures, so that
    every run (and both sides of ``--compare``) starts from the same state; a fresh PostgreSQL
    database for the Node reference, which stores in PostgreSQL whatever ``--db`` says."""
    from bench import services

    if transport != "node":
        with services.copy_of(db, database_url) as url:
            yield db, url
        return
    with services.database("postgres", run_root) as url:
        yield "postgres", url


def scale_notes() -> None:
    """The limits the scale scenarios meet: open files of the node and the generator, and the
    accept queue the kernel allows."""
    import resource

    from bench import scale
    from bench.nodes import raise_fd_limit

    raise_fd_limit()  # what the node and the generator inherit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    say(f"bench: open files for the node and the generator: soft {soft}, hard {hard}; node "
        f"started with uvicorn --backlog {scale.BACKLOG}")
    note = scale.backlog_note()
    if note:
        say(f"bench: note: {note}")


def search_main(args: argparse.Namespace) -> int:
    """The search scenario (bench/search.py) on each selected database."""
    from bench import search, services

    dbs = DATABASES if args.db == "both" else (args.db,)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"search-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    results = {"meta": {**machine(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                              for k, v in vars(args).items()},
                        "pinned_cpus": args.server_cpus}, "runs": runs}
    load = os.getloadavg()
    if load[0] > 0.5:
        say(f"bench: note: load average {load[0]:.2f} before starting: other work is running, "
            "figures will be noisy")
    run_root = Path(tempfile.mkdtemp(prefix="confab-bench-search-"))
    secret = secrets.token_urlsafe(48)
    failed = False
    try:
        for db in dbs:
            with services.database(db, run_root) as database_url:
                try:
                    figures = search.run(args, db, database_url, run_root, secret, say)
                except Exception as exc:
                    failed = True
                    say(f"[search {db}] FAILED: {exc}")
                    figures = {"scenario": "search", "db": db, "error": str(exc)[:2000]}
                runs.append(figures)
                out.write_text(json.dumps(results, indent=2))
                if "error" not in figures:
                    say(f"[search {db}] done: {search.summary(figures)}")
    finally:
        if args.keep or failed:
            say(f"bench: run folder (server logs) kept at {run_root}")
        else:
            shutil.rmtree(run_root, ignore_errors=True)
    say(f"bench: results written to {out}")
    return 1 if failed else 0


def summary(figures: dict[str, Any]) -> str:
    from bench import scale

    if "error" in figures:
        return "error"
    extra = scale.module_for(str(figures["scenario"]))
    if extra is not None:
        return str(extra.summary(figures))
    if figures["scenario"] == "join-storm":
        return (f"all told the room's size in {figures['all_joined_s']} s, "
                f"{figures['presence_frames']} presence frames "
                f"({figures['presence_frames_per_client']} per client)")
    if figures["scenario"] == "idle":
        return (f"{figures['kb_per_connection']} KB/connection, "
                f"{figures['connections_per_s']} connections/s")
    if figures["scenario"] == "connect":
        return (f"{figures['connections_per_s']} connections/s, "
                f"{figures['server_connect_cpu_us_per_connection']} µs server CPU per connect, "
                f"connect p50/p99 {figures['connect_p50_ms']}/{figures['connect_p99_ms']} ms, "
                f"server RSS +{figures.get('server_rss_growth_kb')} KB "
                f"({figures.get('kb_per_connection_at_connect')} KB/connection)")
    return (f"{figures['deliveries_per_s']:.0f} deliveries/s, {figures['us_per_delivery']} µs/"
            f"delivery, p50/p99 {figures['p50_ms']}/{figures['p99_ms']} ms, "
            f"lost {figures['lost']}, unacked {figures['unacked']}, server CPU "
            f"{figures['server_cpu_pct']} % ({figures.get('server_kernel_share_pct')} % of it "
            f"in the kernel; waited for CPU "
            f"{figures['server_runqueue_wait_pct']} %), generator CPU "
            f"{figures['generator_cpu_pct']} %"
            + (f", {figures['us_per_stored_message']} µs per stored message"
               if figures.get("us_per_stored_message") is not None else "")
            + (f", CPU by node {figures['node_cpu_pct']} %" if "node_cpu_pct" in figures
               else ""))


if __name__ == "__main__":
    sys.exit(main())
