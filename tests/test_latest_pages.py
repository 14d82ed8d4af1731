"""Kept history pages (backend/service/latest_pages.py): what keeps and what drops them, and,
against the real server, that a connect after a change never gets the page from before it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from backend.service.latest_pages import LatestPages, Page, weight
from tests.support.client import Api, admin_of, with_admin
from tests.support.cluster import Cluster
from tests.support.server import ServerProcess, start_server
from tests.test_raw_chat import chat_url
from tests.test_raw_support import raw, support_conversation

# -- the keeper alone -------------------------------------------------------------------------


class Reads:
    """Pages read in turn: the n-th read returns a page whose ``has_more`` says nothing and
    whose only message's id is n."""

    def __init__(self) -> None:
        self.count = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Page:
        self.count += 1
        number = self.count
        if self.gate is not None:
            await self.gate.wait()
        return Page([{"id": number}], False)


def ids(page: Page) -> list[Any]:
    return [m["id"] for m in page.messages]


async def test_a_page_is_kept_until_a_change_of_its_conversation() -> None:
    pages, reads = LatestPages(), Reads()
    pages.follow()
    assert ids(await pages.page(1, 50, reads)) == [1]
    assert ids(await pages.page(1, 50, reads)) == [1]
    for name in ("typing_indicator", "user_joined", "user_left", "presence_diff",
                 "user_status"):
        pages.changed(1, name)
    pages.changed(2, "chat_message")  # another conversation
    assert ids(await pages.page(1, 50, reads)) == [1]
    for number, name in enumerate(("chat_message", "message_edit", "message_delete",
                                   "message_reaction", "read_receipt",
                                   "message_status_update", "an_event_of_tomorrow"), start=2):
        pages.changed(1, name)
        assert ids(await pages.page(1, 50, reads)) == [number], name
        assert ids(await pages.page(1, 50, reads)) == [number], name
    assert ids(await pages.page(1, 20, reads)) == [9]  # another size: read


async def test_a_read_during_a_change_is_not_kept() -> None:
    pages, reads = LatestPages(), Reads()
    pages.follow()
    reads.gate = asyncio.Event()
    under_way = asyncio.ensure_future(pages.page(1, 50, reads))
    await asyncio.sleep(0)
    pages.changed(1, "message_edit")  # may have committed after the read began
    reads.gate.set()
    assert ids(await under_way) == [1]
    reads.gate = None
    assert ids(await pages.page(1, 50, reads)) == [2]
    assert ids(await pages.page(1, 50, reads)) == [2]


async def test_a_vacated_room_or_an_old_page_is_read_again() -> None:
    now = [100.0]
    pages, reads = LatestPages(clock=lambda: now[0], keep_seconds=5.0), Reads()
    pages.follow()
    await pages.page(1, 50, reads)
    pages.vacated(1)
    assert ids(await pages.page(1, 50, reads)) == [2]
    now[0] += 4.9
    assert ids(await pages.page(1, 50, reads)) == [2]
    now[0] += 0.2
    assert ids(await pages.page(1, 50, reads)) == [3]


async def test_nothing_is_kept_unless_the_fanout_reports_changes() -> None:
    pages, reads = LatestPages(), Reads()
    assert ids(await pages.page(1, 50, reads)) == [1]
    assert ids(await pages.page(1, 50, reads)) == [2]


async def test_kept_pages_are_bounded() -> None:
    pages, reads = LatestPages(max_pages=3), Reads()
    pages.follow()
    for conversation_id in range(10):
        await pages.page(conversation_id, 50, reads)
    assert len(pages) == 3


async def test_kept_pages_are_bounded_by_their_weight_oldest_first() -> None:
    """Small pages are kept by the thousand; large ones go, the oldest first, once their
    weights together pass the bound; one heavier than the bound is not kept at all."""
    small = Page([{"id": 1}], False)
    large = Page([{"id": 2, "content": "x" * 10_000}], False)
    bound = 2_000 * weight(small) + 3 * weight(large)
    pages = LatestPages(max_bytes=bound)
    pages.follow()

    def reading(page: Page) -> Any:
        async def read() -> Page:
            return page
        return read

    for conversation_id in range(2_000):
        await pages.page(conversation_id, 50, reading(small))
    assert len(pages) == 2_000 and pages.bytes == 2_000 * weight(small) <= bound
    for conversation_id in range(10_000, 10_006):
        await pages.page(conversation_id, 50, reading(large))
    assert pages.bytes <= bound
    assert len(pages) < 2_000  # the small ones went first, oldest first
    assert (await pages.page(10_005, 50, reading(small))) is large  # the newest kept
    assert (await pages.page(0, 50, reading(large))) is large  # the oldest gone: read again
    huge = Page([{"id": 3, "content": "x" * bound}], False)
    await pages.page(20_000, 50, reading(huge))
    assert (await pages.page(20_000, 50, reading(small))) is small  # not kept
    pages.changed(10_005, "chat_message")
    pages.vacated(0)
    assert pages.bytes == sum(weight(entry[2]) for entry in pages._pages.values())


def test_a_page_is_encoded_once_for_all_its_readers() -> None:
    page = Page([{"id": 1, "content": "é"}], False)
    assert page.json() == orjson.dumps(page.messages)
    assert page.json() is page.json()


# -- the real server --------------------------------------------------------------------------


