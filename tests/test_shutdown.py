"""SIGTERM: every client is told (raw WebSockets get 1001 after every frame already queued for
them, Socket.IO clients are disconnected), then the process exits; after a restart on the same
database, every acknowledged message is there. While it says goodbye, the node refuses new
connections: the raw routes with 1001, "going away"; a new Socket.IO session at its Engine.IO
handshake (which client libraries retry), a namespace of a session already open with 1001."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import socketio
import websockets

from tests.support.client import Api, TestUser
from tests.support.node import JS_DIR, node_modules
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import close_code, device_conversation, raw, rest_send
from tests.test_socketio_helpers import group

SENT_BEFORE_SIGTERM = 20


async def test_sigterm_says_goodbye_and_keeps_what_was_acknowledged(work_dir: Path) -> None:
    data_dir = work_dir / "shutdown"
    server = start_server(data_dir)
    api = Api(server.base_url)
    try:
        alice, bob = await api.register(), await api.register()
        cid = await group(api, alice, bob)
        sio = socketio.AsyncClient(reconnection=False)
        disconnected = asyncio.Event()
        sio.on("disconnect", lambda *args: disconnected.set(), namespace="/chat")
        await sio.connect(server.base_url, auth={"token": bob.token, "conversation_id": cid},
                          namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
        async with raw(f"{server.ws_url}/ws/chat/{cid}/?token={bob.token}") as listener:
            await listener.next("recent_messages")
            acknowledged = [await rest_send(api, alice, cid, f"m{n}")
                            for n in range(SENT_BEFORE_SIGTERM)]
            server.process.send_signal(signal.SIGTERM)

            code = await listener.closed(within=10)
            assert code == 1001
            delivered = [f["message"]["id"] for f in listener.seen("chat_message")]
            assert delivered == [m["id"] for m in acknowledged]  # all of them, then the close
        async with asyncio.timeout(10):
            await disconnected.wait()
        assert server.process.wait(timeout=15) is not None
    finally:
        await api.aclose()
        server.stop(signal.SIGKILL)

    restarted = start_server(data_dir)
    api = Api(restarted.base_url)
    try:
        stored = await api.history(alice, cid)
        assert [m["id"] for m in stored] == [m["id"] for m in acknowledged]
    finally:
        await api.aclose()
        restarted.stop()


class Watched:
    """python-socketio's client on ``/conversations``, reconnecting quickly by itself; its
    disconnect reasons and its connects, queued as they come."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection_delay=0.1, reconnection_delay_max=0.5)
        self.reasons: asyncio.Queue[Any] = asyncio.Queue()
        self.connects: asyncio.Queue[None] = asyncio.Queue()
        self.client.on("disconnect", self._gone, namespace="/conversations")
        self.client.on("connect", self._back, namespace="/conversations")

    async def _gone(self, reason: Any = None) -> None:
        self.reasons.put_nowait(reason)

    async def _back(self) -> None:
        self.connects.put_nowait(None)

    async def connect(self, base_url: str, token: str, transport: str) -> None:
        """Connected on ``transport`` alone, its first connect taken off the queue."""
        await self.client.connect(base_url, auth={"token": token},
                                  namespaces=["/conversations"], transports=[transport],
                                  wait_timeout=5)
        await self.connects.get()


async def ended(client: asyncio.subprocess.Process | None) -> None:
    """A client process the test may have left running, killed (and waited for)."""
    if client is not None and client.returncode is None:
        client.kill()
        await client.wait()


async def test_socketio_clients_on_websocket_reconnect_by_themselves_after_a_node_stops(
    work_dir: Path,
) -> None:
    """A node stopping ends each Socket.IO session on WebSocket with the WebSocket close alone,
    as Node's socket.io server does: no Socket.IO DISCONNECT and no Engine.IO CLOSE, either of
    which tells a client the session was ended on purpose. socket.io-client reports
    ``transport close`` and starts reconnecting; python-socketio's client reports ``transport
    error`` and is back once a node answers at the same address."""
    data_dir = work_dir / "shutdown-reconnect"
    server = start_server(data_dir)
    api = Api(server.base_url)
    node = None
    restarted = None
    try:
        alice = await api.register()
        python_client = Watched()
        await python_client.connect(server.base_url, alice.token, "websocket")
        node_modules()
        node = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / "socketio_shutdown.js"), server.base_url, alice.token,
            cwd=JS_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert node.stdout is not None and node.stderr is not None
        async with asyncio.timeout(30):
            line = await node.stdout.readline()
        assert line.strip() == b"connected", (line, await node.stderr.read())

        server.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            line = await node.stdout.readline()
            assert await node.wait() == 0, await node.stderr.read()
        seen = json.loads(line)
        assert "close" not in seen["packets"], seen
        assert seen["engineClose"] == "transport close", seen
        assert seen["reason"] == "transport close", seen  # not "io server disconnect"
        assert seen["reconnecting"] is True, seen
        async with asyncio.timeout(10):
            assert await python_client.reasons.get() == "transport error"  # its name for it
        assert await asyncio.to_thread(server.process.wait, 15) == -signal.SIGTERM

        restarted = start_server(data_dir, port=server.port)
        async with asyncio.timeout(30):
            await python_client.connects.get()  # back by itself: /conversations connected
        await python_client.client.disconnect()
    finally:
        await ended(node)
        await api.aclose()
        server.stop(signal.SIGKILL)
        if restarted is not None:
            restarted.stop()


