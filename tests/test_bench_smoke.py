"""The benchmark harness (bench/) end to end at a tiny scale: every scenario on both transports
runs, nothing is lost, and the JSON carries every figure. No speed is asserted here: speed is
what the benchmark itself measures (README, "Benchmark")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TRAFFIC_FIELDS = ("deliveries_per_s", "us_per_delivery", "p50_ms", "p90_ms", "p99_ms", "max_ms",
                  "lost", "unacked", "duplicates", "server_cpu_pct", "generator_cpu_pct",
                  "messages_sent", "deliveries_in_window", "connections_per_s")
IDLE_FIELDS = ("kb_per_connection", "connections_per_s", "server_rss_kb_before",
               "server_rss_kb_after")


def test_bench_runs_every_scenario_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--scenario", "all", "--transport", "both",
         "--db", "sqlite", "--clients", "4", "--duration", "1", "--warmup", "0.5",
         "--hold", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "µs/deliv" in result.stdout  # the final table
    data = json.loads(out.read_text())
    assert data["meta"]["server"]["raised_limits"]["SEND_RATE_PER_SECOND"]
    runs = {(run["scenario"], run["transport"]): run for run in data["runs"]}
    assert set(runs) == {(s, t) for s in ("fanout", "rooms", "idle", "join-storm")
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
        for name in TRAFFIC_FIELDS:
            assert run[name] is not None, (where, name)
        assert run["messages_sent"] > 0, where
        assert run["deliveries_in_window"] > 0, where
        assert run["lost"] == 0, where
        assert run["unacked"] == 0, where
        assert run["duplicates"] == 0, where
        assert run["send_errors"] == 0, (where, run["error_samples"])


def test_bench_search_scenario_at_tiny_scale(tmp_path: Path) -> None:
    """``--scenario search`` on both databases: the messages loaded by SQL are found through
    the route, and every query of the set has its figures."""
    out = tmp_path / "search.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--scenario", "search", "--db", "both",
         "--messages", "5000", "--rounds", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    data = json.loads(out.read_text())
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
    "storm": ("all_joined_s", "all_caught_up_s", "storm_frames", "server_peak_rss_mb"),
}


@pytest.mark.timeout(420)  # two runs, each with its fixtures and nodes (storm: a restart)
@pytest.mark.parametrize("scenario", sorted(SCALE_FIELDS))
def test_bench_runs_a_scale_scenario_at_tiny_scale(scenario: str, tmp_path: Path) -> None:
    """idle-100k, big-room and storm (a node restarted under its clients) on both transports:
    every client connected (storm: reconnected and caught up), nothing lost, every figure
    there."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--scenario", scenario, "--transport", "both",
         "--db", "sqlite", "--clients", "8", "--duration", "1", "--warmup", "1",
         "--hold", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    runs = {run["transport"]: run for run in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"sio", "raw"}
    for transport, run in runs.items():
        assert "error" not in run, (transport, run)
        for name in SCALE_FIELDS[scenario]:
            assert run[name] is not None, (transport, name)
        assert run["lost"] == 0, transport
        assert run["unacked"] == 0, transport
        if scenario == "idle-100k":
            assert run["up_after_hold"] == 8, transport
            assert run["source_addresses"] == ["127.0.0.2"], transport
        if scenario == "big-room":
            assert run["members_missing_any"] == 0, transport
            assert run["duplicates"] == 0, transport
        if scenario == "storm":
            assert run["complete"] is True, transport
            assert run["caught_up"] == 8, transport
            assert run["members_missing_any"] == 0, transport
