"""A TCP proxy a test can stall and cut, to put a database fault between a server and its
database without touching either.

- ``stall()``: bytes stop flowing both ways (held, not lost): the database seems to hang.
  Connections and connects are still accepted, as a hung server's kernel would. A side that
  closes while stalled drops what it sent and was never delivered.
- ``cut()``: every connection is reset and new ones are refused: the database is gone.
- ``restore()``: listening and flowing again; what was held is delivered.

The proxy runs its own event loop in a thread, so a blocking caller (``start_server`` waits
for the server with a blocking loop) does not freeze it; its methods may be called from any
thread and return once the change is in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(eq=False)
class _Direction:
    """One direction of one proxied connection: where its bytes go, and what is held."""

    writer: asyncio.StreamWriter
    held: bytearray = field(default_factory=bytearray)

    def forward(self, data: bytes, flowing: bool) -> None:
        self.held += data
        if flowing:
            self.flush()

    def flush(self) -> None:
        if self.held and not self.writer.is_closing():
            self.writer.write(bytes(self.held))
        self.held.clear()


class TcpProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``host:port`` or a unix socket path."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 unix_path: str | None = None) -> None:
        self.target = (host, port)
        self.unix_path = unix_path
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy",
                                        daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._flowing = True
        self._directions: set[_Direction] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control (any thread) ---------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stall(self) -> None:
        self._call(self._set_flowing(False))

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, job: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(job, self._loop).result(timeout=10)

    # -- the loop's side ----------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_flowing(self, flowing: bool) -> None:
        self._flowing = flowing
        if flowing:
            for direction in list(self._directions):
                direction.flush()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as when the database host dies
        self._writers.clear()

    async def _shutdown(self) -> None:
        await self._cut()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _restore(self) -> None:
        if self._server is None:
            await self._listen()
        await self._set_flowing(True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.unix_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, _Direction(up_writer)),
                                 self._pipe(up_reader, _Direction(writer)))
        finally:
            self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, direction: _Direction) -> None:
        self._directions.add(direction)
        try:
            while data := await reader.read(65536):
                direction.forward(data, self._flowing)
        except OSError:
            pass
        finally:
            # This side left: what it sent and was never delivered is dropped, and the other
            # side is closed too (its own pipe then ends on EOF).
            self._directions.discard(direction)
            direction.held.clear()
            with contextlib.suppress(Exception):
                direction.writer.close()


def proxy_for_database(url: str) -> tuple[TcpProxy, str]:
    """A started proxy in front of the PostgreSQL of ``url``, and the URL that goes through it
    (a unix-socket URL, ``?host=/dir``, becomes a TCP one to the proxy)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    socket_dir = query.pop("host", None)
    port = parts.port or 5432
    if socket_dir is not None:
        proxy = TcpProxy(unix_path=f"{socket_dir}/.s.PGSQL.{port}")
    else:
        proxy = TcpProxy(parts.hostname or "127.0.0.1", port)
    proxy.start()
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return proxy, urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