async def test_a_python_client_on_long_polling_reconnects_by_itself_after_a_node_stops(
    work_dir: Path,
) -> None:
    """On long-polling a stopping node answers the pending GET with a NOOP, not Engine.IO's
    CLOSE, and the next GET finds the session gone: python-socketio's client reports
    ``transport error`` (with CLOSE it said ``server disconnect`` and stayed away) and is back
    once a node answers at the same address; socket.io-client reports ``transport error`` too
    and starts reconnecting."""
    data_dir = work_dir / "shutdown-polling"
    server = start_server(data_dir)
    api = Api(server.base_url)
    python_client = Watched()
    restarted = node = None
    try:
        alice = await api.register()
        await python_client.connect(server.base_url, alice.token, "polling")
        assert python_client.client.transport() == "polling"
        node_modules()
        node = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / "socketio_shutdown.js"), server.base_url, alice.token,
            "polling", cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert node.stdout is not None and node.stderr is not None
        async with asyncio.timeout(30):
            line = await node.stdout.readline()
        assert line.strip() == b"connected", (line, await node.stderr.read())
        server.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await python_client.reasons.get() == "transport error"
        async with asyncio.timeout(30):
            line = await node.stdout.readline()
            assert await node.wait() == 0, await node.stderr.read()
        seen = json.loads(line)
        assert "close" not in seen["packets"], seen
        assert seen["reason"] == "transport error", seen  # not "io server disconnect"
        assert seen["reconnecting"] is True, seen
        assert await asyncio.to_thread(server.process.wait, 15) == -signal.SIGTERM
        restarted = start_server(data_dir, port=server.port)
        async with asyncio.timeout(30):
            await python_client.connects.get()  # back by itself, with its token
    finally:
        await ended(node)
        await python_client.client.disconnect()
        await api.aclose()
        server.stop(signal.SIGKILL)
        if restarted is not None:
            restarted.stop()


async def upgrade(server: ServerProcess, path: str, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    """The WebSocket handshake for ``path``, written by hand, and its 101 read."""
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head


async def silent_client(server: ServerProcess, path: str) -> tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]:
    """A raw WebSocket opened by hand that will never answer the server's close (the node
    does not wait for that answer: ``goodbye_holder`` holds a goodbye)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await upgrade(server, path, reader, writer)
    return reader, writer


#: A node whose goodbye a stalled client can hold: messages large enough, and a backlog allowed
#: to grow past what the sockets' buffers take.
HOLDABLE = {"SHUTDOWN_GOODBYE_SECONDS": "60", "MAX_CONTENT_CHARS": "200000",
            "MAX_BACKLOG_BYTES": str(64 * 1024 * 1024)}


async def goodbye_holder(server: ServerProcess, api: Api, owner: TestUser
                         ) -> asyncio.StreamWriter:
    """A raw client of a conversation of ``owner``'s that reads none of the 6 MB sent to it
    there (on a node started with ``HOLDABLE``): at SIGTERM the node's close of it waits for
    them to leave (up to 5 s), and the node says goodbye, refusing new connections, as long."""
    cid = int((await api.conversation(owner))["id"])
    stalled = await stalled_client(server, f"/ws/chat/{cid}/?token={owner.token}")
    for n in range(30):
        await rest_send(api, owner, cid, f"{n} " + "x" * 199_000)
    return stalled


async def stalled_client(server: ServerProcess, path: str) -> asyncio.StreamWriter:
    """A raw WebSocket opened by hand whose client reads nothing after its handshake (with a
    4 KB receive buffer): once the node's socket buffer is full (a few MB), what the node
    writes to it waits in the node, and a close waits for that to leave (up to 5 s)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    await upgrade(server, path, reader, writer)
    return writer


