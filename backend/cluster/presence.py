"""Presence for the whole cluster, kept in Redis (scripts in ``scripts.py``).

Each node keeps its own figures in a ``LocalPresence`` too: that is what it answers from while
Redis is away, and what it rewrites its Redis entries from when Redis comes back (or restarts
empty, or took the node for dead). For that rewrite to be exact, this node's writes reach Redis
in the order they were made in memory: every call goes through one ordered queue, drained in
pipelined batches by one task.

A heartbeat every third of the node TTL renews the node's key, rewrites its entries when needed,
and reaps nodes whose key expired: their connections stop counting at once (every figure counts
live nodes only) and the reaper reports who left, so the others hear ``user_left`` and
``user_status: offline``. Bound: a dead node stops counting within the TTL and its users are
announced offline within TTL + one heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from backend.cluster import scripts
from backend.cluster.link import RedisLink
from backend.realtime.presence import Departures, LocalPresence, ws_stats

log = logging.getLogger("confab.cluster")

BATCH = 512

# Scripts that run in the ordered queue (by EVALSHA, loaded at every resync).
QUEUED = {
    "connect": scripts.CONNECT,
    "disconnect": scripts.DISCONNECT,
    "enter": scripts.ENTER,
    "exit": scripts.EXIT,
    "room_size": scripts.ROOM_SIZE,
    "is_online": scripts.IS_ONLINE,
    "set_typing": scripts.SET_TYPING,
    "announce": scripts.ANNOUNCE,
    "take_announced": scripts.TAKE_ANNOUNCED,
    "resync": scripts.RESYNC,
}
SHAS = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in QUEUED.items()}


def departures_from_json(raw: bytes | str | None) -> Departures:
    """The departures a presence script returned (JSON), or none."""
    if not raw:
        return Departures()
    data = orjson.loads(raw)
    return Departures(
        [(room, actor, int(total)) for room, actor, total in data.get("departures") or ()],
        [(actor, sorted(int(c) for c in (cids or ()))) for actor, cids in
         data.get("offline") or ()],
    )


DepartureHandler = Callable[[Departures], Awaitable[None]]


@dataclass
class _Call:
    name: str
    args: list[Any]
    future: asyncio.Future[Any]


class ClusterPresence:
    """The ``Presence`` of a node in a cluster."""

    def __init__(self, link: RedisLink, node_id: str, ttl_seconds: float,
                 on_beat: Callable[[], None] = lambda: None) -> None:
        self.link = link
        self.node_id = node_id
        self.ttl_ms = int(ttl_seconds * 1000)
        self.interval = ttl_seconds / 3
        self.local = LocalPresence()
        self.on_beat = on_beat
        self.on_departures: DepartureHandler | None = None
        #: Called with a node's id when this node found it dead and reaped it.
        self.on_node_lost: Callable[[str], Awaitable[None]] | None = None
        #: True while Redis holds exactly this node's figures; False: answer locally.
        self.synced = False
        self.stopped = False
        self._queue: list[_Call] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """First heartbeat (so the node counts before it takes sockets), then the loops."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._drain()), loop.create_task(self._beat_forever())]
        await self.beat()

    async def stop(self) -> None:
        """Leave the cluster: the others hear this node's users leave, at once."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.stopped = True
        try:
            raw = await self.link.client.eval(scripts.LEAVE, 0, *self._argv())
        except Exception as error:
            self.link.failed("leave", error)
            return
        await self._report(departures_from_json(raw))

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def beat(self) -> None:
        """Renew this node's heartbeat; rewrite its entries if Redis lost them; reap the dead."""
        try:
            alive = await self.link.client.eval(scripts.HEARTBEAT, 0, *self._argv(self.ttl_ms))
            if not alive or not self.synced:
                await self._resync()
            self.link.succeeded()
            await self._reap()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._lost("heartbeat", error)
        self.on_beat()

    async def _resync(self) -> None:
        self.synced = False
        for text in QUEUED.values():
            await self.link.client.script_load(text)
        # Snapshot and queue at once: later calls queue behind the rewrite, in order.
        pending = self._enqueue("resync", [orjson.dumps(self.snapshot()).decode()])
        self.synced = True
        await pending

    def snapshot(self) -> dict[str, Any]:
        local = self.local
        return {
            "actors": dict(local.connections),
            "rooms": {room: dict(counts) for room, counts in local.rooms.items()},
            "typing": {room: sorted(typists) for room, typists in local.typing.items()},
            "announced": local.announcements(),
        }

    async def _reap(self) -> None:
        client = self.link.client
        nodes = [n.decode() if isinstance(n, bytes) else n
                 for n in await client.smembers(self.link.key("nodes"))]
        for node in nodes:
            if node == self.node_id or await client.exists(self.link.key(f"node:{node}")):
                continue
            raw = await client.eval(scripts.REAP, 0, *self._argv(node))
            if raw:
                departures = departures_from_json(raw)
                log.warning("node %s stopped answering: %d room departures, %d users offline",
                            node, len(departures.left), len(departures.offline),
                            extra={"event": "node_reaped", "node": node})
                await self._report(departures)
                await self._announce_lost(node)

    async def _report(self, departures: Departures) -> None:
        if self.on_departures is not None and (departures.left or departures.offline):
            try:
                await self.on_departures(departures)
            except Exception:
                log.exception("announcing departures failed")

    async def _announce_lost(self, node: str) -> None:
        if self.on_node_lost is not None:
            try:
                await self.on_node_lost(node)
            except Exception:
                log.exception("announcing the loss of node %s failed", node)

    # -- the ordered queue ------------------------------------------------------------------

    def _argv(self, *args: Any) -> list[Any]:
        return [self.link.prefix, self.node_id, *args]

    def _enqueue(self, name: str, args: list[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(name, self._argv(*args), future))
        self._wake.set()
        return future

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                try:
                    async with self.link.client.pipeline(transaction=False) as pipe:
                        for call in batch:
                            pipe.evalsha(SHAS[call.name], 0, *call.args)
                        results = await pipe.execute(raise_on_error=False)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    results = [error] * len(batch)
                for call, result in zip(batch, results, strict=True):
                    if call.future.done():
                        continue
                    if isinstance(result, Exception):
                        call.future.set_exception(result)
                    else:
                        call.future.set_result(result)

    async def _shared(self, name: str, *args: Any) -> Any:
        """The cluster's answer, or None when Redis cannot give it now (answer locally)."""
        if not self.synced or self.stopped:
            return None
        try:
            return await self._enqueue(name, list(args))
        except Exception as error:
            self._lost(name, error)
            return None

    def _lost(self, what: str, error: BaseException) -> None:
        self.synced = False
        self.link.failed(what, error)

    # -- Presence ---------------------------------------------------------------------------

    async def connect(self, actor_key: str) -> bool:
        first = await self.local.connect(actor_key)
        if self.stopped:
            return False
        shared = await self._shared("connect", actor_key)
        return first if shared is None else bool(shared)

    async def disconnect(self, actor_key: str) -> bool:
        last = await self.local.disconnect(actor_key)
        if self.stopped:
            return False  # leaving the cluster already told everyone
        shared = await self._shared("disconnect", actor_key)
        return last if shared is None else bool(shared)

    async def enter(self, room: str, actor_key: str) -> tuple[bool, int]:
        first, total = await self.local.enter(room, actor_key)
        if self.stopped:
            return False, total
        shared = await self._shared("enter", room, actor_key)
        return (first, total) if shared is None else (bool(shared[0]), int(shared[1]))

    async def exit(self, room: str, actor_key: str) -> tuple[bool, int]:
        last, total = await self.local.exit(room, actor_key)
        if self.stopped:
            return False, total
        shared = await self._shared("exit", room, actor_key)
        return (last, total) if shared is None else (bool(shared[0]), int(shared[1]))

    async def room_size(self, room: str) -> int:
        shared = await self._shared("room_size", room)
        return await self.local.room_size(room) if shared is None else int(shared)

    async def is_online(self, actor_key: str) -> bool:
        shared = await self._shared("is_online", actor_key)
        return await self.local.is_online(actor_key) if shared is None else bool(shared)

    async def set_typing(self, room: str, actor_key: str, is_typing: bool) -> None:
        await self.local.set_typing(room, actor_key, is_typing)
        await self._shared("set_typing", room, actor_key, "1" if is_typing else "0")

    async def announce_online(self, actor_key: str, conversation_id: int) -> None:
        await self.local.announce_online(actor_key, conversation_id)
        await self._shared("announce", actor_key, conversation_id)

    async def take_announced(self, actor_key: str) -> list[int]:
        local = await self.local.take_announced(actor_key)
        shared = await self._shared("take_announced", actor_key)
        return local if shared is None else sorted(int(c) for c in shared)

    async def stats(self) -> dict[str, Any]:
        if self.synced and not self.stopped:
            try:
                raw = await self.link.client.eval(scripts.STATS, 0, *self._argv())
            except Exception as error:
                self._lost("stats", error)
            else:
                data = orjson.loads(raw)
                rooms = {room: (users, typists, conns)
                         for room, users, typists, conns in data.get("rooms") or ()}
                return ws_stats(rooms, int(data["total"]))
        return await self.local.stats()
