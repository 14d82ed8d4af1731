"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): where the samples are.

``python bench/profile_summary.py bench/results/profile-fanout-sio-sqlite.txt [--top 25]``
prints Markdown tables: samples by stage of the message path, the send path's PostgreSQL
writes by the way they went (a kept connection's prepared statement or the pool), self time by
package (the leaf frame's library: socketio, engineio, tortoise, the project's own
modules...), self time by function, and inclusive time by function.
Shares are of all samples in the file (py-spy records active threads only unless ``--idle``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for row in path.read_text(errors="replace").splitlines():
        row = row.strip()
        if not row:
            continue
        stack, _, count = row.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def function_of(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``; line numbers dropped so that one
    function is one row."""
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match['func']} ({short_path(match['file'])})"


def short_path(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    parts = file.split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else file


def package_of(frame: str) -> str:
    match = FRAME.match(frame)
    file = match["file"] if match else frame
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    for own in ("backend/", "namespaces/", "models/"):
        if f"/{own}" in file or file.startswith(own):
            rest = file.split(own, 1)[1].split("/")
            return own + (rest[0] if len(rest) > 1 else "")
    if "/lib/python3" in file or file.startswith("<frozen"):
        name = file.split("/")[-1].removesuffix(".py")
        parent = file.split("/")[-2] if "/" in file else ""
        return f"stdlib:{parent + '/' if parent == 'asyncio' else ''}{name}"
    return file or "?"


#: Stages of the message path, matched in this order against the whole stack (first match wins).
#: py-spy's view of resumed coroutines can be partial, so the send chain and the writer
#: machinery are recognised by their own frames as well as by their callers.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("SQLite worker thread (SQL execution)", ("_connection_worker_thread",)),
    ("inbox update (_publish_conversation_updated)", ("_publish_conversation_updated",)),
    ("fan-out loop (FanoutManager.deliver, member.write, queue puts)",
     ("FanoutManager.deliver",)),
    ("per-frame send chain (Starlette/engine.io send, middleware wrappers, uvicorn, "
     "websockets framing, transport.write)",
     ("WebSocketsSansIOProtocol.send", "WebSocket.send (", "send_with_id",
      "wrapped_app.<locals>.sender", "Frame.serialize", "send_frame")),
    ("per-socket writer machinery (writer tasks, queues, events, wait_for)",
     ("_websocket_handler.<locals>.writer", "AsyncSocket.poll", "RawMember._drain",
      "Event.wait", "Queue.get", "wait_for (")),
    ("send_message minus inbox and fan-out: access checks, INSERT/UPDATEs, ORM",
     ("MessageOps.send_message",)),
    ("inbound frames (receive, parse, dispatch)",
     ("receive_loop", "_handle_eio_message", "data_received")),
    ("ORM and database client, caller not seen (Tortoise, pypika, aiosqlite, asyncpg)",
     ("(tortoise/", "(pypika_tortoise/", "(aiosqlite/", "(asyncpg/", "(iso8601/")),
]


#: Which way the PostgreSQL writes of the send path went (``backend/storage/sends.py``): on a
#: connection the path keeps, with its prepared statement (alone or a turn's batch), or through
#: the pool and asyncpg's statement cache. First match wins; other stacks are not counted.
WRITE_PATHS: list[tuple[str, tuple[str, ...]]] = [
    ("kept connection, prepared, one send", ("prepared_row (",)),
    ("kept connection, prepared, a turn's batch", ("PreparedStatement.fetchmany (",)),
    ("pool or unprepared, one send", ("_pipelined (",)),
    ("pool acquire and release, asyncpg's pool", ("(asyncpg/pool.py", "acquire_connection")),
]


def write_path_of(frames: list[str]) -> str | None:
    text = ";".join(frames)
    for name, needles in WRITE_PATHS:
        if any(needle in text for needle in needles):
            if name.startswith("pool or unprepared") and "Connection.fetchmany (" in text:
                return "pool or unprepared, a turn's batch"
            return name
    return None


def stage_of(frames: list[str]) -> str:
    text = ";".join(frames)
    for name, needles in STAGES:
        if any(needle in text for needle in needles):
            return name
    leaf = frames[-1] if frames else ""
    if leaf.startswith("Runner.run"):
        return "event loop itself (uvloop and its callbacks; native code shows here)"
    return "other"


def summarize(path: Path, top: int = 25) -> str:
    stacks = parse(path)
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    for frames, count in stacks:
        # py-spy puts the thread name first (e.g. "process 123:\"python\"", "thread (0x...)").
        body = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not body:
            continue
        leaf = body[-1]
        stages[stage_of(body)] += count
        way = write_path_of(body)
        if way is not None:
            writes[way] += count
        own[function_of(leaf)] += count
        packages[package_of(leaf)] += count
        for name in {function_of(f) for f in body}:
            inclusive[name] += count

    def table(title: str, counter: Counter[str], n: int) -> str:
        lines = [f"#### {title}", "", "| share | samples | where |", "|---:|---:|---|"]
        for name, count in counter.most_common(n):
            lines.append(f"| {100 * count / total:.1f} % | {count} | `{name}` |")
        return "\n".join(lines)

    return "\n\n".join([
        f"{path.name}: {total} samples",
        table("By stage of the message path", stages, len(STAGES) + 2),
        table("PostgreSQL writes of the send path, by the way they went", writes,
              len(WRITE_PATHS) + 1),
        table("Self time by package", packages, 15),
        table("Self time by function", own, top),
        table("Inclusive time by function", inclusive, top),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.profile, args.top))


if __name__ == "__main__":
    main()