async def close_frame(reader: asyncio.StreamReader, within: float = 10) -> int:
    """Read (unmasked) server frames until a close frame; its code."""
    async with asyncio.timeout(within):
        while True:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length >= 126:
                length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8))
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return int.from_bytes(payload[:2])


async def test_a_node_shutting_down_refuses_new_connections_with_1001_on_every_door(
    work_dir: Path,
) -> None:
    # The goodbye held (``goodbye_holder``) for every refusal below: the node keeps refusing
    # as long as it lasts.
    server = start_server(work_dir / "shutdown-refusals", **HOLDABLE)
    api = Api(server.base_url)
    try:
        alice = await api.register()
        cid = int((await api.conversation(alice))["id"])
        device_id, device_cid = await device_conversation(api)
        reader, writer = await silent_client(server, f"/ws/conversations/?token={alice.token}")
        # An Engine.IO session with no namespace yet: no member, so the goodbye leaves it be.
        early = await websockets.connect(f"{server.ws_url}/socket.io/?EIO=4&transport=websocket")
        assert str(await early.recv()).startswith("0")
        stalled = await goodbye_holder(server, api, alice)
        server.process.send_signal(signal.SIGTERM)
        assert await close_frame(reader) == 1001  # the node is saying goodbye

        ws, token = server.ws_url, alice.token
        urls = (f"{ws}/ws/chat/{cid}/?token={token}",
                f"{ws}/ws/mobile/chat/{device_cid}/?device_id={device_id}",
                f"{ws}/ws/conversations/?token={token}",
                f"{ws}/api/v1/chat/ws/{cid}?token={token}")
        codes = await asyncio.gather(*(close_code(url) for url in urls))
        for url, code in zip(urls, codes, strict=True):
            assert code == 1001, url
        # A new Engine.IO session is refused at its handshake, on both transports: a failed
        # attempt to a client library, which tries again (test below).
        handshake = await api.http.get("/socket.io/", params={"EIO": "4",
                                                              "transport": "polling"})
        assert handshake.status_code == 503, handshake.text
        assert handshake.json() == {"code": 3, "message": "Server shutting down"}
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", server.port)
        writer2.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                       f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        async with asyncio.timeout(5):
            head = await reader2.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403"), head
        writer2.close()
        # A namespace asked for on a session opened before the signal (with no namespace it
        # was no member, and stays): refused with 1001, as the raw routes are.
        for namespace, auth in (("/chat", {"token": token, "conversation_id": cid}),
                                ("/mobile", {"device_id": device_id,
                                             "conversation_id": device_cid}),
                                ("/conversations", {"token": token})):
            await early.send(f"40{namespace}," + json.dumps(auth))
            async with asyncio.timeout(5):
                while not (frame := await early.recv()).startswith(f"44{namespace},"):
                    assert not str(frame).startswith(f"40{namespace},"), frame
            refused = json.loads(str(frame)[len(namespace) + 3:])
            assert refused["data"] == {"code": 1001, "message": "Server shutting down"}, refused
        assert server.process.poll() is None  # still saying goodbye
        await early.close()
        writer.close()
        stalled.close()
    finally:
        await api.aclose()
        server.stop(signal.SIGKILL)


