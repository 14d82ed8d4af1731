"""Fuzzing every inbound event of every real-time dialect (issue 6), against a real server on
each database, over one connection per dialect reused across the examples.

For each input the contract's answer is checked (CONTRACT sections 4 and 5):

- Socket.IO (``/chat``, ``/mobile``, ``/conversations``; every ``on_<event>`` and unknown
  names, reserved ones included): with an ack, ``{ok: true, ...}`` or ``{ok: false, error:
  {code, message}}``; without, nothing or an ``error {code, message, event}`` event. Never
  ``internal_error``; the socket stays connected.
- Raw routes (``/ws/chat/``, ``/ws/mobile/chat/``, ``/ws/conversations/``,
  ``/api/v1/chat/ws/``; every inbound frame type, unknown types, JSON that is not an object,
  text that is not JSON, binary frames): at most an ``error`` frame in the route's shape, with
  the code the contract gives for the kind of input; the connection stays open (a barrier frame
  sent after each input is answered).

Afterwards the server log holds no exception and a normal event still works. Examples are
bounded (``FUZZ_EXAMPLES`` scales them) and derandomized.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.client import Api, TestUser, admin_of
from tests.support.fuzz import (
    EDGE_TEXT,
    faults,
    fuzz_settings,
    json_values,
    real_ids,
    resolve,
    shaped,
)
from tests.support.server import ServerProcess
from tests.test_raw_support import RawClient, close_code, raw
from tests.test_socketio_helpers import Client, group, ok

EXAMPLES = 60
MAX_FRAME_BYTES = 65536
_barriers = itertools.count(1)
MESSAGE_ID_FIELDS = ("after_message_id", "up_to_message_id", "message_ids", "reply_to_id",
                     "parent_message_id")
#: Placeholders of the scene's ids in the generated inputs (the objects are made at run time).
IDS = real_ids("conversation_id", "message_id", *MESSAGE_ID_FIELDS)


@dataclass
class Scene:
    """Who and what the fuzzing acts on: a group of Alice's and Bob's with a message of each,
    a group Alice is not in, and a device with its support conversation."""

    server: ServerProcess
    api: Api
    alice: TestUser
    cid: int
    private: int
    messages: list[int]
    device: str
    device_cid: int
    device_messages: list[int]

    def ids(self, *, mobile: bool = False) -> dict[str, list[Any]]:
        """The real ids behind the placeholders of ``IDS``."""
        conversations = [self.device_cid] if mobile else [self.cid, self.private]
        messages = self.device_messages if mobile else self.messages
        return {"conversation_id": conversations, "message_id": messages,
                **{name: messages for name in MESSAGE_ID_FIELDS}}


@pytest.fixture(scope="module")
async def scene(fuzz_server: ServerProcess) -> AsyncIterator[Scene]:
    api = Api(fuzz_server.base_url, await admin_of(fuzz_server.base_url))
    alice, bob, stranger = await api.register(), await api.register(), await api.register()
    cid = await group(api, alice, bob)
    private = await group(api, stranger)
    messages = []
    for sender in (alice, bob):
        response = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                       json={"content": "hi"}, headers=sender.headers)
        messages.append(response.json()["id"])
    device = await api.device()
    started = await api.http.post("/mobile/chat/start/", json={"device_id": device})
    device_cid = started.json()["id"]
    sent = await api.http.post(f"/mobile/chat/{device_cid}/send-message/",
                               json={"device_id": device, "content": "help"})
    yield Scene(fuzz_server, api, alice, cid, private, messages, device, device_cid,
                [sent.json()["id"]])
    await api.aclose()


# -- Socket.IO -------------------------------------------------------------------------------

CHAT_EVENTS: dict[str, list[str]] = {
    "join": ["conversation_id", "after_message_id"],
    "leave": ["conversation_id"],
    "chat_message": ["conversation_id", "content", "message_type", "parent_message_id",
                     "reply_to_id", "mentions", "media_url", "file", "metadata", "is_urgent",
                     "client_msg_id"],
    "typing_indicator": ["conversation_id", "is_typing"],
    "read_receipt": ["conversation_id", "message_ids", "up_to_message_id"],
    "message_status": ["conversation_id", "message_id", "status"],
    "message_reaction": ["conversation_id", "message_id", "emoji"],
    "message_edit": ["conversation_id", "message_id", "content"],
    "message_delete": ["conversation_id", "message_id"],
    # Not remove_member / leave_conversation: the user under fuzz would leave its own group.
    "add_members": ["conversation_id", "user_ids", "role"],
}
INBOX_EVENTS: dict[str, list[str]] = {
    "get_conversations": ["limit", "cursor"],
    "refresh_conversations": [],
    "get_queue": ["limit", "cursor"],
}
#: Names python-socketio gives a meaning of its own; a client may still send them as events.
RESERVED = ["connect", "disconnect", "connect_error", "message", "__disconnect_final"]
#: Codes a refusal may carry (docs/socketio.md); ``internal_error`` is a server fault.
SIO_CODES = {"invalid", "empty_content", "too_large", "not_joined", "not_found", "forbidden",
             "conversation_closed", "message_deleted", "rate_limited", "unknown_event",
             "conflict", "not_a_group", "group_full"}


def sio_inputs(events: dict[str, list[str]], ids: dict[str, list[Any]]) -> Any:
    """(event, payload, with_ack): a known event with a payload of its shape or any JSON, or
    an unknown (or reserved) event name."""
    known = st.sampled_from(sorted(events)).flatmap(lambda name: st.tuples(
        st.just(name),
        st.one_of(shaped(events[name], ids), shaped(events[name], ids), json_values,
                  st.none()),
        st.booleans()))
    unknown = st.tuples(
        st.one_of(st.sampled_from(RESERVED), st.text(min_size=1, max_size=20), EDGE_TEXT),
        json_values, st.booleans())
    return st.one_of(known, known, unknown)


class SioTarget:
    """One Socket.IO connection under fuzz, and the checks of each answer."""

    def __init__(self, client: Client, rejoin: int | None, ids: dict[str, list[Any]]) -> None:
        self.client = client
        self.rejoin = rejoin
        self.ids = ids

    async def probe(self, event: str, payload: Any, with_ack: bool) -> None:
        client = self.client
        payload = resolve(payload, self.ids)
        if with_ack:
            ack = await client.call(event, payload)
            assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), (event, ack)
            if not ack["ok"]:
                self.refusal(ack["error"], event, payload)
        else:
            await client.emit(event, payload)
            barrier = f"fuzz_barrier_{next(_barriers)}"
            error = (await client.call(barrier))["error"]
            assert error["code"] == "unknown_event", error
        for error in client.pending("error"):
            assert error.get("event") is not None, error
            self.refusal(error, error["event"], payload)
        assert client.connected, (event, payload)
        if self.rejoin is not None and event == "leave":
            ok(await client.call("join", {"conversation_id": self.rejoin}))

    @staticmethod
    def refusal(error: Any, event: str, payload: Any) -> None:
        assert isinstance(error, dict), (event, payload, error)
        assert isinstance(error.get("code"), str), (event, payload, error)
        assert isinstance(error.get("message"), str) and error["message"], (event, error)
        assert error["code"] in SIO_CODES, (event, payload, error)


@pytest.fixture(scope="module")
async def sio_chat(scene: Scene) -> AsyncIterator[SioTarget]:
    client = await Client(scene.server.base_url, "/chat").connect(
        {"token": scene.alice.token, "conversation_id": scene.cid})
    yield SioTarget(client, scene.cid, scene.ids())
    await client.close()


@pytest.fixture(scope="module")
async def sio_mobile(scene: Scene) -> AsyncIterator[SioTarget]:
    client = await Client(scene.server.base_url, "/mobile").connect(
        {"device_id": scene.device, "conversation_id": scene.device_cid})
    yield SioTarget(client, scene.device_cid, scene.ids(mobile=True))
    await client.close()


@pytest.fixture(scope="module")
async def sio_inbox(scene: Scene) -> AsyncIterator[SioTarget]:
    client = await Client(scene.server.base_url, "/conversations").connect(
        {"token": scene.alice.token})
    yield SioTarget(client, None, {})
    await client.close()




@fuzz_settings(EXAMPLES)
@given(case=sio_inputs(CHAT_EVENTS, IDS))
@example(case=("disconnect", None, False))
@example(case=("connect", {"token": "x"}, True))
@example(case=("chat_message", {"content": "x", "metadata": {"n": 2**70}}, True))
@example(case=("chat_message", {"content": "x", "mentions": [2**64]}, True))
@example(case=("read_receipt", {"up_to_message_id": 2**63}, True))
@example(case=("read_receipt", {"message_ids": [2**64, -(2**63) - 1]}, True))
@example(case=("read_receipt", {"up_to_message_id": "99999999999"}, True))
@example(case=("chat_message", {"content": "a\x00b"}, True))
@example(case=("chat_message", {"content": "x", "metadata": {"n": float("nan")}}, True))
@example(case=("chat_message", {"content": "\ud800"}, False))
@example(case=("join", {"conversation_id": "\u0661"}, True))
async def test_socketio_chat(sio_chat: SioTarget, case: tuple[str, Any, bool]) -> None:
    await sio_chat.probe(*case)


@fuzz_settings(EXAMPLES // 2)
@given(case=sio_inputs(CHAT_EVENTS, IDS))
@example(case=("message_status", {"message_id": 2**40, "status": "read"}, True))
async def test_socketio_mobile(sio_mobile: SioTarget, case: tuple[str, Any, bool]) -> None:
    await sio_mobile.probe(*case)


@fuzz_settings(EXAMPLES // 2)
@given(case=sio_inputs(INBOX_EVENTS, {}))
@example(case=("get_conversations", {"cursor": "MjAyNS0wMS0wMVQwMDowMDowMHw5OTk5OTk5OTk5OTk5"},
               True))
@example(case=("get_conversations", {"cursor": "eA"}, True))
async def test_socketio_conversations(sio_inbox: SioTarget, case: tuple[str, Any, bool]) -> None:
    await sio_inbox.probe(*case)


# -- raw WebSocket routes ---------------------------------------------------------------------

WS_CHAT_FRAMES: dict[str, list[str]] = {
    "chat_message": ["content", "parent_message_id", "reply_to_id", "message_type", "media_url",
                     "file", "mentions", "metadata", "is_urgent", "client_msg_id"],
    "typing": ["is_typing"],
    "typing_indicator": ["is_typing"],
    "mark_read": ["up_to_message_id", "message_ids"],
    "message_read": ["message_ids"],
    "read_receipt": ["message_id", "message_ids"],
    "message_reaction": ["message_id", "emoji"],
    "message_edit": ["message_id", "content"],
    "message_delete": ["message_id"],
    "message_status": ["message_id", "status"],
}
WS_MOBILE_FRAMES: dict[str, list[str]] = {
    "chat_message": ["content", "message_type", "media_url", "is_urgent", "metadata",
                     "client_msg_id"],
    "message_status": ["message_id", "status"],
    "typing_indicator": ["is_typing"],
    "read_receipt": ["message_id", "message_ids"],
}
WS_INBOX_FRAMES: dict[str, list[str]] = {
    "get_conversations": ["limit", "cursor"],
    "refresh_conversations": [],
    "get_queue": ["limit", "cursor"],
}
WS_SESSION_COMMON = ["content", "reply_to_id", "parent_message_id", "mentions", "metadata",
                     "client_msg_id", "is_urgent"]
WS_SESSION_FRAMES: dict[str, list[str]] = {
    "text": WS_SESSION_COMMON,
    "file": [*WS_SESSION_COMMON, "file_url", "file_name", "file_size", "file_type"],
    "image": [*WS_SESSION_COMMON, "file_url", "file_name", "file_size", "file_type"],
    "typing": ["content", "is_typing"],
}
RAW_CODES = {"invalid", "empty_content", "too_large", "not_found", "forbidden",
             "conversation_closed", "message_deleted", "rate_limited", "conflict",
             "unknown_type", "invalid_json", "invalid_frame", "unsupported_frame"}


#: Seed 003's typing frame says true or false in its content.
SESSION_TYPING = {"content": st.sampled_from(["true", "false", "TRUE"])}


def raw_inputs(frames: dict[str, list[str]], type_key: str, ids: dict[str, list[Any]]) -> Any:
    """A frame to send: a known type with fields of its shape or any JSON, an unknown type,
    JSON that is not an object, text that is not JSON, or bytes."""
    known = st.sampled_from(sorted(frames)).flatmap(lambda kind: shaped(
        frames[kind], ids, fixed={type_key: kind},
        values=SESSION_TYPING if (type_key, kind) == ("message_type", "typing") else None))
    unknown_type = shaped([type_key, "content"])
    return st.one_of(
        known, known, known,
        unknown_type,
        json_values.filter(lambda v: not isinstance(v, dict)),
        st.text(max_size=80).filter(lambda t: not _is_json(t)),
        st.binary(max_size=80),
    )


def _is_json(text: str) -> bool:
    """Whether the server's parser (orjson: no NaN, no lone surrogates) takes ``text``."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class RawTarget:
    """One raw WebSocket under fuzz. After each input a barrier frame of an unknown type is
    sent; everything up to its error frame is the input's answer."""

    def __init__(self, client: RawClient, type_key: str, handlers: set[str],
                 ids: dict[str, list[Any]]) -> None:
        self.client = client
        self.type_key = type_key
        self.handlers = handlers
        self.ids = ids

    async def probe(self, data: Any) -> None:
        data = resolve(data, self.ids)
        if isinstance(data, bytes | str):
            await self.client.ws.send(data)
        else:
            await self.client.send(json.dumps(data))
        barrier = f"fuzz_barrier_{next(_barriers)}"
        await self.client.send({self.type_key: barrier})
        errors = []
        while True:
            frame = await self.client.next(lambda f: True)
            assert isinstance(frame, dict), frame
            if frame.get("type") != "error" and frame.get("message_type") != "error":
                continue
            self.check_error(frame, data)
            if barrier in frame["message"]:
                break
            errors.append(self.code(frame))
        assert len(errors) <= 1, (data, errors)
        expected = self.expected(data)
        if expected is not None:
            assert errors == [expected], (data, errors)

    def expected(self, data: Any) -> str | None:
        """The error code the contract gives this input, when it is known in advance."""
        if isinstance(data, bytes):
            return "unsupported_frame"
        if isinstance(data, str):
            if len(data.encode()) > MAX_FRAME_BYTES:
                return "too_large"
            if not _is_json(data):
                return "invalid_json"
            data = orjson.loads(data)
        if not isinstance(data, dict):
            return "invalid_frame"
        kind = data.get(self.type_key)
        if not isinstance(kind, str) or kind not in self.handlers:
            return "unknown_type"
        return None

    def code(self, frame: dict[str, Any]) -> str:
        code = frame.get("code", frame.get("metadata", {}).get("code"))
        assert isinstance(code, str), frame
        return code

    def check_error(self, frame: dict[str, Any], data: Any) -> None:
        assert frame["type"] == "error", frame
        assert isinstance(frame["message"], str) and frame["message"], frame
        assert frame["error"] == frame["message"], frame
        assert self.code(frame) in RAW_CODES, (data, frame)


