"""Full-text search, ``GET /api/v1/chat/search`` (CONTRACT section 11), on both databases:
ranking, snippets, filters, pages, edits and deletes, who sees what, hostile query text."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Api, TestUser
from tests.support.server import start_server
from tests.support.services import Postgres
from tests.test_rest_sessions import V1, send, shared

SEARCH = f"{V1}/search"


def word() -> str:
    """A word no other test's message holds (letters only: one token for both engines)."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


async def search(api: Api, user: TestUser, q: str, **params: Any) -> dict[str, Any]:
    response = await api.http.get(SEARCH, params={"q": q, **params}, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"results", "next_cursor"}
    return body


async def found(api: Api, user: TestUser, q: str, **params: Any) -> list[int]:
    """The ids of the first page of hits, in their order."""
    return [hit["message"]["id"] for hit in (await search(api, user, q, **params))["results"]]


async def test_better_matches_come_first_with_marked_snippets(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    w = word()
    weak = await send(api, owner, sid, f"a long message that mentions {w} once among many "
                                       "other words about wallets, payments and refunds")
    strong = await send(api, owner, sid, f"{w} {w} {w}")
    markup = await send(api, owner, sid, f"<b>{w}</b> & co")
    body = await search(api, owner, w)
    hits = body["results"]
    ids = [hit["message"]["id"] for hit in hits]
    assert sorted(ids) == sorted([weak["id"], strong["id"], markup["id"]])
    assert ids[0] == strong["id"] and ids.index(strong["id"]) < ids.index(weak["id"])
    ranks = [hit["rank"] for hit in hits]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]
    assert body["next_cursor"] is None
    by_id = {hit["message"]["id"]: hit for hit in hits}
    assert by_id[strong["id"]]["conversation_id"] == sid
    assert by_id[strong["id"]]["message"]["content"] == f"{w} {w} {w}"
    assert f"<mark>{w}</mark>" in by_id[weak["id"]]["snippet"]
    assert "mentions" in by_id[weak["id"]]["snippet"]
    # The snippet is HTML: the text's own markup comes escaped, only the matches are marked.
    snippet = by_id[markup["id"]]["snippet"]
    assert f"<mark>{w}</mark>" in snippet and "<b>" not in snippet and "&amp;" in snippet
    # Every word is required; the last one also matches as a prefix.
    assert await found(api, owner, f"{w} mentions") == [weak["id"]]
    assert await found(api, owner, f"mentions {w[:-3]}") == [weak["id"]]
    assert await found(api, owner, f"{w} absentword{w}") == []
    # Case does not matter.
    assert weak["id"] in await found(api, owner, w.upper())