async def test_socketio_clients_keep_retrying_through_a_goodbye_and_come_back(
    work_dir: Path,
) -> None:
    """While a node says goodbye, the official client's attempts to reconnect fail at the
    Engine.IO handshake, a failed attempt to it (``websocket error``, ``xhr poll error``), and
    it keeps trying, on both transports; once a node answers at the address again, it is
    back. (A refusal of its namespace's CONNECT, ``connect_error`` with a code, would end
    its reconnecting for good: the socket no longer active.)"""
    data_dir = work_dir / "shutdown-retry"
    server = start_server(data_dir, **HOLDABLE)
    api = Api(server.base_url)
    transports = ("websocket", "polling")
    clients: list[asyncio.subprocess.Process] = []
    restarted = None
    try:
        alice = await api.register()
        node_modules()
        for transport in transports:
            client = await asyncio.create_subprocess_exec(
                "node", str(JS_DIR / "socketio_retry.js"), server.base_url, alice.token,
                transport, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            clients.append(client)
            assert client.stdout is not None and client.stderr is not None
            async with asyncio.timeout(30):
                line = await client.stdout.readline()
            assert line.strip() == b"connected", (line, await client.stderr.read())
        # The goodbye held, so that the attempts below meet the node saying it.
        stalled = await goodbye_holder(server, api, alice)
        server.process.send_signal(signal.SIGTERM)

        failed = {"websocket": "error websocket error", "polling": "error xhr poll error"}
        for transport, client in zip(transports, clients, strict=True):
            assert client.stdout is not None and client.stderr is not None
            for _ in range(3):  # three attempts in a row, each refused, and still trying
                async with asyncio.timeout(30):
                    line = await client.stdout.readline()
                assert line.decode().strip() == failed[transport], (
                    transport, line, b"" if line else await client.stderr.read())
        assert server.process.poll() is None  # those attempts met the node saying goodbye
        stalled.close()

        server.stop(signal.SIGKILL)
        restarted = start_server(data_dir, port=server.port)
        for transport, client in zip(transports, clients, strict=True):
            assert client.stdout is not None and client.stderr is not None
            async with asyncio.timeout(30):
                while (line := await client.stdout.readline()).startswith(b"error "):
                    pass  # attempts while no node answered
            assert line.strip() == b"reconnected", (transport, line,
                                                    await client.stderr.read())
            assert await client.wait() == 0
    finally:
        for client in clients:
            await ended(client)
        await api.aclose()
        server.stop(signal.SIGKILL)
        if restarted is not None:
            restarted.stop()


async def test_the_goodbye_ends_after_its_setting_even_if_a_client_never_answers(
    work_dir: Path,
) -> None:
    """``SHUTDOWN_GOODBYE_SECONDS`` bounds the goodbye: a client whose close cannot be sent
    (it reads nothing of the 6 MB waiting for it) keeps the node from stopping only that
    long, where the close itself would wait 5 s for the frames before it."""
    server = start_server(work_dir / "shutdown-bounded", **{
        **HOLDABLE, "SHUTDOWN_GOODBYE_SECONDS": "0.5", "SHUTDOWN_TIMEOUT_SECONDS": "0.5"})
    api = Api(server.base_url)
    try:
        alice = await api.register()
        reader, writer = await silent_client(server, f"/ws/conversations/?token={alice.token}")
        stalled = await goodbye_holder(server, api, alice)
        server.process.send_signal(signal.SIGTERM)
        assert await close_frame(reader) == 1001
        # Stopped (uvicorn ends by the signal it was given) while the stalled client's close
        # would still be waiting for its frames to leave.
        assert await asyncio.to_thread(server.process.wait, 4) == -signal.SIGTERM
        writer.close()
        stalled.close()
    finally:
        await api.aclose()
        server.stop(signal.SIGKILL)


#: Content of one message to the reader that never reads, and how much is sent to it in all:
#: more than the kernel's buffers on both ends take, so that the rest waits in the node.
BIG_CONTENT_CHARS = 60_000
SENT_TO_THE_STALLED_BYTES = 16 * 1024 * 1024
#: The stalled test's node: its goodbye, and how long uvicorn may then wait for connections.
STALLED_GOODBYE_SECONDS = 1.0
STALLED_TIMEOUT_SECONDS = 1.0


async def stalled_reader(server: ServerProcess, path: str) -> asyncio.StreamWriter:
    """A WebSocket opened by hand whose client never reads after the handshake (a small
    receive buffer, so that little of what the node sends fits in the kernel on its side);
    it lasts as long as the writer returned is kept."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    await upgrade(server, path, reader, writer)
    writer.transport.pause_reading()  # from here on nothing is read
    return writer


async def test_a_client_that_never_reads_does_not_keep_a_stopping_node(work_dir: Path) -> None:
    """After its goodbye the node hands over to uvicorn, which closes what is left and waits
    for it: a connection whose client stopped reading, with megabytes still to send, never
    closes. ``SHUTDOWN_TIMEOUT_SECONDS`` bounds that wait: the node exits all the same."""
    server = start_server(
        work_dir / "shutdown-stalled",
        SHUTDOWN_GOODBYE_SECONDS=str(STALLED_GOODBYE_SECONDS),
        SHUTDOWN_TIMEOUT_SECONDS=str(STALLED_TIMEOUT_SECONDS),
        MAX_BACKLOG_BYTES=str(1 << 30), MAX_CONTENT_CHARS=str(BIG_CONTENT_CHARS),
        SEND_RATE_PER_SECOND="100000", SEND_BURST="100000")
    api = Api(server.base_url)
    stalled = None
    try:
        alice = await api.register()
        cid = int((await api.conversation(alice))["id"])
        stalled = await stalled_reader(server, f"/ws/chat/{cid}/?token={alice.token}")
        content = "x" * BIG_CONTENT_CHARS
        for _ in range(SENT_TO_THE_STALLED_BYTES // BIG_CONTENT_CHARS):
            await rest_send(api, alice, cid, content)
        server.process.send_signal(signal.SIGTERM)
        # The goodbye, uvicorn's bounded wait, then the rest of its shutdown (a few tenths),
        # with room for a slow machine.
        bound = STALLED_GOODBYE_SECONDS + STALLED_TIMEOUT_SECONDS + 5
        try:
            code = await asyncio.to_thread(server.process.wait, bound)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the node still runs {bound} s after SIGTERM:\n{server.log()[-2000:]}")
        assert code == -signal.SIGTERM
    finally:
        if stalled is not None:
            stalled.transport.abort()
        await api.aclose()
        server.stop(signal.SIGKILL)


IDLE_CLIENTS = 6000
#: How soon after SIGTERM a node whose clients all answer its close at once has exited.
STOPPED_WITHIN_SECONDS = 3.0


async def idle_socketio_client(server: ServerProcess, token: str) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    """A lean Socket.IO client over WebSocket (Engine.IO v4 by hand, as the official clients
    speak it), connected to ``/conversations``: many of them cost the test little."""
    reader, writer = await silent_client(server, "/socket.io/?EIO=4&transport=websocket")
    assert (await read_frame(reader))[1].startswith(b"0{")  # Engine.IO OPEN
    writer.write(client_frame(0x1, b'40/conversations,{"token":"' + token.encode() + b'"}'))
    while True:
        _opcode, payload = await read_frame(reader)
        if payload.startswith(b"40/conversations,"):
            return reader, writer
        assert not payload.startswith(b"44"), payload


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 section 5.3), the mask all zeroes."""
    length = len(payload)
    head = bytes((0x80 | opcode,)) + (bytes((0x80 | length,)) if length < 126 else
                                      bytes((0x80 | 126,)) + length.to_bytes(2))
    return head + b"\0\0\0\0" + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (unmasked) server frame: its opcode and payload."""
    async with asyncio.timeout(30):
        return await next_frame(reader)


async def next_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """``read_frame`` without a deadline of its own (the caller bounds the wait)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length >= 126:
        length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8))
    return first & 0x0F, await reader.readexactly(length)