async def _raw_target(url: str, type_key: str, handlers: dict[str, list[str]],
                      first: str | None, ids: dict[str, list[Any]]) -> AsyncIterator[RawTarget]:
    async with raw(url) as client:
        if first is not None:
            await client.next(first)
        yield RawTarget(client, type_key, set(handlers), ids)


@pytest.fixture(scope="module")
async def ws_chat(scene: Scene) -> AsyncIterator[RawTarget]:
    url = f"{scene.server.ws_url}/ws/chat/{scene.cid}/?token={scene.alice.token}"
    async for target in _raw_target(url, "type", WS_CHAT_FRAMES, "recent_messages",
                                     scene.ids()):
        yield target


@pytest.fixture(scope="module")
async def ws_mobile(scene: Scene) -> AsyncIterator[RawTarget]:
    url = f"{scene.server.ws_url}/ws/mobile/chat/{scene.device_cid}/?device_id={scene.device}"
    async for target in _raw_target(url, "type", WS_MOBILE_FRAMES, "connection_established",
                                     scene.ids(mobile=True)):
        yield target


@pytest.fixture(scope="module")
async def ws_inbox(scene: Scene) -> AsyncIterator[RawTarget]:
    url = f"{scene.server.ws_url}/ws/conversations/?token={scene.alice.token}"
    async for target in _raw_target(url, "type", WS_INBOX_FRAMES, "connection_established",
                                     {}):
        yield target


