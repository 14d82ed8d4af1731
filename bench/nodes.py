"""Server nodes for the benchmark: real uvicorn processes pinned to a CPU, and what the kernel
says about them (CPU time, resident memory).

A node is started exactly as ``confab serve`` starts one (uvloop, httptools, the sans-I/O
websockets implementation, no per-message deflate) plus ``--no-access-log``, with the send rate
limits raised through the environment so that the benchmark measures the server, not the limit.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Environment the benchmark sets on every node: limits raised so that one sender may send as
#: fast as the server answers (printed in the output, recorded in the JSON).
RAISED_LIMITS = {"SEND_RATE_PER_SECOND": "1000000", "SEND_BURST": "1000000"}

UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools",
                 "--ws", "backend.realtime.protocol:WebSocketProtocol",
                 "--ws-per-message-deflate", "false", "--no-access-log"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin_prefix(cpus: str | None) -> list[str]:
    """``taskset -c CPUS`` when pinning is asked for and possible, else nothing."""
    if not cpus or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", cpus]


#: Open files wanted by the node and the generator: idle-100k holds 100,000 sockets on each
#: side (plus the node's database files and the generator's own).
WANTED_FILES = 262_144


def raise_fd_limit() -> None:
    """Children inherit the limit on open files: raise the soft AND hard limits to
    ``WANTED_FILES`` (capped by the kernel's ``fs.nr_open``) where the process may (root, or
    CAP_SYS_RESOURCE), else the soft limit to the hard one (README: raising it by hand)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(WANTED_FILES, nr_open())
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return
        except (ValueError, PermissionError, OSError):
            pass  # not allowed to raise the hard limit: up to it, then
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nr_open() -> int:
    """The kernel's ceiling on one process's open files (``fs.nr_open``)."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1_048_576


def kernel_limits() -> dict[str, str]:
    """Kernel settings that bound many connections on one machine, as read now (recorded in
    the JSON of the scale scenarios; the README says how to raise them)."""
    names = ["net/core/somaxconn", "net/ipv4/tcp_max_syn_backlog", "net/ipv4/ip_local_port_range",
             "net/ipv4/tcp_mem", "fs/nr_open", "fs/file-max"]
    found = {}
    for name in names:
        try:
            found[name.replace("/", ".")] = " ".join(Path(f"/proc/sys/{name}").read_text().split())
        except OSError:
            continue
    return found


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (every thread), in seconds."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU time of a whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        stat = handle.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # After the command: state is field 3, utime field 14 and stime field 15 (1-based).
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for row in handle:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- a node under callgrind (the counters: message_cost, ping_cost) ---------------------------


def callgrind_dump(folder: Path, number: int, timeout: float = 120) -> dict[int, int]:
    """The instructions of callgrind's dump ``number`` (``cg.out.<number>-<thread>`` in
    ``folder``, ``--separate-threads=yes``) by thread number, once every thread's file of it
    is written whole."""
    pattern = re.compile(rf"cg\.out\.{number}-(\d+)$")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts: dict[int, int] = {}
        for path in folder.iterdir():
            found = pattern.search(path.name)
            if found is None:
                continue
            total = re.search(r"^(?:summary|totals):\s+(\d+)",
                              path.read_text(errors="replace"), re.M)
            if total is None:  # still being written
                break
            counts[int(found.group(1))] = int(total.group(1))
        else:
            if counts:
                return counts
        time.sleep(0.5)
    raise RuntimeError(f"dump {number} not found in {folder}")


def wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path,
               timeout: float) -> None:
    """Wait (bounded) until the node at ``port`` answers ``/readyz`` with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("node exited:\n" + log_path.read_text()[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("node not ready:\n" + log_path.read_text()[-3000:])


def stop_counted(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and time for callgrind to write its last dump (then SIGKILL)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def peak_rss_kb(pid: int) -> int:
    """Peak resident memory of a process over its life (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for row in handle:
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def runqueue_wait_seconds(pids: list[int]) -> float:
    """Time the processes' threads spent runnable but waiting for a CPU (schedstat's second
    field, summed over threads): how much other work on the same CPU held them back."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                    total += int(handle.read().split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return total / 1e9


def cpu_pressure_seconds() -> float | None:
    """The machine's CPU pressure (PSI ``some`` total): time at least one task waited for a
    CPU. None where the kernel does not expose it."""
    try:
        with open("/proc/pressure/cpu") as handle:
            first = handle.readline().split()
    except OSError:
        return None
    for item in first:
        if item.startswith("total="):
            return int(item.removeprefix("total=")) / 1e6
    return None


def total_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (those gone left out)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # a database backend that went away
    return total


def kernel_cpu(pids: list[int]) -> float:
    """System (kernel) CPU seconds of these processes: the system calls, and what the kernel
    did in them (on loopback, a write carries the receiving socket's work too)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_split(pid)[1]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


# -- nodes ------------------------------------------------------------------------------------


@dataclass
class Node:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_node(data_dir: Path, env: dict[str, str], cpus: str | None,
               reference: bool = False, server_root: Path | None = None,
               node_reference: bool = False, port: int | None = None,
               extra_flags: list[str] | None = None) -> Node:
    """Start one node (or, with ``reference``, the bare server of ``bench/reference.py``; with
    ``node_reference``, Node's socket.io with PostgreSQL of ``bench/js/reference-sio.js``, on
    the PostgreSQL database of ``env["DATABASE_URL"]``) and wait (bounded) until ``/readyz``
    answers 200. ``server_root``: another checkout of the project, whose own .venv runs the
    node (to compare with an earlier version). ``port``: a fixed one (a node restarted in
    place, as behind a proxy), else a free one; ``extra_flags``: more uvicorn flags (e.g.
    ``--backlog``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / f"server-{port}.log"
    restarts = 1
    while log_path.exists():  # the same port again: a restarted node keeps its own log
        restarts += 1
        log_path = data_dir / f"server-{port}-{restarts}.log"
    if node_reference:
        command = [*pin_prefix(cpus), "node", str(ROOT / "bench" / "js" / "reference-sio.js"),
                   str(port)]
        server_root = None
    elif reference:
        command = [*pin_prefix(cpus), sys.executable, str(ROOT / "bench" / "reference.py"),
                   str(port)]
    else:
        python = str(server_root / ".venv" / "bin" / "python") if server_root else sys.executable
        command = [*pin_prefix(cpus), python, "-m", "uvicorn", "backend.main:app",
                   "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS,
                   *(extra_flags or [])]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=server_root or ROOT,
                                   env={**env, "DATA_DIR": str(data_dir)},
                                   stdout=log_file, stderr=subprocess.STDOUT,
                                   preexec_fn=raise_fd_limit)
    node = Node(port, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{node.log()}")
        try:
            if httpx.get(f"{node.base_url}/readyz", timeout=2).status_code == 200:
                return node
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    node.stop()
    raise RuntimeError(f"server did not become ready in 60 s:\n{node.log()}")


def node_env(database_url: str, secret: str, redis_url: str | None = None,
             redis_prefix: str | None = None) -> dict[str, str]:
    """The environment of a benchmark node."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX")}
    env.update({
        "DATABASE_URL": database_url,
        "JWT_SECRET": secret,
        "ACCESS_TOKEN_SECONDS": str(24 * 3600),
        "PYTHONUNBUFFERED": "1",
        **RAISED_LIMITS,
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["REDIS_PREFIX"] = redis_prefix or "confab-bench"
    return env