async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       ) -> tuple[bytes, bytes]:
    """Idle until the node closes the connection, answering Engine.IO pings and echoing the
    WebSocket close as a client does: the last text before the close, and the close code.
    One deadline for the whole wait: thousands of these share the test's one core."""
    last = b""
    try:
        async with asyncio.timeout(60):
            while True:
                opcode, payload = await next_frame(reader)
                if opcode == 0x8:
                    writer.write(client_frame(0x8, payload[:2]))
                    return last, payload[:2]
                if payload == b"2":
                    writer.write(client_frame(0x1, b"3"))
                last = payload
    finally:
        writer.close()


async def test_a_node_with_many_idle_connections_stops_soon_after_its_goodbye(
    work_dir: Path,
) -> None:
    """Closing thousands of Socket.IO connections at once costs each close its own socket's
    work, not the node's every socket's: the node says goodbye to every client and exits well
    within its goodbye (the clients answer at once)."""
    server = start_server(work_dir / "shutdown-many", MAX_SOCKETS_PER_USER=str(IDLE_CLIENTS),
                          SHUTDOWN_GOODBYE_SECONDS="5")
    api = Api(server.base_url)
    try:
        alice = await api.register()
        gate = asyncio.Semaphore(50)

        async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                return await idle_socketio_client(server, alice.token)

        clients = await asyncio.gather(*(one() for _ in range(IDLE_CLIENTS)))
        watching = asyncio.gather(*(until_closed(r, w) for r, w in clients))
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Before its goodbye runs out: every client closed at once, nothing left to wait for.
        assert await asyncio.to_thread(server.process.wait, 30) == -signal.SIGTERM
        stopped = time.monotonic() - signalled
        # Each told with the WebSocket close alone (no Engine.IO CLOSE before it: see above).
        ended = await watching
        assert {code for _, code in ended} == {(1000).to_bytes(2)}
        assert b"1" not in {last for last, _ in ended}
        assert stopped < STOPPED_WITHIN_SECONDS, stopped
    finally:
        await api.aclose()
        server.stop(signal.SIGKILL)
