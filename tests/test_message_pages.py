"""The pages every connect reads, read with plain statements, are the ORM's pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.auth.accounts import register_device
from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.serializers import reactions_map
from backend.settings import Settings
from backend.storage.database import close_database, open_database
from models import Message, Reaction, Receipt, Role, User


class _Sink:
    async def publish(self, event: object, *, here_only: bool = False) -> None:
        return None


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[ChatService]:
    settings = Settings.from_env({"DATABASE_URL": f"sqlite://{tmp_path / 'db.sqlite3'}",
                                  "JWT_SECRET": "s" * 40, "DATA_DIR": str(tmp_path)})
    await open_database(settings, apply_migrations=True)
    try:
        yield ChatService(_Sink(), settings.limits)
    finally:
        await close_database()


async def test_a_page_read_plainly_renders_as_the_orm_s(chat: ChatService) -> None:
    agent = await User.create(email="a@example.com", username="a", password_hash="x",
                              first_name="Ann", last_name="Agent", role=Role.AGENT)
    staff = Actor.of_user(agent)
    device = await register_device(None, "ios", "1.0")
    phone = Actor.of_device(device)
    cid = int((await chat.start_device_conversation(device, "help"))["id"])
    sent = []
    for n in range(7):
        who = phone if n % 2 else staff
        message, _ = await chat.send_message(who, cid, {"content": f"m{n}",
                                                         "metadata": {"n": n},
                                                         "is_urgent": n == 3})
        sent.append(message["id"])
    await chat.edit_message(staff, sent[2], "edited")
    await chat.delete_message(staff, sent[4])
    await chat.toggle_reaction(staff, sent[1], "👍")
    await chat.mark_read(staff, cid)

    async def orm_page(limit: int, after_id: int | None = None,
                       latest: bool = False) -> tuple[list[dict[str, Any]], bool]:
        """The page as the ORM read it (``select_related``) before."""
        query = Message.filter(conversation_id=cid)
        if after_id is not None:
            query = query.filter(id__gt=after_id)
        rows = await query.order_by("-id" if latest else "id").limit(limit + 1).select_related(
            *chat.RELATIONS)
        has_more = len(rows) > limit
        rows = rows[:limit]
        if latest:
            rows.reverse()
        return await chat._render(rows), has_more

    for limit, kwargs in ((3, {"latest": True}), (50, {"latest": True}),
                          (2, {"after_id": sent[1]}), (50, {"after_id": 0}), (4, {}),
                          (50, {"after_id": sent[-1]})):
        plain = await chat._page(cid, limit, **kwargs)  # type: ignore[arg-type]
        assert plain == await orm_page(limit, **kwargs), kwargs  # type: ignore[arg-type]
    # Reactions and read counts, as the ORM's queries count them.
    page, _ = await chat._page(cid, 50, latest=True)
    for message in page:
        reactions = await Reaction.filter(message_id=message["id"]).order_by("id").values_list(
            "emoji", "reactor_key")
        grouped: dict[str, list[str]] = {}
        for emoji, key in reactions:
            grouped.setdefault(emoji, []).append(key)
        assert message["reactions"] == reactions_map(grouped)
        assert message["read_by_count"] == await Receipt.filter(
            message_id=message["id"], read_at__isnull=False).count()
    assert any(m["reactions"] for m in page) and any(m["read_by_count"] for m in page)
    # A reader who blocked the agent sees the device's messages, not the agent's.
    shown, _ = await chat._page(cid, 50, latest=True, hidden=frozenset({agent.id}))
    assert [m["id"] for m in shown] == sent[1::2]
    latest, has_more = await chat._page(cid, 3, latest=True)
    assert [m["id"] for m in latest] == sent[-3:] and has_more
    assert {m["sender_type"] for m in (await chat._page(cid, 50, latest=True))[0]} == {
        "user", "mobile"}