@pytest.fixture(scope="module")
async def ws_session(scene: Scene) -> AsyncIterator[RawTarget]:
    url = f"{scene.server.ws_url}/api/v1/chat/ws/{scene.cid}?token={scene.alice.token}"
    async for target in _raw_target(url, "message_type", WS_SESSION_FRAMES, None, scene.ids()):
        yield target


@fuzz_settings(EXAMPLES)
@given(data=raw_inputs(WS_CHAT_FRAMES, "type", IDS))
@example(data={"type": "mark_read", "up_to_message_id": 2**63})
@example(data={"type": "mark_read", "message_ids": [2**64 - 1]})
@example(data={"type": "read_receipt", "message_id": "999999999999"})
@example(data={"type": "chat_message", "content": "x", "metadata": {"n": 2**64 - 1}})
@example(data={"type": "chat_message", "content": "a\x00b"})
@example(data={"type": "message_edit", "message_id": 1, "content": "\x00"})
@example(data="NaN")
@example(data='{"type": "chat_message", "content": ' + '"' + "x" * 70_000 + '"}')
async def test_ws_chat(ws_chat: RawTarget, data: Any) -> None:
    await ws_chat.probe(data)


@fuzz_settings(EXAMPLES // 2)
@given(data=raw_inputs(WS_MOBILE_FRAMES, "type", IDS))
@example(data={"type": "read_receipt", "message_ids": [2**63]})
async def test_ws_mobile(ws_mobile: RawTarget, data: Any) -> None:
    await ws_mobile.probe(data)


@fuzz_settings(EXAMPLES // 2)
@given(data=raw_inputs(WS_INBOX_FRAMES, "type", {}))
@example(data={"type": "get_conversations", "cursor": "\x00"})
@example(data={"type": "get_conversations",
               "cursor": "MjAyNS0wMS0wMVQwMDowMDowMHw5OTk5OTk5OTk5OTk5"})
async def test_ws_conversations(ws_inbox: RawTarget, data: Any) -> None:
    await ws_inbox.probe(data)


@fuzz_settings(EXAMPLES)
@given(data=raw_inputs(WS_SESSION_FRAMES, "message_type", IDS))
@example(data={"message_type": "file", "content": "x", "file_url": "u", "file_size": 2**64})
@example(data={"message_type": "image", "file_url": 5, "file_name": ["x"]})
@example(data={"message_type": "typing", "content": None})
async def test_ws_session(ws_session: RawTarget, data: Any) -> None:
    await ws_session.probe(data)


# -- credentials ------------------------------------------------------------------------------


async def test_odd_credentials_are_refused_with_their_codes(scene: Scene) -> None:
    """Found by the fuzzing on PostgreSQL: a device id holding NUL reached the database (a
    server fault instead of 4002). Odd credentials and ids are refused with the contract's
    codes, and nothing is logged as a fault."""
    base, ws = scene.server.base_url, scene.server.ws_url
    token = scene.alice.token
    refusals = [
        ("/mobile", {"device_id": "\x00" * 8}, 4002),
        ("/mobile", {"device_id": "abc\x00defgh"}, 4002),
        ("/mobile", {"device_id": 12345678}, 4002),
        ("/chat", {"token": "\x00"}, 4002),
        ("/chat", {"token": token, "conversation_id": 2**40}, 4003),
        ("/chat", {"token": token, "conversation_id": "\u0661"}, 4003),
        ("/conversations", {"token": ["x"]}, 4002),
    ]
    for namespace, auth, code in refusals:
        refused = await Client(base, namespace).refused(auth)
        assert refused["code"] == code, (namespace, auth, refused)
    closes = [
        (f"/ws/mobile/chat/{scene.device_cid}/?device_id=%00%00%00%00%00%00%00%00", 4002),
        (f"/ws/chat/99999999999999/?token={token}", 4003),
        ("/ws/conversations/?token=%00", 4002),
        (f"/api/v1/chat/ws/99999999999?token={token}", 1008),
    ]
    for path, code in closes:
        assert await close_code(ws + path) == code, path
    assert not faults(scene.server.log()), "\n".join(faults(scene.server.log()))


# -- afterwards -------------------------------------------------------------------------------


async def test_after_the_fuzzing(scene: Scene, sio_chat: SioTarget, sio_mobile: SioTarget,
                                 ws_chat: RawTarget, ws_session: RawTarget) -> None:
    """Every fuzzed connection is still up and a normal event works on it; the server logged
    no exception."""
    await asyncio.sleep(0.2)  # background publishes of the last sends
    for target in (sio_chat, sio_mobile):
        assert target.client.connected
        sent = ok(await target.client.call("chat_message", {"content": "still here"}))
        assert sent["message"]["content"] == "still here"
    await ws_chat.client.send({"type": "chat_message", "content": "raw still here"})
    await ws_chat.client.next(lambda f: f.get("type") == "chat_message"
                              and f["content"] == "raw still here")
    await ws_session.client.send({"message_type": "text", "content": "session still here"})
    await ws_session.client.next(lambda f: f.get("message_type") == "message"
                                 and f["content"] == "session still here")
    assert not faults(scene.server.log()), "\n".join(faults(scene.server.log()))
