"""Small pure pieces: passwords, origins, the send-rate bucket, drafts, the inbox batcher,
group roles."""

import asyncio
import contextlib
import dataclasses
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from socketio import packet as sio_packet

from backend.auth.passwords import hash_password, verify_password
from backend.realtime.codec import Packet
from backend.realtime.origins import origin_allowed
from backend.realtime.queries import first_values, parsed_query
from backend.service.access import may_add, may_remove
from backend.service.clock import iso
from backend.service.drafts import PlainDraft, model_draft, parse_draft
from backend.service.errors import ChatError
from backend.service.limits import TokenBucket
from backend.settings import Limits
from namespaces.chat import _shown


def test_passwords_are_argon2_hashed_and_verified() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)
    assert not verify_password("correct horse", None)  # the first unknown account
    assert not verify_password("correct horse", None)  # and later ones, against the dummy
    assert not verify_password("correct horse", "not-a-hash")


def test_origins() -> None:
    allowed = ("https://app.example",)
    assert origin_allowed(None, "chat.example", allowed)  # non-browser client
    assert origin_allowed("https://app.example", "chat.example", allowed)
    assert origin_allowed("http://chat.example", "chat.example", allowed)  # same origin
    assert not origin_allowed("https://evil.example", "chat.example", allowed)
    assert origin_allowed("https://evil.example", "chat.example", ("*",))


def test_token_bucket_allows_a_burst_then_refuses_with_a_retry_time() -> None:
    bucket = TokenBucket(rate=1000.0, burst=3)
    for _ in range(3):
        bucket.take()
    with pytest.raises(ChatError) as refused:
        bucket.take()
    assert refused.value.status == 429
    assert 0 < refused.value.retry_after <= 0.001  # type: ignore[attr-defined]
    time.sleep(0.002)
    bucket.take()


def test_drafts_validate_once_for_every_door() -> None:
    limits = Limits(max_content_chars=10)
    assert parse_draft({"content": "hi", "junk": 1}, limits).content == "hi"
    with pytest.raises(ChatError, match="cannot be empty"):
        parse_draft({"content": "   "}, limits)
    with pytest.raises(ChatError) as long:
        parse_draft({"content": "x" * 11}, limits)
    assert long.value.status == 413
    with pytest.raises(ChatError, match="content"):
        parse_draft({"content": 5}, limits)
    for data in ({"content": b"hi"}, {"content": "hi", "client_msg_id": b"c"},
                 {"content": "", "message_type": "image", "media_url": b"https://x.example/a"},
                 {"content": "hi", "file": {"url": b"https://x.example/a"}}):
        # bytes (a Socket.IO binary attachment) are not text: refused, not decoded
        with pytest.raises(ChatError) as refused:
            parse_draft(data, limits)
        assert refused.value.code == "invalid", data
    with pytest.raises(ChatError, match="object"):
        parse_draft(["content"], limits)
    image = parse_draft({"content": "", "message_type": "image",
                         "media_url": "https://x.example/a.png"}, limits)
    assert image.message_type == "image"
    with pytest.raises(ChatError, match="client_msg_id"):
        parse_draft({"content": "a", "client_msg_id": "x" * 65}, limits)


class _Text(str):
    """A string that is not exactly ``str`` (the model turns it into one)."""


def _outcome(parse: Any, data: Any, limits: Limits) -> Any:
    """What ``parse`` makes of ``data``: the draft's fields, or the error a client gets."""
    try:
        draft = parse(data, limits)
    except ChatError as error:
        return ("refused", error.code, error.message, error.status)
    fields = (dataclasses.asdict(draft) if isinstance(draft, PlainDraft)
              else draft.model_dump())
    return ("draft", {key: (type(value), value) for key, value in fields.items()})


def test_a_plain_text_draft_skips_the_model_with_its_outcome_unchanged() -> None:
    """A body whose only draft fields are a string ``content`` and a valid ``client_msg_id``
    is validated without the model: the same fields or the same refusal as through it, for
    every shape near that one."""
    limits = Limits(max_content_chars=10)
    plain = [{"content": "hi"}, {"content": "hi", "type": "chat_message"},
             {"content": "hi", "conversation_id": 4, "junk": None}, {"content": "é\ud800"},
             {"content": "   "}, {"content": ""}, {"content": "x" * 10}, {"content": "x" * 11},
             {"content": " \n x \t"}, {"content": "hi", "client_msg_id": None},
             {"content": "hi", "client_msg_id": "c"}, {"content": "hi", "client_msg_id": "e" * 64},
             {"content": " ", "client_msg_id": "c"}]
    modelled = [{}, {"content": None}, {"content": 5}, {"content": b"hi"},
                {"content": ["hi"]}, {"content": _Text("hi")}, {"content": "hi", "file": None},
                {"content": "hi", "message_type": "text"}, {"content": "hi", "mentions": []},
                {"content": "hi", "media_url": None}, {"content": "hi", "client_msg_id": ""},
                {"content": "hi", "client_msg_id": "x" * 65}, {"content": "hi", "client_msg_id": 7},
                {"content": "hi", "client_msg_id": _Text("c")},
                {"content": 1, "client_msg_id": "c"}, {"content": "hi", "client_msg_id": "é"},
                # The model refuses a lone surrogate here (not in content): not ASCII, modelled.
                {"content": "hi", "client_msg_id": "\ud800"},
                {"content": "hi", "client_msg_id": "😀" * 64},
                {"content": "hi", "client_msg_id": "c", "is_urgent": False},
                {"content": "hi", "is_urgent": "yes"}, {"content": "hi", "metadata": {}},
                {"content": "hi", "upload_id": 0}, {"content": "   ", "reply_to_id": None},
                {"junk": 1}]
    for data in plain + modelled:
        assert _outcome(parse_draft, data, limits) == _outcome(model_draft, data, limits), data
    for data in plain:
        with contextlib.suppress(ChatError):
            assert isinstance(parse_draft(data, limits), PlainDraft), data
    for data in modelled:
        with contextlib.suppress(ChatError):
            assert not isinstance(parse_draft(data, limits), PlainDraft), data
    # Each plain draft has lists and dicts of its own, as each model has.
    first, second = parse_draft({"content": "a"}, limits), parse_draft({"content": "b"}, limits)
    assert first.mentions is not second.mentions and first.metadata is not second.metadata


