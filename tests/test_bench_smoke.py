"""The benchmark harness (bench/) end to end at a tiny scale: every scenario on both transports
runs, nothing is lost, and the JSON carries every figure. No speed is asserted here: speed is
what the benchmark itself measures (README, "Benchmark").

The invocations are started together (``launched``) and each test waits for its own: each
spends most of its time waiting (nodes starting and stopping, warm-ups, holds), and one after
the other they took over two minutes of the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import Postgres

ROOT = Path(__file__).resolve().parents[1]

TRAFFIC_FIELDS = ("deliveries_per_s", "us_per_delivery", "p50_ms", "p90_ms", "p99_ms", "max_ms",
                  "lost", "unacked", "duplicates", "server_cpu_pct", "generator_cpu_pct",
                  "messages_sent", "deliveries_in_window", "connections_per_s")
IDLE_FIELDS = ("kb_per_connection", "connections_per_s", "server_rss_kb_before",
               "server_rss_kb_after")
CONNECT_FIELDS = ("connections_per_s", "server_connect_cpu_us_per_connection", "connect_p50_ms",
                  "connect_p99_ms", "server_rss_growth_kb", "kb_per_connection_at_connect",
                  "kb_per_connection")


@dataclass
class Launch:
    """One ``bench/run.py`` invocation under way: its process, its JSON and its output."""

    process: subprocess.Popen[str]
    out: Path
    log: Path

    def finish(self, timeout: float = 400) -> str:
        """Its output, once it exited 0."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        text = self.log.read_text(errors="replace")
        assert self.process.returncode == 0, text[-8000:]
        return text

    def data(self, timeout: float = 400) -> dict[str, Any]:
        """Its JSON, once it exited 0 (and printed its final table)."""
        assert "conn/s" in self.finish(timeout)  # the final table
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data


TINY = ["--duration", "1", "--warmup", "0.5", "--hold", "0.5"]


