"""What the scale scenarios (``idle-100k``, ``big-room``, ``storm``) share in bench/run.py: the
hooks each scenario's module gives the run, the listen backlog they ask of uvicorn, and the
Node flags of their generator.

Each scenario's module (``bench/idle100k.py``, ``bench/bigroom.py``, ``bench/storm.py``)
defines ``SHAPES`` (its fixtures), ``config`` (the generator's config), ``on_event`` (the
generator's events bench/run.py does not know), ``figures`` and ``summary``; its generator
is ``bench/js/<name>.js``, which loadgen.js hands the run to.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

#: The scale scenarios, run only when named, and their modules.
MODULES = {"idle-100k": "bench.idle100k", "big-room": "bench.bigroom", "storm": "bench.storm"}

#: uvicorn's ``--backlog`` for the scale scenarios (its default is 2048): thousands of
#: connects at once (a reconnect storm) overflow a short accept queue, and every dropped SYN
#: costs its client a 1 s, then 3 s retransmit. The kernel caps it at ``net.core.somaxconn``.
BACKLOG = 16384

#: Clients per loopback source address (127.0.0.2 and up): each address gives about 28,000
#: ephemeral ports (``net.ipv4.ip_local_port_range`` 32768-60999); 10,000 leaves room for the
#: sockets a restart leaves in TIME_WAIT.
PER_ADDRESS = 10_000

#: The generator's Node flags: 100,000 clients need more than Node's default heap.
NODE_FLAGS = ["--max-old-space-size=8192"]


def module_for(scenario: str) -> ModuleType | None:
    """The module of a scale scenario, None for the others."""
    name = MODULES.get(scenario)
    return importlib.import_module(name) if name else None


def uvicorn_flags() -> list[str]:
    return ["--backlog", str(BACKLOG)]


def somaxconn() -> int | None:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None


def backlog_note() -> str | None:
    """A line for the reader when the kernel caps the backlog the run asks for."""
    cap = somaxconn()
    if cap is not None and cap < BACKLOG:
        return (f"net.core.somaxconn is {cap}: the node's --backlog {BACKLOG} is capped to it "
                f"(as root: sysctl -w net.core.somaxconn={BACKLOG})")
    return None


def server_side(run: Any) -> dict[str, Any]:
    """What the node was given for a scale scenario, recorded in its figures."""
    from bench.nodes import kernel_limits

    cap = somaxconn()
    return {"uvicorn_extra_flags": uvicorn_flags(),
            "effective_backlog": min(BACKLOG, cap) if cap else BACKLOG,
            "kernel": kernel_limits(),
            "generator_node_flags": NODE_FLAGS}


def specs(run: Any, clients: list[Any], sender_pos: int | None = None) -> list[dict[str, Any]]:
    """The generator's client specs (one node); ``sender_pos``: who sends in each room."""
    return [c.spec(node=0, sender=sender_pos is not None and c.pos == sender_pos)
            for c in clients]


def window_cpu(marks: dict[str, Any], label: str) -> float | None:
    """Node CPU seconds over a labelled window (``phase_start`` / ``phase_end``)."""
    start, end = marks.get(f"cpu:{label}:start"), marks.get(f"cpu:{label}:end")
    return None if start is None or end is None else float(end - start)


def check_open_files(clients: int) -> None:
    """Fail early, with the way out, when the node cannot hold ``clients`` sockets: each side
    needs one file per connection, and children inherit the limit ``raise_fd_limit`` set."""
    import resource

    from bench.nodes import raise_fd_limit

    raise_fd_limit()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and clients + FILES_SPARE > soft:
        raise RuntimeError(
            f"{clients} connections need about {clients + FILES_SPARE} open files in the node "
            f"and in the generator, but the limit here is {soft} and this process may not "
            "raise its hard limit (no CAP_SYS_RESOURCE): raise it by hand (README, Benchmark: "
            "ulimit -n, or LimitNOFILE= under systemd), or run with fewer --clients")


#: Files the node and the generator need beside their connections (database, logs, pipes).
FILES_SPARE = 200
