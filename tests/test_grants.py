"""The cached write permissions (``backend/service/grants.py``): dropped by a change, bounded in
time, answering from memory as a read would; revoked across nodes in ``test_message_path.py``."""

from __future__ import annotations

import pytest

from backend.service.actors import Actor
from backend.service.chat import ChatService
from backend.service.errors import ChatError
from backend.service.grants import Grants
from backend.settings import Settings
from models import (
    Conversation,
    ConversationStatus,
)
from tests.support.in_process import (
    RecordingSink,
    group_of,
    users,
)


async def test_grants_are_dropped_by_a_change_and_bounded_in_time(each_database: str) -> None:
    people = await users(2)
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    cid = await group_of(chat, people)
    actor = Actor.of_user(people[0])
    held, fresh = Grants(ttl=3600), Grants(ttl=0)
    for grants in (held, fresh):
        await grants.writable(actor, cid)
    # Closed behind the caches' backs (as another node would): the held grant still writes
    # until it is dropped (by the control, or its time); a grant past its time reloads.
    await Conversation.filter(id=cid).update(status=ConversationStatus.CLOSED)
    await held.writable(actor, cid)
    with pytest.raises(ChatError) as refused_fresh:
        await fresh.writable(actor, cid)
    held.forget(conversation_id=cid)
    with pytest.raises(ChatError) as refused_held:
        await held.writable(actor, cid)
    assert refused_fresh.value.code == refused_held.value.code == "conversation_closed"


async def test_grants_answer_from_memory_as_they_would_after_a_wait(each_database: str) -> None:
    people = await users(3)
    chat = ChatService(RecordingSink(), Settings.from_env({"JWT_SECRET": "s" * 40}).limits)
    cid = await group_of(chat, people[:2])
    member, outsider = Actor.of_user(people[0]), Actor.of_user(people[2])
    grants = Grants(ttl=3600)
    assert grants.writable_now(member, cid) is None  # nothing held yet: ask writable
    assert grants.skip_keys_now(member) is None
    facts = await grants.writable(member, cid)
    assert await grants.skip_keys(member) == frozenset()
    assert grants.writable_now(member, cid) is facts
    assert grants.skip_keys_now(member) == frozenset()
    assert grants.writable_now(outsider, cid) is None  # not a member: writable decides
    await Conversation.filter(id=cid).update(status=ConversationStatus.CLOSED)
    grants.forget(conversation_id=cid)
    await grants.conversation(cid)  # held again, closed
    with pytest.raises(ChatError) as refused:
        grants.writable_now(member, cid)
    assert refused.value.code == "conversation_closed"

