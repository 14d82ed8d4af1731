"""``GET /metrics`` against real servers: the exposition parses as Prometheus text, and its
figures move as clients connect, leave, send and are refused; a ``METRICS_TOKEN`` closes it;
a cluster node reports Redis and measures fan-out from the other node."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import Api, admin_of, with_admin
from tests.support.cluster import Cluster
from tests.support.server import ServerProcess, start_server
from tests.test_raw_support import close_code, raw, rest_send
from tests.test_socketio_helpers import Client, chat_client, group, refused

TOKEN = "metrics-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: (metric sample name, sorted label pairs) → value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series not exposed counts as 0."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(server: ServerProcess, headers: dict[str, str] | None = None) -> Samples:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def until(server: ServerProcess, check: Callable[[Samples], bool],
                headers: dict[str, str] | None = AUTH, within: float = 5.0) -> Samples:
    """Scrape until ``check`` holds (bounded): counters move just after the frames leave."""
    deadline = time.monotonic() + within
    while True:
        samples = await scrape(server, headers)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics did not reach the expected figures:\n{samples}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def metered(work_dir: Path) -> Iterator[ServerProcess]:
    """A server of these tests' own (exact figures), with a metrics token."""
    server = with_admin(start_server(work_dir / "metrics", METRICS_TOKEN=TOKEN))
    yield server
    server.stop()


@pytest.fixture
async def api(metered: ServerProcess) -> AsyncIterator[Api]:
    """REST helpers against ``metered`` (overrides conftest's ``api``)."""
    client = Api(metered.base_url, await admin_of(metered.base_url))
    yield client
    await client.aclose()


async def test_the_token_closes_metrics(metered: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=metered.base_url) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
    samples = await scrape(metered, AUTH)
    assert value(samples, "confab_database_up") == 1
    assert ("confab_redis_up", ()) not in samples  # one node: no Redis to report


async def test_open_without_a_token(sqlite_server: ServerProcess) -> None:
    samples = await scrape(sqlite_server)
    assert value(samples, "confab_database_up") == 1
    assert ("confab_fanout_latency_seconds_count", ()) in samples


async def test_connections_by_door_go_up_and_down(
    metered: ServerProcess, api: Api
) -> None:
    owner = await api.register()
    cid = await group(api, owner)
    sio = ("confab_connections", {"transport": "socketio", "route": "/chat"})
    ws = ("confab_connections", {"transport": "websocket", "route": "/ws/chat/"})
    before = await scrape(metered, AUTH)
    base_sio, base_ws = value(before, sio[0], **sio[1]), value(before, ws[0], **ws[1])

    client = await chat_client(api, owner, cid)
    async with raw(f"{metered.ws_url}/ws/chat/{cid}/?token={owner.token}") as socket:
        await socket.next("connection_established")
        await until(metered, lambda s: value(s, sio[0], **sio[1]) == base_sio + 1
                    and value(s, ws[0], **ws[1]) == base_ws + 1)
        await client.close()
    await until(metered, lambda s: value(s, sio[0], **sio[1]) == base_sio
                and value(s, ws[0], **ws[1]) == base_ws)


async def test_messages_deliveries_and_latency(metered: ServerProcess, api: Api) -> None:
    sender, first, second = await api.register(), await api.register(), await api.register()
    cid = await group(api, sender, first, second)
    listeners = [await chat_client(api, first, cid), await chat_client(api, second, cid)]
    async with raw(f"{metered.ws_url}/ws/chat/{cid}/?token={sender.token}") as socket:
        await socket.next("connection_established")
        before = await scrape(metered, AUTH)
        sent = 4
        for n in range(sent):
            await rest_send(api, sender, cid, f"message {n}")
        for _ in range(sent):  # every listener got every message
            await socket.next(lambda f: f.get("type") == "chat_message")
            for client in listeners:
                await client.next("chat_message")

        def moved(after: Samples) -> bool:
            return (value(after, "confab_deliveries_total", event="chat_message")
                    - value(before, "confab_deliveries_total", event="chat_message")
                    == sent * 3)

        after = await until(metered, moved)
    for client in listeners:
        await client.close()
    assert (value(after, "confab_messages_sent_total", sender="user")
            - value(before, "confab_messages_sent_total", sender="user")) == sent
    count = "confab_fanout_latency_seconds_count"
    assert value(after, count) - value(before, count) >= sent  # once per event, not per listener
    assert value(after, count) == value(after, "confab_fanout_latency_seconds_bucket", le="+Inf")
    assert value(after, "confab_fanout_latency_seconds_sum") > 0


async def test_refusals_are_counted_by_door_and_code(
    metered: ServerProcess, api: Api
) -> None:
    owner, stranger = await api.register(), await api.register()
    cid = await group(api, owner)
    before = await scrape(metered, AUTH)

    client = await chat_client(api, owner)  # connected, no conversation joined
    refused(await client.call("chat_message", {"conversation_id": cid, "content": "hi"}),
            "not_joined")
    await client.close()
    async with raw(f"{metered.ws_url}/ws/chat/{cid}/?token={owner.token}") as socket:
        await socket.next("connection_established")
        await socket.send("this is not json")
        await socket.next("error")
    assert await close_code(f"{metered.ws_url}/ws/chat/{cid}/?token=forged") == 4002
    assert (await Client(api.base_url, "/chat").refused({"token": "forged"}))["code"] == 4002
    response = await api.http.get(f"/api/v1/chat/sessions/{cid}", headers=stranger.headers)
    assert response.status_code in (403, 404), response.text
    rest_code = response.json()["code"]
    # refused before any handler: a path id out of range, a body that is not JSON, one that
    # fails validation
    for path, body, status in ((f"/api/v1/chat/sessions/{cid}x", None, 404),
                               ("/api/v1/chat/sessions", b"{", 400),
                               ("/api/v1/chat/sessions", b'{"title": 5}', 422)):
        early = await (api.http.get(path, headers=owner.headers) if body is None else
                       api.http.post(path, content=body, headers=owner.headers))
        assert early.status_code == status, early.text
    http_codes = Counter([rest_code, "not_found", "invalid_json", "invalid"])

    def counted(after: Samples) -> bool:
        def delta(transport: str, code: str) -> float:
            return (value(after, "confab_errors_total", transport=transport, code=code)
                    - value(before, "confab_errors_total", transport=transport, code=code))
        return (delta("socketio", "not_joined") == 1 and delta("websocket", "invalid_json") == 1
                and all(delta("http", code) == n for code, n in http_codes.items())
                and delta("websocket", "credential_invalid") == 1
                and delta("socketio", "credential_invalid") == 1)

    await until(metered, counted)


async def test_a_cluster_node_reports_redis_and_remote_fanout(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes[:2]
    api_a = Api(node_a.base_url, await admin_of(node_a.base_url))
    api_b = Api(node_b.base_url)
    try:
        sender, listener = await api_a.register(), await api_a.register()
        cid = await group(api_a, sender, listener)
        client = await chat_client(api_b, listener, cid)
        before = await scrape(node_b)
        assert value(before, "confab_redis_up") == 1
        assert ("confab_redis_events_dropped_total", ()) in before
        await rest_send(api_a, sender, cid, "across nodes")
        await client.next("chat_message")
        count = "confab_fanout_latency_seconds_count"
        await until(node_b, lambda s: value(s, count) > value(before, count)
                    and value(s, "confab_deliveries_total", event="chat_message")
                    > value(before, "confab_deliveries_total", event="chat_message"),
                    headers=None)
        await client.close()
    finally:
        await api_a.aclose()
        await api_b.aclose()
