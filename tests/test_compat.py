"""The boundary for library internals (backend/compat): every assumption holds on the installed
libraries, a missing or changed internal is reported by name and version, and a node whose
libraries fail a check refuses to start."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import socketio
from tortoise.backends.sqlite.client import SqliteClient
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

import backend.compat
from backend.compat import IncompatibleLibrary, assumptions, check_all, failures, pins
from backend.compat import starlette as starlette_compat
from backend.compat.assumptions import Pin, assigned, check, self_assigned, version
from backend.compat.socketio import own_message_suffix
from tests.support.server import ROOT, start_server
from tests.support.services import free_port


def test_every_assumption_holds_on_the_installed_libraries() -> None:
    assert len(assumptions()) > 75  # every compat module was read
    assert failures() == []
    check_all()


def test_each_compat_module_pins_what_pyproject_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {}
    for requirement in project["dependencies"]:
        name, _, pin = requirement.partition("==")
        pinned[re.sub(r"\[.*\]", "", name).lower()] = pin
    assert {pin.distribution for pin in pins()} == {
        "uvicorn", "websockets", "starlette", "tortoise-orm", "aiosqlite", "asyncpg",
        "python-socketio", "python-engineio", "pyjwt"}
    for pin in pins():
        assert pinned.get(pin.distribution) == pin.version, pin


def test_a_missing_private_method_is_named_with_its_library_and_versions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socketio.AsyncServer, "_send_packet")
    with pytest.raises(IncompatibleLibrary) as raised:
        check_all()
    message = str(raised.value)
    assert EXPECTED in message, message
    assert "docs/upgrading.md" in message
    assert {failure.pin.distribution for failure in raised.value.failures} == {"python-socketio"}


def test_the_engine_implements_what_python_socketio_uses_of_its_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.compat.engineio import REASONS
    from backend.compat.socketio import ENGINE_SURFACE, engine_uses
    from backend.realtime.engine import EngineServer, Reason

    assert {name: getattr(Reason, name) for name in REASONS} == REASONS
    assert engine_uses() == ENGINE_SURFACE
    assert all(hasattr(EngineServer, name) for name in ENGINE_SURFACE)
    # A python-socketio that starts using more of its engine is named.
    monkeypatch.setattr("backend.compat.socketio.engine_uses",
                        lambda: ENGINE_SURFACE | {"something_new"})
    found = [str(failure) for failure in failures()]
    assert any("what AsyncServer uses of its Engine.IO server" in line for line in found), found


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def send_receive_event_to_app(self: object, final: bool) -> None: ...

    monkeypatch.setattr(WebSocketsSansIOProtocol, "send_receive_event_to_app",
                        send_receive_event_to_app)
    found = [str(failure) for failure in failures()]
    assert ("uvicorn 0.54.0 (pinned 0.54.0): WebSocketsSansIOProtocol.send_receive_event_to_app"
            "(self): has parameters (self, final), expected (self)") in found, found
    # The copied text path was made from the old source: the fingerprint says so too.
    assert any("source of WebSocketsSansIOProtocol.send_receive_event_to_app" in line
               and "source changed" in line for line in found), found


def test_another_installed_version_is_named() -> None:
    (failure,) = check([version(Pin("uvicorn", "0.1.0"))])
    assert str(failure) == ("uvicorn 0.54.0 (pinned 0.1.0): installed version: "
                            "installed 0.54.0, not 0.1.0")


def test_another_datetime_adapter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The send path stores its stamp as text already formatted the way the ORM's adapter
    would: an adapter storing another text (the ORM would read it back otherwise) fails."""
    assert failures() == []
    monkeypatch.setitem(sqlite3.adapters, (datetime, sqlite3.PrepareProtocol),
                        lambda value: value.isoformat())
    found = [str(failure) for failure in failures()]
    assert ["tortoise-orm 1.1.9 (pinned 1.1.9): its SQLite executor stores a datetime as "
            "isoformat(' '): registers another sqlite3 adapter for datetime"] == found, found


class _RenamedLock:
    """A client whose lock moved to another name."""

    def __init__(self) -> None:
        self._mutex = None