def invocations(postgres: Postgres, redis_url: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every invocation of this module: its arguments and the environment it adds. All but the
    first run unpinned (they run together; only the first checks the pinning path)."""
    pg = {"DATABASE_URL": postgres.admin_url}
    found = {
        # The project's two doors in two invocations: one after the other they were the
        # longest wait of this module.
        "all-sio": (["--scenario", "all", "--transport", "sio", "--db", "sqlite", "--clients",
                     "4", *TINY], {}),
        "all-raw": (["--scenario", "all", "--transport", "raw", "--db", "sqlite", "--clients",
                     "4", *TINY, "--no-pin"], {}),
        "node": (["--scenario", "all", "--transport", "node", "--db", "sqlite", "--clients",
                  "4", *TINY, "--no-pin"], pg),
        "two-nodes": (["--scenario", "fanout", "--nodes", "2", "--db", "postgres", "--transport",
                       "raw", "--clients", "6", "--duration", "1", "--warmup", "0.5",
                       "--no-pin"], {**pg, "REDIS_URL": redis_url}),
        "search": (["--scenario", "search", "--db", "both", "--messages", "5000", "--rounds",
                    "1", "--no-pin"], {}),
    }
    for scenario, transport in SCALE_TRANSPORTS.items():
        found[f"scale-{scenario}"] = (
            ["--scenario", scenario, "--transport", transport, "--db", "sqlite", "--clients",
             "8", "--duration", "1", "--warmup", "1", "--hold", "0.5", "--no-pin"], {})
    return found


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres,
             redis_url: str) -> Iterator[dict[str, Launch]]:
    folder = tmp_path_factory.mktemp("bench-smoke")
    # The generator's npm packages, installed once before the invocations start together
    # (each would run ``npm ci`` into the same folder otherwise): ``--help`` installs, then
    # prints the help.
    installed = subprocess.run([sys.executable, "bench/run.py", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=300, check=False)
    assert installed.returncode == 0, installed.stdout[-4000:] + installed.stderr[-4000:]
    launches: dict[str, Launch] = {}
    for name, (args, env) in invocations(postgres, redis_url).items():
        out, log = folder / f"{name}.json", folder / f"{name}.log"
        with open(log, "w") as handle:
            process = subprocess.Popen([sys.executable, "bench/run.py", *args, "--out", str(out)],
                                       cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                       text=True, env={**os.environ, **env})
        launches[name] = Launch(process, out, log)
    yield launches
    for launch in launches.values():
        if launch.process.poll() is None:
            launch.process.kill()
            launch.process.wait()


def assert_traffic(where: str, run: dict[str, Any]) -> None:
    """A traffic run's figures: all there, nothing lost, and every message stored."""
    for name in TRAFFIC_FIELDS:
        assert run[name] is not None, (where, name)
    assert run["messages_sent"] > 0, where
    assert run["deliveries_in_window"] > 0, where
    assert run["lost"] == 0, where
    assert run["unacked"] == 0, where
    assert run["duplicates"] == 0, where
    assert run["send_errors"] == 0, (where, run["error_samples"])
    # Counted in the database: the server stored what was sent in the window.
    assert run["messages_stored_in_window"] > 0, where
    assert run["us_per_stored_message"] is not None, where
    # The kernel's share of that CPU (None only when the window's CPU was under a clock tick).
    share = run["server_kernel_share_pct"]
    assert share is None or 0 <= share <= 100, (where, share)


@pytest.mark.timeout(420)
def test_bench_runs_every_scenario_at_tiny_scale(launched: dict[str, Launch]) -> None:
    runs = {}
    for transport in ("sio", "raw"):
        launch = launched[f"all-{transport}"]
        assert "µs/deliv" in launch.finish()  # the final table
        data = json.loads(launch.out.read_text())
        assert data["meta"]["server"]["raised_limits"]["SEND_RATE_PER_SECOND"]
        runs.update({(run["scenario"], run["transport"]): run for run in data["runs"]})
    assert set(runs) == {(s, t) for s in ("fanout", "rooms", "idle", "join-storm", "connect")
                         for t in ("sio", "raw")}
    # Fanout's Socket.IO receivers are the lean ones (its sender and every other scenario's
    # clients are the official client): they received every message above too.
    assert runs[("fanout", "sio")]["sio_receivers"] == "lean"
    assert runs[("rooms", "sio")]["sio_receivers"] == "official"
    for (scenario, transport), run in runs.items():
        where = f"{scenario}/{transport}"
        assert "error" not in run, (where, run)
        assert run["clients"] == 4, where
        if scenario == "join-storm":
            # Four clients: each told of every arrival after its own (user_joined, user_status).
            assert run["all_joined_s"] is not None, where
            assert run["presence_frames"] >= 4, where
            continue
        if scenario == "idle":
            for name in IDLE_FIELDS:
                assert run[name] is not None, (where, name)
            continue
        if scenario == "connect":
            for name in CONNECT_FIELDS:
                assert run[name] is not None, (where, name)
            assert run["connect_p50_ms"] <= run["connect_p99_ms"], where
            continue
        assert_traffic(where, run)


@pytest.mark.timeout(420)
def test_bench_node_reference_runs_every_scenario(launched: dict[str, Launch]) -> None:
    """``--transport node``: Node's socket.io storing in PostgreSQL answers the generator's
    Socket.IO clients in every scenario, on PostgreSQL even when ``--db`` is SQLite."""
    data = launched["node"].data()
    runs = {run["scenario"]: run for run in data["runs"]}
    assert set(runs) == {"fanout", "rooms", "idle", "join-storm", "connect"}
    for scenario, run in runs.items():
        assert "error" not in run, (scenario, run)
        assert (run["transport"], run["db"], run["clients"]) == ("node", "postgres", 4), scenario
    assert runs["fanout"]["sio_receivers"] == "lean"
    assert_traffic("fanout", runs["fanout"])
    assert_traffic("rooms", runs["rooms"])
    assert runs["join-storm"]["all_joined_s"] is not None
    for name in CONNECT_FIELDS:
        assert runs["connect"][name] is not None, name


@pytest.mark.timeout(420)
def test_bench_fanout_across_two_nodes(launched: dict[str, Launch]) -> None:
    """``--nodes 2``: one conversation's receivers on both nodes; the CPU per delivery is both
    nodes' CPU, and each node's own is reported beside it."""
    data = launched["two-nodes"].data()
    [run] = data["runs"]
    assert "error" not in run, run
    assert run["nodes"] == 2
    assert_traffic("fanout/2 nodes", run)
    assert len(run["node_cpu_s"]) == len(run["node_cpu_pct"]) == 2
    assert len(run["node_us_per_delivery"]) == 2
    # The same readings, taken one node at a time (a clock tick apart at most).
    assert abs(sum(run["node_cpu_s"]) - run["server_cpu_s"]) <= 0.05


@pytest.mark.timeout(420)
def test_bench_search_scenario_at_tiny_scale(launched: dict[str, Launch]) -> None:
    """``--scenario search`` on both databases: the messages loaded by SQL are found through
    the route, and every query of the set has its figures."""
    launched["search"].finish()
    data = json.loads(launched["search"].out.read_text())
    assert [run["db"] for run in data["runs"]] == ["sqlite", "postgres"]
    for run in data["runs"]:
        assert run["messages"] == 5000 and run["queries"] == 2 * len(run["per_query"])
        assert run["p50_ms"] <= run["p95_ms"] <= run["max_ms"]
        # The frequent words match through every reader's conversations.
        assert run["per_query"]["most common word"]["first_page_hits"] == {"member": 50, "wide": 50}


SCALE_FIELDS = {
    "idle-100k": ("kb_per_connection", "connections_per_s", "server_cpu_pct", "p99_ms",
                  "generator_peak_rss_mb"),
    "big-room": ("deliveries_per_s", "us_per_delivery", "p99_ms", "us_per_delivery_ratio"),
    "storm": ("all_joined_s", "all_caught_up_s", "storm_frames", "server_peak_rss_mb",
              "generator_storm_cpu"),
}


#: The transports each scale scenario is smoke-tested on: the storm (a node restarted under its
#: clients) on both; the others share the storm's generator code (bench/js/scale.js) and run on
#: one each, so that both transports' paths through them are covered without doubling the time.
SCALE_TRANSPORTS = {"idle-100k": "sio", "big-room": "raw", "storm": "both"}


@pytest.mark.timeout(420)
@pytest.mark.parametrize("scenario", sorted(SCALE_FIELDS))
def test_bench_runs_a_scale_scenario_at_tiny_scale(scenario: str,
                                                   launched: dict[str, Launch]) -> None:
    """idle-100k, big-room and storm: every client connected (storm: reconnected and caught
    up), nothing lost, every figure there."""
    transport = SCALE_TRANSPORTS[scenario]
    launch = launched[f"scale-{scenario}"]
    launch.finish()
    runs = {run["transport"]: run for run in json.loads(launch.out.read_text())["runs"]}
    assert set(runs) == ({"sio", "raw"} if transport == "both" else {transport})
    for transport, run in runs.items():
        assert "error" not in run, (transport, run)
        for name in SCALE_FIELDS[scenario]:
            assert run[name] is not None, (transport, name)
        assert run["lost"] == 0, transport
        assert run["unacked"] == 0, transport
        if scenario == "idle-100k":
            assert run["up_after_hold"] == 8, transport
            assert run["source_addresses"] == ["127.0.0.2"], transport
            share = run["server_kernel_share_pct"]
            assert share is None or 0 <= share <= 100, (transport, share)
        if scenario == "big-room":
            assert run["members_missing_any"] == 0, transport
            assert run["duplicates"] == 0, transport
        if scenario == "storm":
            assert run["complete"] is True, transport
            assert run["caught_up"] == 8, transport
            assert run["members_missing_any"] == 0, transport


def test_bench_compare_runs_the_compared_checkout_first(tmp_path: Path) -> None:
    """``--compare CHECKOUT``: its node first, then this checkout's, each named by its commit
    (``+`` when its tree has changes)."""
    from bench.run import commit_of, parse_args, versions_of

    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    (other / "f").write_text("one")
    subprocess.run(["git", "-C", str(other), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=b", "-c", "user.email=b@e",
                    "commit", "-qm", "one"], check=True)
    head = subprocess.run(["git", "-C", str(other), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    versions = versions_of(parse_args(["--compare", str(other)]))
    assert versions == [(other, head), (None, commit_of(ROOT))]
    (other / "f").write_text("two")
    assert commit_of(other) == f"{head}+"
    assert versions_of(parse_args([])) == [(None, None)]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_every_run_starts_on_a_copy_of_the_fixtures(kind: str, tmp_path: Path,
                                                     postgres: Postgres,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A server run's database is a copy of the fixtures' (``services.copy_of``): it holds what
    the fixtures hold, and what a run stores never reaches the next run's copy."""
    import asyncio
    import sqlite3

    import asyncpg

    from bench import services
    from bench.run import server_database

    monkeypatch.setenv("DATABASE_URL", postgres.admin_url)

    async def sql(url: str, statement: str) -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await conn.fetch(statement)]
        finally:
            await conn.close()

    def run_sql(url: str, statement: str) -> list[Any]:
        if kind == "sqlite":
            with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
                return conn.execute(statement).fetchall()
        return asyncio.run(sql(url, statement))

    with services.database(kind, tmp_path) as fixtures_url:
        run_sql(fixtures_url, "CREATE TABLE t (n INTEGER)")
        run_sql(fixtures_url, "INSERT INTO t VALUES (1)")
        with server_database("sio", kind, fixtures_url, tmp_path) as (db, first):
            assert (db, first != fixtures_url) == (kind, True)
            assert run_sql(first, "SELECT n FROM t") == [(1,)]
            run_sql(first, "INSERT INTO t VALUES (2)")
            assert run_sql(first, "SELECT n FROM t ORDER BY n") == [(1,), (2,)]
        with services.copy_of(kind, fixtures_url) as second:
            assert run_sql(second, "SELECT n FROM t") == [(1,)]
        assert run_sql(fixtures_url, "SELECT n FROM t") == [(1,)]
        if kind == "sqlite":
            assert not Path(first.removeprefix("sqlite://")).exists()
        else:
            name = first.rsplit("/", 1)[1]
            assert asyncio.run(sql(postgres.admin_url,
                                   f"SELECT 1 FROM pg_database WHERE datname = '{name}'")) == []
