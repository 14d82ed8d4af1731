"""The example deployment's nginx (deploy/nginx.conf) in front of the two cluster nodes:
Socket.IO long-polling works through it (sticky routing), WebSockets are upgraded through it,
and clients behind it share conversations with clients on either node."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Api
from tests.support.cluster import Cluster
from tests.support.debian import ensure_package
from tests.support.services import free_port, port_open
from tests.test_raw_support import raw
from tests.test_socketio_helpers import Client, chat_client, group, ok

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def proxy(cluster: Cluster, work_dir: Path) -> Iterator[str]:
    """nginx running deploy/nginx.conf, its upstreams pointed at nodes A and B."""
    nginx = ensure_package("nginx", "nginx-light", timeout=300)
    port = free_port()
    a, b = cluster.nodes[:2]
    config = (ROOT / "deploy" / "nginx.conf").read_text()
    config = config.replace("127.0.0.1:8001", f"127.0.0.1:{a.port}")
    config = config.replace("127.0.0.1:8002", f"127.0.0.1:{b.port}")
    config = re.sub(r"listen 8000;", f"listen 127.0.0.1:{port};", config)
    root = work_dir / "nginx"
    root.mkdir(exist_ok=True)
    config = config.replace("pid /tmp/confab-nginx.pid;", f"pid {root}/nginx.pid;")
    (root / "nginx.conf").write_text(config)
    with open(root / "error.log", "wb") as errors:
        process = subprocess.Popen(
            [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=errors,
        )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port, 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start: {(root / 'error.log').read_text()}",
                            pytrace=False)
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_polling_and_websockets_through_the_proxy(cluster: Cluster, proxy: str) -> None:
    a, b = cluster.nodes[:2]
    via_proxy, on_a, on_b = Api(f"http://{proxy}"), Api(a.base_url), Api(b.base_url)
    alice, bob, carol, dave = [await via_proxy.register() for _ in range(4)]
    cid = await group(via_proxy, alice, bob, carol, dave)
    # Long-polling only: every request of the session must reach the node that opened it.
    # Both clients send the Origin of a page served through the proxy, as a browser does: the
    # nodes' same-origin check sees the Host the proxy passes on, its port included.
    page = f"http://{proxy}"
    polling = await Client(page, "/chat").connect(
        {"token": alice.token, "conversation_id": cid}, transports=["polling"],
        headers={"Origin": page})
    direct_a = await chat_client(on_a, bob, cid)
    direct_b = await chat_client(on_b, carol, cid)
    try:
        async with raw(f"ws://{proxy}/ws/chat/{cid}/?token={dave.token}",
                       origin=page) as upgraded:
            await upgraded.next("recent_messages")
            for n in range(5):  # several polling round trips, all on one node
                sent = ok(await polling.call("chat_message", {"conversation_id": cid,
                                                              "content": f"poll {n}"}))
                for client in (direct_a, direct_b):
                    got = await client.next("chat_message")
                    assert got["message"]["id"] == sent["message"]["id"]
                frame = await upgraded.next("chat_message")
                assert frame["message"]["content"] == f"poll {n}"
            for sender, text in ((direct_a, "from A"), (direct_b, "from B")):
                ok(await sender.call("chat_message", {"conversation_id": cid, "content": text}))
                got = await polling.next("chat_message", lambda e, t=text:
                                         e["message"]["content"] == t)
                assert got["message"]["content"] == text
            await upgraded.send({"type": "chat_message", "content": "raw via proxy"})
            got = await polling.next("chat_message",
                                     lambda e: e["message"]["content"] == "raw via proxy")
            assert got["message"]["sender_id"] == dave.id
    finally:
        for client in (polling, direct_a, direct_b):
            await client.close()
        for api in (via_proxy, on_a, on_b):
            await api.aclose()