def test_a_renamed_instance_attribute_is_reported_not_skipped() -> None:
    """What ``getattr(client, "_lock", None)`` skipped in silence (turning the guard off)."""
    pin = Pin("tortoise-orm", "1.1.9")
    assert check([assigned(pin, SqliteClient, "_lock")]) == []
    (failure,) = check([assigned(pin, _RenamedLock, "_lock")])
    assert str(failure) == ("tortoise-orm 1.1.9 (pinned 1.1.9): _RenamedLock()._lock: is no "
                            "longer assigned by _RenamedLock (no `self._lock = ...`)")


class _Shapes:
    """``self.name = ...`` in the shapes upstream code writes it, and stores that are not."""

    def __init__(self, other: Any) -> None:
        self.plain = 1
        self.annotated: int = 2
        self.first = self.second = 3
        other.elsewhere = 4

        def later() -> None:
            self.nested = 5

        self._later = later

    @property
    def value(self) -> int:
        return 0

    @value.setter
    def value(self, value: int) -> None:
        self.through_property = value


def test_assignments_are_read_from_the_compiled_methods() -> None:
    """Each way upstream assigns an attribute on ``self`` counts; a store on another object
    does not."""
    assert self_assigned(_Shapes) == {"plain", "annotated", "first", "second", "nested",
                                      "_later", "through_property"}
    pin = Pin("tortoise-orm", "1.1.9")
    assert check([assigned(pin, _Shapes, "nested")]) == []
    (failure,) = check([assigned(pin, _Shapes, "elsewhere")])
    assert "no longer assigned by _Shapes" in str(failure)


