"""The ``big-room`` scenario's figures (generator: bench/js/bigroom.js).

One conversation of 10,000 members and, in the same run, one of 500 (the fanout scenario's
size) to compare with: for each, every member connected over the chosen transport, then one
sender at the maximum rate (``--inflight`` messages in flight, as in fanout) and then at a fixed
10 msg/s (``--big-rate``), each ``--warmup`` then ``--duration`` seconds.

Figures per size and rate: deliveries/s, node CPU µs per delivery (and the 10,000 room's
against the 500 room's), latency, and fairness: each member's median latency in the window,
spread across members (min / p50 / p99 / max), how many deliveries each member had, and how
many members lack any acknowledged message (must be 0, as lost must).
"""

from __future__ import annotations

from typing import Any

from bench.fixtures import Shape
from bench.scale import PER_ADDRESS, specs, window_cpu

DEFAULT_CLIENTS = 10_000
SMALL = 500
SMALL_SHAPE = "big-room-small"


def shapes(clients: int | None) -> dict[str, Shape]:
    """The large room, and the room of 500 (half the large one when that is under 1,000)."""
    big = clients or DEFAULT_CLIENTS
    small = min(SMALL, max(2, big // 2))
    return {"big-room": Shape(big, big), SMALL_SHAPE: Shape(small, small)}


def config(run: Any, nodes: list[Any], base: dict[str, Any]) -> dict[str, Any]:
    small = run.all_clients[SMALL_SHAPE]
    groups = [{"label": str(len(small)), "clients": specs(run, small, sender_pos=0)},
              {"label": str(len(run.clients)), "clients": specs(run, run.clients, sender_pos=0)}]
    return {**base, "clients": [], "groups": groups, "big_rate": run.args.big_rate,
            "drain_s": 3, "clients_per_address": PER_ADDRESS}


def on_event(run: Any, event: dict[str, Any], nodes: list[Any], generator: Any) -> None:
    from bench.nodes import total_cpu

    kind = event["event"]
    if kind in ("phase_start", "phase_end"):
        end = "start" if kind == "phase_start" else "end"
        run.marks[f"cpu:{event['label']}:{end}"] = total_cpu([n.pid for n in nodes])


def _phase(marks: dict[str, Any], label: str, data: dict[str, Any]) -> dict[str, Any]:
    cpu = window_cpu(marks, label)
    delivered = data["window_deliveries"]
    latency = data["latency"]
    return {
        "messages_per_s": round(data["window_sent"] / data["window_s"], 1),
        "deliveries_per_s": round(delivered / data["window_s"], 1),
        "server_cpu_pct": round(cpu / data["window_s"] * 100, 1) if cpu is not None else None,
        "us_per_delivery": round(cpu * 1e6 / delivered, 2) if cpu and delivered else None,
        "p50_ms": latency["p50_ms"], "p99_ms": latency["p99_ms"], "max_ms": latency["max_ms"],
        "member_median_ms": data["member_median_ms"],
        "member_deliveries": data["member_deliveries"],
        "members": data["members"],
        "members_missing_any": data["members_missing_any"],
        "lost": data["lost"],
        "unacked": data["unconfirmed"],
        "generator_cpu_pct": round(data["generator_cpu_pct"], 1),
    }


def figures(run: Any, result: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    sizes: dict[str, Any] = {}
    for label, size in result["sizes"].items():
        sizes[label] = {
            "clients": size["clients"],
            "connections_per_s": round(size["connections_per_second"], 1),
            "duplicates": size["duplicates"],
            "send_errors": size["send_errors"],
            "error_samples": size["error_samples"],
            **{mode: _phase(run.marks, f"{label}-{mode}", size["phases"][f"{label}-{mode}"])
               for mode in ("max", "rate")},
        }
    small, big = (sizes[label] for label in result["sizes"])
    ratio = {mode: round(big[mode]["us_per_delivery"] / small[mode]["us_per_delivery"], 2)
             if big[mode]["us_per_delivery"] and small[mode]["us_per_delivery"] else None
             for mode in ("max", "rate")}
    everything = [s[mode] for s in sizes.values() for mode in ("max", "rate")]
    return {
        **base,
        "sizes": sizes,
        "us_per_delivery_ratio": ratio,
        # The table's row: the big room at the maximum rate; p99 at the fixed rate.
        "deliveries_per_s": big["max"]["deliveries_per_s"],
        "us_per_delivery": big["max"]["us_per_delivery"],
        "server_cpu_pct": big["max"]["server_cpu_pct"],
        "p50_ms": big["rate"]["p50_ms"],
        "p99_ms": big["rate"]["p99_ms"],
        "max_ms": big["rate"]["max_ms"],
        "lost": sum(p["lost"] for p in everything),
        "unacked": sum(p["unacked"] for p in everything),
        "members_missing_any": sum(p["members_missing_any"] for p in everything),
        "duplicates": sum(s["duplicates"] for s in sizes.values()),
        "generator_cpu_pct": big["max"]["generator_cpu_pct"],
        "generator_peak_rss_mb": round(result["generator_peak_rss_kb"] / 1024, 1),
    }


def summary(figures: dict[str, Any]) -> str:
    parts = []
    for label, size in figures["sizes"].items():
        top, fixed = size["max"], size["rate"]
        spread = fixed["member_median_ms"] or {}
        parts.append(
            f"{label} members: {top['deliveries_per_s']:.0f} deliveries/s at "
            f"{top['us_per_delivery']} µs, {fixed['messages_per_s']} msg/s at "
            f"{fixed['us_per_delivery']} µs p99 {fixed['p99_ms']} ms, member medians "
            f"{spread.get('min')}/{spread.get('p50')}/{spread.get('p99')}/{spread.get('max')} ms")
    ratio = figures["us_per_delivery_ratio"]
    return ("; ".join(parts) + f"; µs/delivery ratio {ratio['max']} (max) {ratio['rate']} "
            f"(10 msg/s); lost {figures['lost']}, members missing any "
            f"{figures['members_missing_any']}")
