"""The final table: one row per measured run, as text for the terminal or as Markdown."""

from __future__ import annotations

from typing import Any

COLUMNS: list[tuple[str, str]] = [
    ("scenario", "scenario"),
    ("transport", "transport"),
    ("db", "db"),
    ("nodes", "nodes"),
    ("clients", "clients"),
    ("deliveries_per_s", "deliv/s"),
    ("us_per_delivery", "µs/deliv"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("lost", "lost"),
    ("unacked", "unacked"),
    ("server_cpu_pct", "srv CPU %"),
    ("generator_cpu_pct", "gen CPU %"),
    ("kb_per_connection", "KB/conn"),
    ("connections_per_s", "conn/s"),
    ("all_joined_s", "joined s"),
    ("presence_frames", "presence frames"),
    ("all_caught_up_s", "caught up s"),
    ("server_peak_rss_mb", "srv peak MB"),
]

TRANSPORT_NAMES = {"sio": "Socket.IO /chat", "raw": "/ws/chat/",
                   "ref": "reference: bare websockets"}


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
    return str(value)


def row(run: dict[str, Any]) -> list[str]:
    values = []
    for key, _title in COLUMNS:
        value = run.get(key)
        if key == "transport":
            value = TRANSPORT_NAMES.get(str(value), value)
        values.append(_cell(value))
    return values


def text_table(runs: list[dict[str, Any]]) -> str:
    header = [title for _key, title in COLUMNS]
    rows = [row(run) for run in runs]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i >= 4 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def markdown_table(runs: list[dict[str, Any]]) -> str:
    header = [title for _key, title in COLUMNS]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for run in runs:
        lines.append("| " + " | ".join(row(run)) + " |")
    return "\n".join(lines)
