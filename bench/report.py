"""The final table: one row per measured run, as text for the terminal or as Markdown.
Columns no run has a figure for are left out."""

from __future__ import annotations

from typing import Any

COLUMNS: list[tuple[str, str]] = [
    ("scenario", "scenario"),
    ("transport", "transport"),
    ("version", "version"),
    ("db", "db"),
    ("nodes", "nodes"),
    ("clients", "clients"),
    ("deliveries_per_s", "deliv/s"),
    ("us_per_delivery", "µs/deliv"),
    ("node_cpu_pct", "CPU % by node"),
    ("us_per_stored_message", "µs/stored msg"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("lost", "lost"),
    ("unacked", "unacked"),
    ("server_cpu_pct", "srv CPU %"),
    ("server_kernel_share_pct", "kernel %"),
    ("generator_cpu_pct", "gen CPU %"),
    ("kb_per_connection", "KB/conn"),
    ("connections_per_s", "conn/s"),
    ("server_connect_cpu_us_per_connection", "µs/conn"),
    ("connect_p50_ms", "conn p50 ms"),
    ("connect_p99_ms", "conn p99 ms"),
    ("server_rss_growth_kb", "RSS +KB"),
    ("all_joined_s", "joined s"),
    ("presence_frames", "presence frames"),
    ("all_caught_up_s", "caught up s"),
    ("server_peak_rss_mb", "srv peak MB"),
]

TRANSPORT_NAMES = {"sio": "Socket.IO /chat", "raw": "/ws/chat/",
                   "ref": "reference: bare websockets",
                   "node": "reference: Node socket.io + PostgreSQL"}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):  # one figure per node
        return "/".join(_cell(item) for item in value)
    return str(value)


def columns(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The columns at least one run has a figure for (all of them when there is no run)."""
    if not runs:
        return COLUMNS
    return [(key, title) for key, title in COLUMNS
            if any(run.get(key) is not None for run in runs)]


def row(run: dict[str, Any], shown: list[tuple[str, str]] | None = None) -> list[str]:
    values = []
    for key, _title in shown or COLUMNS:
        value = run.get(key)
        if key == "transport":
            value = TRANSPORT_NAMES.get(str(value), value)
        values.append(_cell(value))
    return values


def text_table(runs: list[dict[str, Any]]) -> str:
    shown = columns(runs)
    header = [title for _key, title in shown]
    rows = [row(run, shown) for run in runs]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i >= 4 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def markdown_table(runs: list[dict[str, Any]]) -> str:
    shown = columns(runs)
    header = [title for _key, title in shown]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for run in runs:
        lines.append("| " + " | ".join(row(run, shown)) + " |")
    return "\n".join(lines)
