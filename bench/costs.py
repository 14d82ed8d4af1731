"""Figures the run derives from its marks beyond deliveries: what connecting costs, what each
node of a cluster spent, and the server's CPU per message it persisted.

``marks`` are the readings bench/run.py takes when the generator reports a step (CPU seconds,
resident memory, stored rows); ``result`` is the generator's own report.
"""

from __future__ import annotations

from typing import Any


def connect_figures(result: dict[str, Any], marks: dict[str, Any]) -> dict[str, Any]:
    """Connect latency (from opening a connection to the frame that shows the client is in:
    ``recent_messages`` on a raw route, its own ``user_joined`` on Socket.IO) and the
    server's resident memory grown over the ramp."""
    clients = result["clients"]
    latency = result.get("connect_latency") or {}
    figures: dict[str, Any] = {f"connect_{key}": latency.get(key)
                               for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}
    if "rss_connected" in marks and "rss_before" in marks:
        grown = sum(after - before for after, before in
                    zip(marks["rss_connected"], marks["rss_before"], strict=True))
        figures["server_rss_growth_kb"] = grown
        figures["kb_per_connection_at_connect"] = round(grown / clients, 2) if clients else None
    return figures


def per_node_figures(marks: dict[str, Any], delivered: int, window: float) -> dict[str, Any]:
    """Each node's CPU over the measured window, and its share of the CPU per delivery (the
    shares add up to ``us_per_delivery``, the nodes' CPU summed over all deliveries)."""
    before, after = marks.get("cpu0_each"), marks.get("cpu1_each")
    if not before or not after or len(before) < 2:
        return {}
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return {
        "node_cpu_s": [round(s, 3) for s in spent],
        "node_cpu_pct": [round(s / window * 100, 1) for s in spent],
        "node_us_per_delivery": [round(s * 1e6 / delivered, 2) if delivered else None
                                 for s in spent],
    }


def kernel_share(marks: dict[str, Any], start: str, end: str, cpu: float) -> float | None:
    """The kernel's share of the node's CPU between two marks, in % (from /proc's stime and
    utime, counted in clock ticks: a window of a few seconds at a few % of a core gives a
    rough share only)."""
    if start not in marks or end not in marks or cpu <= 0:
        return None
    return round(float(marks[end] - marks[start]) / cpu * 100, 1)


def stored_figures(marks: dict[str, Any], cpu: float, sent: int) -> dict[str, Any]:
    """Messages persisted in the window (rows counted in the database) and the server's CPU
    per persisted message, None where nothing is stored (the bare reference); and its CPU per
    message sent in the window, which every server has."""
    stored = marks.get("stored_in_window")
    return {
        "messages_stored_in_window": stored,
        "us_per_stored_message": round(cpu * 1e6 / stored, 1) if stored else None,
        "us_per_message_sent": round(cpu * 1e6 / sent, 1) if sent else None,
    }
