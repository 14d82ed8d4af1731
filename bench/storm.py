"""The ``storm`` scenario's figures and its node restart (generator: bench/js/storm.js).

20,000 clients in 4 conversations of 5,000, connected and resuming from what they last saw
(CONTRACT §9); one sender per conversation at 5 msg/s (``--storm-rate``) with a
``client_msg_id``. After ``--warmup`` seconds the node is stopped with SIGTERM and a new node
process is started on the same port (as behind a proxy); once it answers, the generator is told
(a line on its stdin) and every client reconnects, spread evenly over 1 s, while the senders
resend what was not acknowledged.

Figures: seconds from the new node answering until every client is joined, and until every
client holds every acknowledged message (target 15 s); frames the clients received in the
storm (presence, live messages, replayed messages, other); the new node's peak memory (VmHWM)
and CPU over the storm, and the generator's own (user and kernel apart: near a full core, the
generator sets the pace); lost deliveries (must be 0) and duplicates.
"""

from __future__ import annotations

import time
from typing import Any

from bench.fixtures import Shape
from bench.scale import PER_ADDRESS, server_side, specs, uvicorn_flags

DEFAULT_CLIENTS = 20_000
PER_CONVERSATION = 5_000
SPREAD_S = 1.0


def shapes(clients: int | None) -> dict[str, Shape]:
    count = clients or DEFAULT_CLIENTS
    return {"storm": Shape(count, min(PER_CONVERSATION, -(-count // 4)))}


def log_epoch(run: Any, node: Any) -> str | None:
    """The event log's epoch, as a client reads it (REST, CONTRACT §9)."""
    import httpx

    client = run.clients[0]
    response = httpx.get(f"{node.base_url}/api/v1/chat/sessions/{client.conversation_id}/events",
                         params={"since": 0, "limit": 1},
                         headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
    response.raise_for_status()
    epoch = response.json().get("epoch")
    return str(epoch) if epoch else None


def config(run: Any, nodes: list[Any], base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "clients": specs(run, run.clients, sender_pos=0),
            "epoch": log_epoch(run, nodes[0]), "storm_rate": run.args.storm_rate,
            "spread_s": SPREAD_S, "storm_max_s": 300, "clients_per_address": PER_ADDRESS,
            "drain_s": 3}


def on_event(run: Any, event: dict[str, Any], nodes: list[Any], generator: Any) -> None:
    from bench import nodes as nodes_mod

    kind = event["event"]
    marks = run.marks
    if kind == "restart":
        old = nodes[0]
        marks["storm_rss_before_kb"] = nodes_mod.rss_kb(old.pid)
        started = time.monotonic()
        old.stop()  # SIGTERM: the node says goodbye to every client, then exits
        marks["stop_s"] = time.monotonic() - started
        run.say(f"node stopped in {marks['stop_s']:.1f} s (SIGTERM); starting a new one on "
                f"port {old.port}")
        new = nodes_mod.start_node(run.dir / "node0", run.env, run.args.server_cpus,
                                   server_root=run.server_root, port=old.port,
                                   extra_flags=uvicorn_flags())
        nodes[0] = new
        marks["restart_s"] = time.monotonic() - started
        marks["storm_cpu0"] = nodes_mod.cpu_seconds(new.pid)
        marks["storm_t0"] = time.monotonic()
        run.say(f"new node up (pid {new.pid}) {marks['restart_s']:.1f} s after the SIGTERM")
        generator.stdin.write("up\n")
        generator.stdin.flush()
    elif kind == "storm_end":
        pid = nodes[0].pid
        marks["storm_t1"] = time.monotonic()
        marks["storm_cpu1"] = nodes_mod.cpu_seconds(pid)
        marks["storm_peak_rss_kb"] = nodes_mod.peak_rss_kb(pid)
        marks["storm_rss_end_kb"] = nodes_mod.rss_kb(pid)


def figures(run: Any, result: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    marks = run.marks
    storm_s = marks.get("storm_t1", 0.0) - marks.get("storm_t0", 0.0)
    cpu = marks.get("storm_cpu1", 0.0) - marks.get("storm_cpu0", 0.0)
    return {
        **base,
        "rooms": result["rooms"],
        "complete": result["complete"],
        "all_joined_s": _round(result["all_joined_s"]),
        "all_caught_up_s": _round(result["all_caught_up_s"]),
        "joined": result["joined"],
        "caught_up": result["caught_up"],
        "node_stop_s": round(marks.get("stop_s", 0.0), 2),
        "node_down_s": round(result["node_down_s"], 2),
        "storm_frames": result["storm_frames"],
        "storm_frames_per_client": {k: round(v / result["clients"], 2)
                                    for k, v in result["storm_frames"].items()},
        "backlog_messages": result["backlog_messages"],
        "closed_after_join": result["closed_after_join"],
        "failed_connects": result["failed_connects"],
        "owed_at_join": result["owed_at_join"],
        **({"stuck": result["stuck"]} if result["stuck"] else {}),
        "server_rss_before_mb": round(marks.get("storm_rss_before_kb", 0) / 1024, 1),
        "server_peak_rss_mb": round(marks.get("storm_peak_rss_kb", 0) / 1024, 1),
        "server_rss_end_mb": round(marks.get("storm_rss_end_kb", 0) / 1024, 1),
        "storm_server_cpu_s": round(cpu, 2),
        "storm_server_cpu_pct": round(cpu / storm_s * 100, 1) if storm_s > 0 else None,
        "messages_sent": result["sent"],
        "lost": result["lost"],
        "unacked": result["unconfirmed"],
        "members_missing_any": result["members_missing_any"],
        "duplicates": result["duplicates"],
        "duplicates_to_senders": result["duplicates_to_senders"],
        # Messages sent again after having been written once (in flight at the restart): the
        # server knows their client_msg_id and echoes them to their sender again.
        "resent_in_flight": result["resent_in_flight"],
        "send_errors": result["send_errors"],
        "error_samples": result["error_samples"],
        "generator_peak_rss_mb": round(result["generator_peak_rss_kb"] / 1024, 1),
        "generator_storm_cpu": {k: round(v, 2) for k, v in result["generator_storm_cpu"].items()},
        "server": server_side(run),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summary(figures: dict[str, Any]) -> str:
    frames = figures["storm_frames"]
    return (f"joined in {figures['all_joined_s']} s, caught up in {figures['all_caught_up_s']} "
            f"s after the new node answered (down {figures['node_down_s']} s); frames: "
            f"{frames['presence']} presence, {frames['messages']} live, {frames['replays']} "
            f"replayed, {frames['other']} other; node peak {figures['server_peak_rss_mb']} MB; "
            f"lost {figures['lost']}, duplicates {figures['duplicates']} "
            f"({figures['duplicates_to_senders']} to senders), unacked "
            f"{figures['unacked']}; node CPU {figures['storm_server_cpu_pct']} %, generator "
            f"CPU {figures['generator_storm_cpu']['pct']} % over the storm")
