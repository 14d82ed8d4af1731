"""The ``idle-100k`` scenario's figures (generator: bench/js/idle100k.js).

100,000 idle connections on one node in conversations of 10, opened from loopback source
addresses 127.0.0.2 and up (10,000 each; one address gives about 28,000 ephemeral ports), held
``--hold`` seconds (60 by default: two Engine.IO pings at 25 s, three raw keepalive pings at
20 s), then a light load while they stay connected: positions 0 and 1 of 50 conversations each
send 1 msg/s (100 msg/s in all), ``--warmup`` then ``--duration`` seconds.

Figures: KB of node memory per connection (VmRSS growth over the connections), connections/s,
the node's idle CPU % over the hold, the light load's latency and losses, the generator's peak
memory (VmHWM).
"""

from __future__ import annotations

from typing import Any

from bench import costs
from bench.fixtures import Shape
from bench.scale import PER_ADDRESS, server_side, specs

DEFAULT_CLIENTS = 100_000
PER_CONVERSATION = 10
LOAD_PAIRS = 50
LOAD_RATE = 1.0
#: Default hold: at least two heartbeat intervals of either transport.
HOLD_S = 60.0


def shapes(clients: int | None) -> dict[str, Shape]:
    return {"idle-100k": Shape(clients or DEFAULT_CLIENTS, PER_CONVERSATION)}


def config(run: Any, nodes: list[Any], base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "clients": specs(run, run.clients), "hold_s": hold_s(run),
            "load_pairs": LOAD_PAIRS, "load_rate": LOAD_RATE, "clients_per_address": PER_ADDRESS,
            "connect_concurrency": run.args.connect_concurrency}


def hold_s(run: Any) -> float:
    """``--hold`` when given, else 60 s."""
    return float(run.args.hold) if run.args.hold is not None else HOLD_S


def on_event(run: Any, event: dict[str, Any], nodes: list[Any], generator: Any) -> None:
    """Nothing beyond the events bench/run.py reads itself."""


def figures(run: Any, result: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    marks = run.marks
    clients = result["clients"]
    grown = sum(after - before for after, before in
                zip(marks["rss_after"], marks["rss_before"], strict=True))
    held = marks["t_hold"] - marks["settled"]
    window = marks["t1"] - marks["t0"]
    latency = result["latency"]
    return {
        **base,
        "kb_per_connection": round(grown / clients, 2),
        "server_rss_kb_before": marks["rss_before"],
        "server_rss_kb_after": marks["rss_after"],
        "hold_s": round(held, 1),
        "server_cpu_pct": round((marks["cpu_hold"] - marks["cpu_settled"]) / held * 100, 2)
        if held > 0 else None,
        "server_kernel_share_pct": costs.kernel_share(
            marks, "kernel_settled", "kernel_hold", marks["cpu_hold"] - marks["cpu_settled"]),
        "up_after_hold": result["up_after_hold"],
        "up_at_end": result["up_at_end"],
        "source_addresses": result["source_addresses"],
        "load_senders": result["load_senders"],
        "messages_per_s": round(result["window_sent"] / result["window_s"], 1),
        "load_server_cpu_pct": round((marks["cpu1"] - marks["cpu0"]) / window * 100, 1),
        "p50_ms": latency["p50_ms"],
        "p90_ms": latency["p90_ms"],
        "p99_ms": latency["p99_ms"],
        "max_ms": latency["max_ms"],
        "lost": result["lost"],
        "unacked": result["unconfirmed"],
        "duplicates": result["duplicates"],
        "send_errors": result["send_errors"],
        "error_samples": result["error_samples"],
        "generator_cpu_pct": round(result["generator_cpu_pct"], 1),
        "generator_peak_rss_mb": round(result["generator_peak_rss_kb"] / 1024, 1),
        "server": server_side(run),
    }


def summary(figures: dict[str, Any]) -> str:
    return (f"{figures['kb_per_connection']} KB/connection, {figures['connections_per_s']} "
            f"connections/s, idle CPU {figures['server_cpu_pct']} % "
            f"({figures['server_kernel_share_pct']} % of it in the kernel) over "
            f"{figures['hold_s']} s ({figures['up_after_hold']}/{figures['clients']} up), light "
            f"load p99 {figures['p99_ms']} ms, lost {figures['lost']}, generator peak "
            f"{figures['generator_peak_rss_mb']} MB")