async def test_filters(api: Api) -> None:
    owner = await api.register()
    agent = await shared(api, "agent")
    first, second = (await api.conversation(owner))["id"], (await api.conversation(owner))["id"]
    w = word()
    m1 = await send(api, owner, first, f"{w} one")
    m2 = await send(api, agent, first, f"{w} two")
    m3 = await send(api, owner, second, f"{w} three", message_type="image",
                    media_url="https://example.com/receipt.png")
    everything = {m1["id"], m2["id"], m3["id"]}
    assert set(await found(api, owner, w)) == everything
    assert set(await found(api, owner, w, conversation_id=first)) == {m1["id"], m2["id"]}
    assert await found(api, owner, w, conversation_id=second) == [m3["id"]]
    assert await found(api, owner, w, sender_id=agent.id) == [m2["id"]]
    assert set(await found(api, owner, w, sender_id=owner.id)) == {m1["id"], m3["id"]}
    assert await found(api, owner, w, has_file="true") == [m3["id"]]
    assert set(await found(api, owner, w, has_file="false")) == {m1["id"], m2["id"]}
    assert set(await found(api, owner, w, after=m2["created_at"])) == {m2["id"], m3["id"]}
    assert await found(api, owner, w, before=m2["created_at"]) == [m1["id"]]
    assert await found(api, owner, w, after=m2["created_at"], before=m3["created_at"]) == [
        m2["id"]]
    assert await found(api, owner, w, after="2000-01-01T00:00:00", sort="newest") == [
        m3["id"], m2["id"], m1["id"]]
    assert await found(api, owner, w, before="2000-01-01T00:00:00Z") == []
    for params in ({"after": m3["created_at"], "before": m1["created_at"]},
                   {"after": "yesterday"}, {"has_file": "maybe"}, {"sort": "oldest"},
                   {"conversation_id": "0"}, {"sender_id": "x"}, {"limit": "0"}):
        response = await api.http.get(SEARCH, params={"q": w, **params},
                                      headers=owner.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"], params


async def pages(api: Api, user: TestUser, q: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a search, following next_cursor to the end."""
    collected: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        body = await search(api, user, q, **params, **extra)
        collected.append(body["results"])
        cursor = body["next_cursor"]
        if cursor is None:
            return collected
        assert len(collected) < 50, "the cursor does not move on"


async def test_pages_have_no_duplicates_and_no_gaps(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    w = word()
    # Some alike (equal ranks: the tie is broken by id), some not.
    sent = [await send(api, owner, sid, f"{w} filler" if n % 3 else f"{w} {w} " + "x " * n)
            for n in range(23)]
    expected = {m["id"] for m in sent}
    ranked = await pages(api, owner, w, limit=5)
    assert [len(page) for page in ranked] == [5, 5, 5, 5, 3]
    ids = [hit["message"]["id"] for page in ranked for hit in page]
    assert len(ids) == len(set(ids)) and set(ids) == expected
    keys = [(hit["rank"], hit["message"]["id"]) for page in ranked for hit in page]
    assert keys == sorted(keys, reverse=True)
    assert ids == await found(api, owner, w, limit=100)  # the same order as one page
    newest = [hit["message"]["id"] for page in await pages(api, owner, w, limit=4,
                                                             sort="newest") for hit in page]
    assert newest == sorted(expected, reverse=True)
    cursor = (await search(api, owner, w, limit=5))["next_cursor"]
    for params in ({"q": f"{w} filler", "cursor": cursor}, {"q": w, "cursor": cursor,
                                                             "sort": "newest"},
                   {"q": w, "cursor": "not-a-cursor"}, {"q": w, "cursor": "e30"}):
        response = await api.http.get(SEARCH, params=params, headers=owner.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"]


async def test_edits_are_found_by_their_new_words_and_deletes_vanish(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    old, new = word(), word()
    message = await send(api, owner, sid, f"before {old}")
    kept = await send(api, owner, sid, f"kept {old}")
    assert set(await found(api, owner, old)) == {message["id"], kept["id"]}
    edited = await api.http.patch(f"{V1}/messages/{message['id']}",
                                  json={"content": f"after {new}"}, headers=owner.headers)
    assert edited.status_code == 200, edited.text
    assert await found(api, owner, old) == [kept["id"]]
    hits = (await search(api, owner, new))["results"]
    assert [hit["message"]["id"] for hit in hits] == [message["id"]]
    assert hits[0]["message"]["content"] == f"after {new}" and hits[0]["message"]["is_edited"]
    deleted = await api.http.delete(f"{V1}/messages/{message['id']}", headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    assert await found(api, owner, new) == []
    assert message["id"] not in await found(api, owner, "after", conversation_id=sid)
    assert await found(api, owner, old) == [kept["id"]]


async def test_only_what_the_reader_may_see(api: Api) -> None:
    owner, member, other = await api.register(), await api.register(), await api.register()
    stranger = await shared(api, "stranger")
    agent = await shared(api, "agent")
    w = word()
    support = (await api.conversation(owner))["id"]
    group = (await api.conversation(owner, kind="group",
                                    participant_ids=[member.id, other.id]))["id"]
    private = await send(api, owner, support, f"{w} private")
    by_member = await send(api, member, group, f"{w} from the member")
    by_other = await send(api, other, group, f"{w} from the other")
    # A stranger sees none of it, and may not name the conversations.
    assert await found(api, stranger, w) == []
    for cid in (support, group):
        response = await api.http.get(SEARCH, params={"q": w, "conversation_id": cid},
                                      headers=stranger.headers)
        assert response.status_code == 403, response.text
        assert response.json()["detail"]
    # A member of the group sees the group, not the owner's support conversation.
    assert set(await found(api, member, w)) == {by_member["id"], by_other["id"]}
    # Staff see support conversations; the owner sees both.
    assert private["id"] in await found(api, agent, w)
    assert by_member["id"] not in await found(api, agent, w)
    assert set(await found(api, owner, w)) == {private["id"], by_member["id"], by_other["id"]}
    # Blocking a user hides their messages from the blocker only.
    blocked = await api.http.post(f"{V1}/block", json={"user_id": other.id},
                                  headers=member.headers)
    assert blocked.status_code == 200, blocked.text
    assert await found(api, member, w) == [by_member["id"]]
    assert await found(api, member, w, sender_id=other.id) == []
    assert set(await found(api, owner, w)) == {private["id"], by_member["id"], by_other["id"]}
    unblocked = await api.http.post(f"{V1}/unblock", json={"user_id": other.id},
                                    headers=member.headers)
    assert unblocked.status_code == 200, unblocked.text
    assert set(await found(api, member, w)) == {by_member["id"], by_other["id"]}
    assert (await api.http.get(SEARCH, params={"q": w})).status_code == 401


#: Text that means something to FTS5's or to_tsquery's syntax.
HOSTILE = ['"', '""', "*", "NEAR(", "NEAR(a b", "AND", "OR", "NOT", ":", "&|!", "!", "'", "\\",
           "(", ")", "^", "-", "+", "content:", "message_search:x", "a AND", "AND a", "a OR b",
           "a NOT b", "a:*", "a & b", "a | b", "!a", "a <-> b", "a <2> b", "{a b}", "a*b",
           "'a' & 'b'", "'", "%", "_", "\u00a0", "\u200b", "😀", "中文", "e\u0301",
           "a" * 200, "1 2 3", "-1", "NEAR", "near(a, b, 3)", "a\tb\nc"]


async def test_hostile_query_text_gives_results_or_a_clean_422(api: Api) -> None:
    owner = await api.register()
    sid = (await api.conversation(owner))["id"]
    w = word()
    message = await send(api, owner, sid, f"{w} and near or not")
    for text in HOSTILE:
        for q in (text, f"{w} {text}", f"{text} {w}", f'"{w}{text}'):
            response = await api.http.get(SEARCH, params={"q": q[:200]},
                                          headers=owner.headers)
            assert response.status_code in (200, 422), (q, response.text)
            if response.status_code == 422:
                assert response.json()["detail"], q
    # Syntax in the text is read as words: the message is found through it.
    for q in (f'"{w}', f"{w}*", f"NEAR({w}", f"{w} AND", f"{w}:*", f"!{w}|", f"({w})",
              f"{w} and near", f"NOT {w}", f"{w} OR"):
        assert await found(api, owner, q) == [message["id"]], q
    for q in ("", "   ", "&|!", '"*:', "a" * 201):
        response = await api.http.get(SEARCH, params={"q": q}, headers=owner.headers)
        assert response.status_code == 422, (q, response.text)
        assert response.json()["detail"], q


async def test_search_reaches_no_other_database_error(api: Api) -> None:
    """What the fuzzing found at the route stays fixed: NUL, ids past 32 bits."""
    owner = await shared(api, "searcher")
    for params in ({"q": "\x00"}, {"q": "a", "conversation_id": str(2**40)},
                   {"q": "a", "sender_id": "99999999999999999999"}):
        response = await api.http.get(SEARCH, params=params, headers=owner.headers)
        assert response.status_code == 422, (params, response.text)


#: What undoes migration 0010, making the database one that had messages before search.
UNDO_SEARCH = {
    "sqlite": ['DROP TRIGGER "message_search_insert"', 'DROP TRIGGER "message_search_update"',
               'DROP TRIGGER "message_search_delete"', 'DROP TABLE "message_search"'],
    "postgres": ['DROP TRIGGER "message_search_vector" ON "messages"',
                 'DROP FUNCTION "message_search_vector"()',
                 'ALTER TABLE "messages" DROP COLUMN "search_vector"'],
}
FORGET_0010 = "DELETE FROM \"tortoise_migrations\" WHERE \"name\" = '0010_message_search'"


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    """An engine and a database of this test's own (None: SQLite in the server's folder)."""
    if request.param == "sqlite":
        yield "sqlite", None
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    name, url = asyncio.run(postgres.create_database())
    yield "postgres", url
    asyncio.run(postgres.drop_database(name))


async def test_the_migration_indexes_the_messages_already_there(
        fresh_database: tuple[str, str | None], work_dir: Path) -> None:
    engine, url = fresh_database
    data_dir = work_dir / f"search-backfill-{engine}-{uuid.uuid4().hex[:6]}"
    server = start_server(data_dir, url)
    try:
        api = Api(server.base_url)
        owner = await api.register()
        sid = (await api.conversation(owner))["id"]
        w = word()
        before = [await send(api, owner, sid, f"{w} number {n}") for n in range(3)]
        await api.aclose()
        server.stop()
        statements = [*UNDO_SEARCH[engine], FORGET_0010]
        if url is None:
            with sqlite3.connect(data_dir / "chat.sqlite3") as db:
                for statement in statements:
                    db.execute(statement)
        else:
            import asyncpg

            connection = await asyncpg.connect(url)
            try:
                for statement in statements:
                    await connection.execute(statement)
            finally:
                await connection.close()
        server = start_server(data_dir, url)  # migrates again: 0010 and its backfill
        api = Api(server.base_url)
        assert set(await found(api, owner, w)) == {m["id"] for m in before}
        assert await found(api, owner, f"{w} number 1") == [before[1]["id"]]
        after = await send(api, owner, sid, f"{w} sent after")
        assert await found(api, owner, f"{w} sent") == [after["id"]]
        await api.aclose()
    finally:
        server.stop()


async def test_ranking_looks_at_the_newest_matches_of_its_window(
        fresh_database: tuple[str, str | None], work_dir: Path) -> None:
    engine, url = fresh_database
    server = start_server(work_dir / f"search-window-{engine}-{uuid.uuid4().hex[:6]}", url,
                          SEARCH_RANK_WINDOW="3")
    try:
        api = Api(server.base_url)
        owner = await api.register()
        sid = (await api.conversation(owner))["id"]
        w = word()
        best = await send(api, owner, sid, f"{w} {w} {w} {w}")
        sent = [await send(api, owner, sid, f"{w} among other words number {n}")
                for n in range(4)]
        other = await send(api, owner, sid, "nothing to find")
        ranked = await search(api, owner, w)
        assert {hit["message"]["id"] for hit in ranked["results"]} == {
            m["id"] for m in sent[-3:]}
        assert ranked["next_cursor"] is None
        newest = [hit["message"]["id"] for page in await pages(api, owner, w, limit=2,
                                                                 sort="newest") for hit in page]
        assert newest == [m["id"] for m in reversed([best, *sent])]
        assert other["id"] not in newest
        # Narrower filters reach the older matches.
        assert await found(api, owner, w, before=sent[0]["created_at"]) == [best["id"]]
        await api.aclose()
    finally:
        server.stop()


def test_sqlite_excerpts_mark_the_words_and_cut_around_them() -> None:
    from backend.storage.search import ELLIPSIS, MARK_END, MARK_START, excerpt

    def shown(text: str, *words: str) -> str:
        return excerpt(text, words).replace(MARK_START, "[").replace(MARK_END, "]")

    assert shown("Where is my Wallet, café?", "wallet", "cafe") == "Where is my [Wallet], [café]?"
    assert shown("walletful wallets", "wall") == "[walletful] [wallets]"  # the last: a prefix
    assert shown("walletful wallets", "wall", "x") == "walletful wallets"
    long = " ".join(f"w{n}" for n in range(40))
    # Sixteen words, from a little before the match, or the last sixteen.
    assert shown(long, "w30") == f"{ELLIPSIS}w24 w25 w26 w27 w28 w29 [w30] " + " ".join(
        f"w{n}" for n in range(31, 40))
    cut = shown(long + " end", "w20")
    assert cut.startswith(f"{ELLIPSIS}w17 ") and cut.endswith(f"w32{ELLIPSIS}")
    assert shown("a b c w1 w1 w1", "w1") == "a b c [w1] [w1] [w1]"
    assert shown("", "x") == ""