async def test_a_connect_after_any_change_gets_the_changed_page(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    agent = await sqlite_api.register(role="agent")

    async def recent() -> list[dict[str, Any]]:
        """The page a new connect of the agent's gets (the owner's stays in the room, so
        the node keeps following it)."""
        async with raw(chat_url(sqlite_server, cid, agent.token)) as late:
            return (await late.next("recent_messages"))["messages"]  # type: ignore[no-any-return]

    async with raw(chat_url(sqlite_server, cid, owner.token)) as me:
        await me.next("recent_messages")
        await me.send({"type": "chat_message", "content": "first"})
        message_id = (await me.next("chat_message"))["message_id"]
        assert [m["content"] for m in await recent()] == ["first"]
        assert [m["content"] for m in await recent()] == ["first"]  # kept, then shown

        await me.send({"type": "chat_message", "content": "second"})
        await me.next("chat_message")
        assert [m["content"] for m in await recent()] == ["first", "second"]

        await me.send({"type": "message_edit", "message_id": message_id, "content": "Edited"})
        await me.next("message_edit")
        page = await recent()
        assert page[0]["content"] == "Edited" and page[0]["is_edited"] is True

        await me.send({"type": "message_reaction", "message_id": message_id, "emoji": "👍"})
        await me.next("message_reaction")
        assert (await recent())[0]["reactions"] == {"👍": [owner.id]}

        async with raw(chat_url(sqlite_server, cid, agent.token)) as reader:
            await reader.next("recent_messages")
            await reader.send({"type": "mark_read"})
            await me.next("read_receipt")
        assert (await recent())[0]["read_by_count"] == 1

        await me.send({"type": "message_delete", "message_id": message_id})
        await me.next("message_delete")
        page = await recent()
        assert page[0]["is_deleted"] is True and page[0]["content"] == ""


async def test_a_change_made_on_another_node_drops_the_kept_page(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    on_a, _ = apis
    node_a, node_b = cluster.nodes[:2]
    owner, cid = await support_conversation(on_a)
    agent = await on_a.register(role="agent")

    async def recent_on_b() -> list[dict[str, Any]]:
        async with raw(chat_url(node_b, cid, agent.token)) as late:
            return (await late.next("recent_messages"))["messages"]  # type: ignore[no-any-return]

    async with (
        raw(chat_url(node_a, cid, owner.token)) as on_a_ws,
        raw(chat_url(node_b, cid, owner.token)) as on_b_ws,  # B follows the room
    ):
        await on_a_ws.next("recent_messages")
        await on_b_ws.next("recent_messages")
        await on_a_ws.send({"type": "chat_message", "content": "first"})
        message_id = (await on_b_ws.next("chat_message"))["message_id"]
        assert [m["content"] for m in await recent_on_b()] == ["first"]  # kept on B

        await on_a_ws.send({"type": "message_edit", "message_id": message_id,
                            "content": "Edited on A"})
        await on_b_ws.next("message_edit")  # B delivered it: its kept page is gone
        assert [m["content"] for m in await recent_on_b()] == ["Edited on A"]

        await on_a_ws.send({"type": "chat_message", "content": "second"})
        await on_b_ws.next(lambda f: f.get("type") == "chat_message"
                           and f["content"] == "second")
        assert [m["content"] for m in await recent_on_b()] == ["Edited on A", "second"]


#: The keep time of the node below: a change without an event shows in its pages this late;
#: and the most a slow machine's reads may add to it (short of the 5 s default: the setting,
#: not the default, must be what bounds it).
KEEP_SECONDS = 0.5
READS_SECONDS = 3.5


async def test_a_change_without_an_event_shows_in_the_kept_page_after_its_keep_time(
    work_dir: Path,
) -> None:
    """``LATEST_PAGE_KEEP_SECONDS`` bounds how late a change that no event announces (here a
    sender's role) shows in the page a connect gets."""
    server = with_admin(start_server(work_dir / "latest-keep",
                                     LATEST_PAGE_KEEP_SECONDS=str(KEEP_SECONDS)))
    admin = await admin_of(server.base_url)
    api = Api(server.base_url, admin)
    try:
        owner, cid = await support_conversation(api)
        agent = await api.register(role="agent")

        async def sender_role() -> str:
            async with raw(chat_url(server, cid, owner.token)) as reader:
                page = (await reader.next("recent_messages"))["messages"]
            return page[-1]["sender"]["role"]  # type: ignore[no-any-return]

        async with raw(chat_url(server, cid, agent.token)) as held:  # the node follows it
            await held.next("recent_messages")
            await held.send({"type": "chat_message", "content": "How can I help?"})
            await held.next("chat_message")
            assert await sender_role() == "agent"
            # agent → admin: still staff, so the agent's sockets stay, and no event is sent.
            response = await api.http.patch(f"/api/v1/auth/users/{agent.id}/role",
                                            json={"role": "admin"}, headers=admin.headers)
            assert response.status_code == 200, response.text
            changed_at = time.monotonic()
            deadline = changed_at + KEEP_SECONDS + READS_SECONDS
            while (role := await sender_role()) != "admin":
                assert role == "agent"
                assert time.monotonic() < deadline, "the kept page outlived its keep time"
                await asyncio.sleep(0.1)
    finally:
        await api.aclose()
        server.stop()