def test_iso_stamps_are_utc_with_a_z_whatever_the_zone() -> None:
    """UTC stamps are formatted as they are; any other zone is converted first."""
    moment = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
    assert iso(moment) == "2026-03-01T12:30:05.123456Z"
    assert iso(moment.replace(microsecond=0)) == "2026-03-01T12:30:05Z"
    assert iso(moment.astimezone(timezone(timedelta(hours=-5)))) == iso(moment)
    assert iso(moment.replace(tzinfo=ZoneInfo("UTC"))) == iso(moment)
    assert iso(None) is None
    # Written as ``isoformat`` writes them, whatever the year or fraction.
    for stamp in (datetime(1, 1, 1, tzinfo=UTC), datetime(999, 2, 3, 4, 5, 6, 7, tzinfo=UTC),
                  datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                  datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)):
        assert iso(stamp) == stamp.isoformat().replace("+00:00", "Z")


async def test_batcher_runs_once_per_window_with_every_key_touched() -> None:
    from backend.service.inbox import Batcher

    runs: list[list[int]] = []
    ran = asyncio.Event()

    async def job(keys: list[int]) -> None:
        runs.append(keys)
        ran.set()

    tasks: list[asyncio.Task[None]] = []
    batcher = Batcher(job, lambda job: tasks.append(asyncio.ensure_future(job)), window=0.05)
    batcher.touch(1)  # the leading edge: at once
    await asyncio.wait_for(ran.wait(), 5)
    for key in (2, 3, 2):  # in the quiet window: gathered into one more run
        batcher.touch(key)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert runs == [[1], [2, 3]]
    assert len(tasks) == 1  # one runner for all keys
    batcher.touch(4)  # after the runner ended: a new one, at once
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert runs == [[1], [2, 3], [4]] and len(tasks) == 2


def test_group_roles_decide_who_adds_and_removes_whom() -> None:
    assert may_add("owner", "admin") and may_add("owner", "member")
    assert may_add("admin", "member") and not may_add("admin", "admin")
    assert not may_add("member", "member") and not may_add("owner", "owner")
    assert may_remove("owner", "admin") and may_remove("owner", "member")
    assert may_remove("admin", "member") and may_remove("admin", "agent")
    assert not may_remove("admin", "admin") and not may_remove("admin", "owner")
    assert not may_remove("owner", "owner") and not may_remove("member", "member")


def test_a_query_text_is_parsed_once_and_shared_read_only() -> None:
    text = "EIO=4&transport=websocket&token=a%2Bb&token=second&blank="
    query = parsed_query(text)
    assert dict(query) == {"EIO": ("4",), "transport": ("websocket",),
                           "token": ("a+b", "second")}
    assert parsed_query(text) is query  # the next request sending it reads the same parse
    with pytest.raises(TypeError):
        query["sid"] = ("x",)  # type: ignore[index]
    mine = first_values(text)
    assert mine == {"EIO": "4", "transport": "websocket", "token": "a+b"}
    mine["conversation_id"] = "1"
    assert first_values(text) == {"EIO": "4", "transport": "websocket", "token": "a+b"}


def test_a_held_chat_message_the_join_page_shows_is_known_by_its_id() -> None:
    """``namespaces/chat.py``'s drop reads the packets the ``/chat`` dialect writes."""
    def packet(event: str, message_id: int) -> str:
        text = Packet.encoded(sio_packet.EVENT, [event, {
            "conversation_id": 1, "message": {"id": message_id}, "position": 9}], "/chat")
        assert isinstance(text, str)
        return text

    assert _shown(frozenset({5}), packet("chat_message", 5))
    assert not _shown(frozenset({5}), packet("chat_message", 6))
    assert not _shown(frozenset({5}), packet("message_edit", 5))
    assert not _shown(frozenset(), packet("chat_message", 5))