def test_the_scope_check_finds_a_key_that_starlette_sets_and_we_do_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``RawRoutes`` left ``scope["route"]`` out (Starlette's router sets it): the check found
    it. Leaving it out again fails."""

    def without_route(scope: dict[str, object], app: object, route: object,
                      child_scope: dict[str, object]) -> None:
        scope["app"] = app
        scope.setdefault("router", app.router)  # type: ignore[attr-defined]
        scope.update(child_scope)

    monkeypatch.setattr(starlette_compat, "enter_route", without_route)
    found = [str(failure) for failure in failures()]
    assert [line for line in found if "WebSocket scope keys" in line] == [
        "starlette 1.10.0 (pinned 1.10.0): the WebSocket scope keys Starlette sets on the way "
        "to a route: differ from what enter_route sets (read Starlette.__call__, its middleware "
        "and Router.app, then update enter_route or SKIPPED_KEYS)"], found


class _Manager:
    host_id = "abc123"

    def __init__(self, codec: object) -> None:
        self.json = codec


def test_own_messages_are_recognised_whatever_the_codec_spacing() -> None:
    from backend.realtime.codec import OrjsonCodec

    for codec in (OrjsonCodec, json):
        manager = _Manager(codec)
        message = codec.dumps({"method": "emit", "data": [1], "host_id": "abc123"})
        raw = message.encode() if isinstance(message, str) else message
        assert raw.endswith(own_message_suffix(manager))  # type: ignore[arg-type]
        other = codec.dumps({"method": "emit", "host_id": "abc1234"})
        assert not other.encode().endswith(own_message_suffix(manager))  # type: ignore[arg-type]


def test_overridden_hooks_replace_the_private_ones_without_a_frame_between() -> None:
    from backend.cluster.manager import RedisFanoutManager
    from backend.realtime.server import Server

    assert Server._handle_eio_message is Server.handle_engineio_message
    assert Server._handle_event_internal is Server.handle_event_internal
    assert Server._engineio_server_class is Server.engineio_server_class
    assert Server._handle_connect is Server.handle_connect
    assert RedisFanoutManager._publish is RedisFanoutManager.publish
    assert RedisFanoutManager._listen is RedisFanoutManager.listen
    assert RedisFanoutManager._redis_connect is RedisFanoutManager.redis_connect


# -- a node with a library that lost an internal does not start ------------------------------

#: Loaded by the interpreter before anything else (``sitecustomize`` first on PYTHONPATH): an
#: python-socketio whose server lost its private ``_send_packet``.
BREAK_SOCKETIO = """
import socketio
del socketio.AsyncServer._send_packet
"""
EXPECTED = ("python-socketio 5.18.1 (pinned 5.18.1): AsyncServer._send_packet(self, eio_sid, "
            "pkt): is missing")


def _broken_path(tmp_path: Path) -> str:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BREAK_SOCKETIO)
    return str(shim)


def test_a_server_with_a_missing_internal_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as raised:
        server = start_server(tmp_path / "data", PYTHONPATH=_broken_path(tmp_path))
        server.stop()  # started after all: the test fails below
    message = str(raised.value)
    assert re.match(r"server exited with [1-9]", message), message
    assert EXPECTED in message, message
    assert "Traceback" not in message, message  # one clear message, not a stack


def test_confab_serve_refuses_to_start_with_a_missing_internal(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**_env(), "PYTHONPATH": _broken_path(tmp_path), "DATA_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stderr
    assert EXPECTED in result.stderr, result.stderr


def _env() -> dict[str, str]:
    import os

    from tests.support.server import TEST_SECRET

    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "JWT_SECRET": TEST_SECRET}


def test_the_package_documents_every_module() -> None:
    for name in backend.compat.MODULES:
        module = __import__(f"backend.compat.{name}", fromlist=["PINS"])
        header = module.__doc__ or ""
        for pin in module.PINS:
            assert f"{pin.version}" in header and "pin" in header, (name, pin)


def test_tortoise_parses_sqlite_datetimes_with_ciso8601() -> None:
    """Every datetime the ORM reads from SQLite (a user at each connect, each message of a
    page) is parsed by ``parse_datetime``: Tortoise takes ciso8601's when it is installed,
    else a pure-Python one ~100 times slower. Both read what SQLite stores alike."""
    import ciso8601
    from tortoise.fields import data

    assert data.parse_datetime is ciso8601.parse_datetime
    stamp = "2026-12-06 10:00:00.123456+00:00"
    import iso8601

    assert ciso8601.parse_datetime(stamp) == iso8601.parse_date(stamp, default_timezone=None)


def test_the_lean_segment_decoder_answers_as_upstream() -> None:
    """backend/compat/jwt.py's copy of PyJWT's segment decoder refuses and keeps what
    upstream's does, on segments of every kind, and tokens decode through it."""
    from jwt.api_jws import PyJWS

    from backend.compat.jwt import _SAMPLES, DECODER, LeanJWS, _answer

    samples = [*_SAMPLES, b"eyJzdWIiOiIxIn0", b"eyJzdWIiOiIxIn0=", b"ab\ncd", b"abc\x00",
               b"=", b"==", b"a===", b"Zm9v", b"Zm9vYg", b"Zm9vYg=", b"Zm9vYh"]
    for segment in samples:
        assert _answer(LeanJWS._decode_base64url_segment, segment) == _answer(
            PyJWS._decode_base64url_segment, segment), segment
    assert isinstance(DECODER._jws, LeanJWS)


def test_hmac_keys_are_prepared_once_and_bad_ones_still_refused() -> None:
    """backend/compat/jwt.py's ``KeyOnce``: the node's secret is prepared at its first decode
    only; a key PyJWT refuses as HMAC secret (asymmetric-looking) is refused every time."""
    import jwt as pyjwt

    from backend.compat.jwt import DECODER, KeyOnce

    algorithm = DECODER._jws.get_algorithm_by_name("HS256")
    assert isinstance(algorithm, KeyOnce)
    key = "test-secret-" + "x" * 32
    token = pyjwt.encode({"sub": "7"}, key, algorithm="HS256")
    assert DECODER.decode(token, key, algorithms=["HS256"]) == {"sub": "7"}
    assert key in algorithm.prepared
    with pytest.raises(pyjwt.InvalidSignatureError):
        DECODER.decode(token, key + "y", algorithms=["HS256"])
    pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
    for _ in range(2):
        with pytest.raises(pyjwt.InvalidKeyError):
            DECODER.decode(token, pem, algorithms=["HS256"])
    assert pem not in algorithm.prepared


def test_quick_claims_accepts_only_what_pyjwt_accepts() -> None:
    """backend/compat/jwt.py's ``quick_claims``: a plain valid token's claims are PyJWT's;
    every token PyJWT refuses or checks further (a tampered signature or payload, another
    algorithm, a key id, a claim of another type, outside its window, another issuer or
    audience, a short key) is left to PyJWT (None)."""
    import time

    import jwt as pyjwt

    from backend.compat.jwt import _segment, lean_decoder, quick_claims

    decoder = lean_decoder({"require": ["exp", "iat", "sub", "type"]})
    key, now = "quick-secret-" + "x" * 32, int(time.time())
    good = {"sub": "7", "iat": now, "exp": now + 60, "type": "access", "sid": "s",
            "iss": "confab", "aud": "app"}
    token = pyjwt.encode(good, key, algorithm="HS256")
    expected = decoder.decode(token, key, algorithms=["HS256"], issuer="confab",
                              audience="app", leeway=10)
    assert quick_claims(decoder, token, key, "confab", "app", 10) == expected
    head, payload, signature = token.split(".")
    other = pyjwt.encode({**good, "sub": "8"}, key, algorithm="HS256").split(".")[1]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    refused = [
        f"{head}.{other}.{signature}", f"{head}.{payload}.{flipped}", token + "=",
        pyjwt.encode(good, key * 2, algorithm="HS512"),
        pyjwt.encode(good, key, algorithm="HS256", headers={"kid": "a"}),
        pyjwt.encode({**good, "type": None}, key, algorithm="HS256"),
        pyjwt.encode({**good, "iat": float(now)}, key, algorithm="HS256"),
        pyjwt.encode({**good, "exp": now - 11}, key, algorithm="HS256"),
        pyjwt.encode({**good, "nbf": now + 11}, key, algorithm="HS256"),
        pyjwt.encode({**good, "iss": "else"}, key, algorithm="HS256"),
        pyjwt.encode({**good, "aud": ["else"]}, key, algorithm="HS256"),
        pyjwt.encode({**good, "sub": 7}, key, algorithm="HS256"),
    ]
    for bad in refused:
        assert quick_claims(decoder, bad, key, "confab", "app", 10) is None, bad
    assert quick_claims(decoder, token, key, "confab", None, 10) is None  # aud not asked
    assert quick_claims(decoder, token, key + "y", "confab", "app", 10) is None
    # A segment with bits past its data decodes in neither.
    assert _segment(b"Zm9vYh") is None and _segment(b"Zm9vYg") == b"foob"


def test_a_clients_event_decodes_as_upstream_decodes_it() -> None:
    """``decode_event`` reads a text EVENT as ``Packet.decode`` does, refuses what it refuses,
    and leaves every other shape to it; a mirror answering otherwise stops the node."""
    import itertools

    from backend.compat import socketio as compat

    parts = (["2"], ["", "/chat", "/", "/a?b=1", "/x-y"], ["", ","], ["", "0", "12", "3-", "٣"],
             ['["a"]', '["a",{"b":[1,2]}]', "[]", "{}", '"s"', "[", ""])
    decoded = 0
    for pieces in itertools.product(*parts):
        text = "".join(pieces)
        agrees = compat.decodes_as_upstream(text)
        if agrees is None:
            continue
        decoded += 1
        assert agrees, text
    assert decoded > 20
    assert failures() == []


def test_a_mirror_of_the_packet_codec_that_answers_otherwise_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.compat import socketio as compat

    real_decode, real_encode = compat.decode_event, compat.encode_plain
    monkeypatch.setattr(compat, "decode_event", lambda json, text: (
        None if (found := real_decode(json, text)) is None else (found[0], None, found[2])))
    monkeypatch.setattr(compat, "encode_plain", lambda *args: real_encode(*args) + " ")
    found = [str(failure) for failure in failures()]
    assert any("decode_event answers otherwise than Packet.decode" in line
               for line in found), found
    assert any("encode_plain answers otherwise than Packet.encode" in line
               for line in found), found


def test_the_nodes_packets_are_written_as_their_packet_objects_write_them() -> None:
    """``Packet.encoded`` (no packet built) writes what the node's packet class does, binary
    attachments included."""
    import orjson
    from socketio import packet as sio_packet

    from backend.realtime.codec import Packet

    fragment = orjson.Fragment(b'{"id":1}')
    for kind, data, namespace, ack_id in (
            (sio_packet.ACK, [{"ok": True, "message": fragment}], "/chat", 7),
            (sio_packet.ACK, [], "/chat", 0),
            (sio_packet.EVENT, ["chat_message", {"a": [1, None]}], "/chat", None),
            (sio_packet.EVENT, ["file", {"blob": b"\x00\x01"}], "/chat", None),
            (sio_packet.ACK, [b"raw", {"x": bytearray(b"y")}], "/mobile", 3)):
        assert Packet.encoded(kind, data, namespace, ack_id) == Packet(
            kind, data=data, namespace=namespace, id=ack_id).encode()
    with pytest.raises(TypeError):
        Packet.encoded(sio_packet.EVENT, ["e", object()], "/chat")
