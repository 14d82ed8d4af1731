"""python-socketio 5.18.1 (pyproject.toml's pin): the server's and the Redis manager's
private hooks.

The project relies on:

- ``AsyncServer``'s private hooks, overridden or called by ``backend/realtime/server.py``
  through ``ServerHooks``: ``_engineio_server_class`` (the Engine.IO server class it builds),
  ``_handle_eio_message`` (every Engine.IO message), ``_handle_event_internal`` (every EVENT,
  with its ack id), ``_handle_connect`` (a CONNECT: its test of the namespaces served is
  mirrored to answer an unknown one as the protocol says), ``_send_packet``; and its lazy
  manager start in ``_handle_eio_connect`` (``manager_initialized``), done at start-up
  instead (``initialize_manager``);
- the way an EVENT packet of a client goes from ``_handle_eio_message`` through
  ``_handle_event``, ``_handle_event_internal`` and ``_trigger_event`` to the namespace's
  ``trigger_event`` (five coroutine frames and two handler look-ups for every event):
  ``event_sid`` mirrors ``_handle_event``'s checks (the socket's sid in the namespace, its
  INFO line, the warning for a socket not connected there), reading the private
  ``_binary_packet`` (``binary_pending``: a binary packet waiting for its attachments takes
  the next messages), ``namespace_handler`` the part of ``_trigger_event`` and its
  ``_get_event_handler``/``_get_namespace_handler`` that finds a namespace's handler when the
  server has no handlers of its own (``on``), and ``ack_data`` ``_handle_event_internal``'s
  ack; ``backend/realtime/server.py`` runs them for a text EVENT when ``async_handlers`` is
  off, and leaves every other packet to upstream;
- the seam to the node's own Engine.IO (backend/realtime/engine.py): what python-socketio's
  server and managers use of their engine (``self.eio.X``, ``server.eio.X``) is exactly
  ``ENGINE_SURFACE``, read from their source at start-up;
- ``AsyncServer.environ`` and ``packet_class`` (read by namespaces/base.py);
- ``Packet.decode`` and ``Packet.encode``, mirrored for the usual packets: ``decode_event``
  reads a client's text EVENT of a namespace (an ack id maybe, a list) in one match where
  upstream walks the text a character at a time (the ack id digit by digit), and
  ``encode_plain`` writes a packet without binary data without building a ``Packet``; any
  other text is left to upstream's decode, and binary data to its encode (start-up checks
  compare their answers with upstream's);
- ``Packet.uses_binary_events``: a class attribute ``Packet.__init__`` reads before it walks
  the data for binary attachments (``PacketWithoutBinaryScan``);
- ``BaseManager``'s room table (``rooms``, ``callbacks``, ``pending_connect``,
  ``pending_disconnect``): ``RoomsBySid`` copies ``basic_disconnect`` to leave only the rooms
  a socket is in, where upstream's scans every room of the namespace (one per socket), and
  makes a socket's own room a ``SidRoom`` (a dict answering the ``_fwdm`` and ``_invm``
  upstream reads of rooms, ``ROOM_READS``) rather than a ``bidict``;
- ``AsyncRedisManager``'s private ``_publish``, ``_listen`` and ``_redis_connect``, replaced by
  ``backend/cluster/manager.py`` through ``RedisManagerHooks``; its listener task ``thread``
  (``listener_task``); and that its messages are ``self.json.dumps`` of dicts whose last key is
  ``host_id``, own messages being dropped by the listener (``own_message_suffix``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, ClassVar

import socketio
from socketio import base_manager, base_server
from socketio import packet as sio_packet

from backend.compat.assumptions import (
    Assumption,
    Pin,
    assigned,
    holds,
    present,
    signature,
    unchanged,
    upstream,
    version,
)

PIN = Pin("python-socketio", "5.18.1")
PINS = [PIN]

__all__ = ["ENGINE_SURFACE", "PacketWithoutBinaryScan", "RedisManagerHooks", "RoomsBySid",
           "ServerHooks", "ack_data", "binary_pending", "decode_event", "encode_plain",
           "event_sid", "initialize_manager", "listener_task", "namespace_handler",
           "own_message_suffix"]


class _Hooks:
    """Private hooks of a library class under public names: a subclass that defines the
    public name replaces the private one (set when the subclass is made: no extra call per
    message), and its ``super()`` call of the public name reaches upstream's function."""

    HOOKS: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for public, private in cls.HOOKS.items():
            if public in cls.__dict__:
                setattr(cls, private, cls.__dict__[public])


_S = socketio.AsyncServer

#: What python-socketio's server and managers use of their Engine.IO server: the methods and
#: attributes ``backend.realtime.engine.EngineServer`` implements.
ENGINE_SURFACE = frozenset({
    "async_mode", "attach", "create_event", "generate_id", "get_session", "handle_request",
    "on", "send", "send_packet", "session", "shutdown", "sleep", "start_background_task",
    "transport"})
#: The modules of python-socketio an AsyncServer runs.
_SERVER_MODULES = ("async_server", "base_server", "base_manager", "async_manager",
                   "async_pubsub_manager", "async_redis_manager")


def engine_uses() -> set[str]:
    """The names python-socketio's server modules use of their engine (``eio.X``)."""
    used: set[str] = set()
    for name in _SERVER_MODULES:
        source = inspect.getsource(importlib.import_module(f"socketio.{name}"))
        used.update(re.findall(r"\beio\.(\w+)", source))
    return used


class ServerHooks(_Hooks, socketio.AsyncServer):
    """``socketio.AsyncServer`` with its private hooks under public names."""

    HOOKS: ClassVar[dict[str, str]] = {
        "engineio_server_class": "_engineio_server_class",
        "handle_engineio_message": "_handle_eio_message",
        "handle_event_internal": "_handle_event_internal",
        "handle_connect": "_handle_connect",
    }
    #: ``_engineio_server_class(self)``: the Engine.IO server class to build.
    engineio_server_class = upstream(_S, "_engineio_server_class")
    #: ``_handle_eio_message(self, eio_sid, data)``: one Engine.IO message of a client.
    handle_engineio_message = upstream(_S, "_handle_eio_message")
    #: ``_handle_event_internal(self, server, sid, eio_sid, data, namespace, id)``: an EVENT.
    handle_event_internal = upstream(_S, "_handle_event_internal")
    #: ``_handle_connect(self, eio_sid, namespace, data)``: a client's CONNECT to a namespace.
    handle_connect = upstream(_S, "_handle_connect")
    #: ``_send_packet(self, eio_sid, pkt)``: send one Socket.IO packet to a client.
    send_socketio_packet = upstream(_S, "_send_packet")


def binary_pending(server: socketio.AsyncServer, eio_sid: str) -> bool:
    """Whether a binary packet of ``eio_sid`` waits for its attachments (then the next
    messages are those attachments: ``_handle_eio_message``'s first branch)."""
    return eio_sid in server._binary_packet


def event_sid(server: socketio.AsyncServer, eio_sid: str, namespace: str,
              data: Any) -> str | None:
    """``AsyncServer._handle_event``'s checks (copied from 5.18.1) of a client's event whose
    ``namespace`` is given (``or '/'`` applied): the socket's sid there, or None when it is
    not connected to it (logged as upstream logs it)."""
    sid: str | None = server.manager.sid_from_eio_sid(eio_sid, namespace)
    server.logger.info('received event "%s" from %s [%s]', data[0], sid, namespace)
    if not server.manager.is_connected(sid, namespace):
        server.logger.warning('%s is not connected to namespace %s', sid, namespace)
        return None
    return sid


def namespace_handler(server: socketio.AsyncServer, namespace: str) -> Any:
    """The namespace handler ``AsyncServer._trigger_event`` (5.18.1) gives an event of
    ``namespace`` to, when that is plain: the server has no handlers of its own (``on``:
    ``_get_event_handler`` finds none) and ``namespace`` has a handler registered under its
    name (``_get_namespace_handler``, which then passes the arguments as they are). None
    otherwise: upstream's ``_trigger_event`` decides."""
    if server.handlers:
        return None
    return server.namespace_handlers.get(namespace)


def ack_data(server: socketio.AsyncServer, ack_id: Any, result: Any) -> list[Any] | None:
    """The data of the ACK packet ``AsyncServer._handle_event_internal`` (copied from 5.18.1)
    sends for a handler's ``result`` when the client asked for one (``ack_id``), or None
    when it sends none."""
    if result is server.not_handled or ack_id is None:
        return None
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


def initialize_manager(server: socketio.AsyncServer) -> None:
    """Start the client manager now, as ``AsyncServer._handle_eio_connect`` does at the first
    connection (its listener then runs from start-up)."""
    if not server.manager_initialized:
        server.manager_initialized = True
        server.manager.initialize()


#: A client's text EVENT as ``Packet.decode`` (5.18.1) reads it in its usual shape: a
#: namespace (no query in it), then maybe an ack id (upstream takes at most 100 digits), then
#: the data, a list. A namespace starting the text rules out an attachment count; ASCII digits
#: only (upstream's ``isdigit`` takes other digits too: such a text is left to it).
_EVENT_TEXT = re.compile(r"2(/[^,?]*),([0-9]{0,100})(?=\[)")


def decode_event(json: Any, text: str) -> tuple[str, int | None, Any] | None:
    """``(namespace, ack id, data)`` of a client's packet ``text`` as a ``Packet`` whose codec
    is ``json`` decodes it (``Packet(encoded_packet=text)``: its ``namespace``, ``id`` and
    ``data``), when it is an EVENT in the usual shape (``_EVENT_TEXT``); None for any other
    text, which upstream's decode then reads. Raises the codec's ``ValueError`` for data it
    refuses, as upstream's decode does."""
    found = _EVENT_TEXT.match(text)
    if found is None:
        return None
    namespace, digits = found.groups()
    return namespace, int(digits) if digits else None, json.loads(text[found.end():])


def encode_plain(json: Any, packet_type: int, data: Any, namespace: str | None = None,
                 id: int | None = None) -> str:
    """``Packet(packet_type, data, namespace, id).encode()`` (5.18.1) of a packet whose codec
    is ``json`` and whose type is not binary, without building the packet; what the codec
    raises for data it cannot encode goes up (for bytes: upstream's binary packet is then
    the caller's to build)."""
    text = str(packet_type)
    if namespace is not None and namespace != "/":
        text += namespace + ","
    if id is not None:
        text += str(id)
    if data is not None:
        text += json.dumps(data, separators=(",", ":"))
    return text


#: Texts the start-up check decodes both ways: the usual shapes, and the edges where
#: ``decode_event`` must leave the text to upstream.
DECODE_SAMPLES = (
    '2/chat,["a"]', '2/chat,12["a",{"b":1}]', '2/,0["x"]', '2/a-b,007[1,"c"]',
    '2/chat,' + '9' * 100 + '["a"]', '2/chat,' + '9' * 101 + '["a"]', '2/chat?x=1,["a"]',
    '21-["a"]', '2["a"]', '212["a"]', '2/chat,1\u0663["a"]', '2/chat,{"a":1}', '2/chat,12',
    '2/chat', '2/chat,12[', '3/chat,1["a"]', '2/chat,["a"]trailing',
)
#: ``(type, data, namespace, id)`` the start-up check encodes both ways.
ENCODE_SAMPLES: tuple[tuple[int, Any, str | None, int | None], ...] = (
    (sio_packet.ACK, [], "/chat", 0), (sio_packet.ACK, [{"ok": True}], "/chat", 12),
    (sio_packet.ACK, [1, "x"], "/", 7), (sio_packet.ACK, [None], None, 3),
    (sio_packet.EVENT, ["e", {"a": [1, 2]}], "/chat", None), (sio_packet.EVENT, ["e"], None, None),
    (sio_packet.EVENT, None, "/chat", None),
)


def decodes_as_upstream(text: str) -> bool | None:
    """Whether ``decode_event`` reads ``text`` as upstream's ``Packet`` decodes it (the same
    namespace, ack id and data, or both refuse it); None when it leaves the text to upstream."""
    ours: Any
    try:
        ours = decode_event(sio_packet.Packet.json, text)
    except ValueError:
        ours = ValueError
    if ours is None:
        return None
    try:
        pkt = sio_packet.Packet(encoded_packet=text)
    except ValueError:
        return ours is ValueError
    return (ours == (pkt.namespace, pkt.id, pkt.data) and pkt.packet_type == sio_packet.EVENT
            and not pkt.attachment_count)


def _decoded_as_upstream() -> bool:
    answers = [decodes_as_upstream(text) for text in DECODE_SAMPLES]
    # Every answer agrees, and the usual shapes are not all left to upstream.
    return False not in answers and sum(a is not None for a in answers) >= 5


def _encoded_as_upstream() -> bool:
    json = sio_packet.Packet.json
    return all(
        encode_plain(json, kind, data, namespace, id) == sio_packet.Packet(
            kind, data=data, namespace=namespace, id=id).encode()
        for kind, data, namespace, id in ENCODE_SAMPLES)


class PacketWithoutBinaryScan(sio_packet.Packet):
    """A packet class that does not walk the data it is built from for binary attachments
    (``uses_binary_events``); decoding a client's packet is unchanged."""

    uses_binary_events = False


_M = base_manager.BaseManager
_enter_room = upstream(_M, "basic_enter_room")
_leave_room = upstream(_M, "basic_leave_room")


class SidRoom(dict[str, str]):
    """A socket's own room in the room table: ``{sid: eio_sid}``, a plain dict where upstream
    makes a ``bidict`` (some 10 µs and a dozen Python calls at every connect).

    Nothing else enters it (``basic_enter_room`` refuses another sid a sid room), so the
    value-uniqueness a ``bidict`` keeps holds by construction. python-socketio reads a room's
    ``_fwdm`` (``get_participants``: a room's mapping) besides the mapping operations, and
    ``_invm`` only of the namespace's ``None`` room (``sid_from_eio_sid``), which stays a
    ``bidict`` (``ROOM_READS``, checked at start-up)."""

    __slots__ = ()

    @property
    def _fwdm(self) -> dict[str, str]:
        return self

    @property
    def _invm(self) -> dict[str, str]:
        return {eio_sid: sid for sid, eio_sid in self.items()}


#: The lines of python-socketio's managers that read a room's private attributes or make one.
ROOM_READS = [
    "participants = ns[room[0]]._fwdm.copy() if room[0] in ns else {}",
    "participants.update(ns[r]._fwdm if r in ns else {})",
    "participants = ns[room]._fwdm.copy() if room in ns else {}",
    "return self.rooms[namespace][None]._invm[eio_sid]",
    "self.rooms[namespace][room] = bidict()",  # basic_enter_room's, for any other room
]


def room_reads() -> list[str]:
    """Every line of python-socketio's server-side modules that reads a room's private
    attributes or names ``bidict``, besides ``base_manager``'s import of it."""
    names = ("base_manager", "manager", "async_manager", "pubsub_manager",
             "async_pubsub_manager", "redis_manager", "async_redis_manager", "base_server",
             "server", "async_server")
    lines = []
    for name in names:
        source = inspect.getsource(importlib.import_module(f"socketio.{name}"))
        lines += [line.strip() for line in source.splitlines()
                  if re.search(r"\._(fwdm|invm)\b|\bbidict\b", line)
                  and not line.startswith("from bidict import")]
    return lines


class RoomsBySid(socketio.AsyncManager):
    """A manager whose disconnect costs the rooms of the socket, not those of the namespace.

    ``BaseManager.basic_disconnect`` (5.18.1) copies every room of the namespace to find the
    ones the socket is in; every socket has a room of its own there, so each disconnect cost
    as much as the node's connections, and a node closing 18,000 at its shutdown spent
    minutes of CPU in it. A socket is in the namespace's ``None`` room and its own
    (``pre_connect``); the rooms it enters besides are kept here (``extra_rooms``, empty on
    a node whose rooms are its own room table), and ``basic_disconnect``, upstream's copied,
    leaves exactly those."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``(namespace, sid)``: the rooms entered besides ``None`` and the sid's own.
        self.extra_rooms: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        if room == sid and eio_sid is not None:
            # pre_connect's second step, a socket's own room: upstream's steps for a room
            # not there yet (its namespace made by the first step), a SidRoom for the bidict.
            rooms = self.rooms.get(namespace)
            if rooms is not None and room not in rooms:
                rooms[room] = SidRoom(((sid, eio_sid),))
                return
        _enter_room(self, sid, namespace, room, eio_sid=eio_sid)
        if room is not None and room != sid:
            self.extra_rooms.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        _leave_room(self, sid, namespace, room)
        extra = self.extra_rooms.get((namespace, sid))
        if extra is not None:
            extra.discard(room)
            if not extra:
                del self.extra_rooms[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """Upstream's (5.18.1), the socket's rooms known rather than searched for."""
        if namespace not in self.rooms:
            return
        extra = self.extra_rooms.get((namespace, sid), ())
        for room in (None, sid, *extra):
            self.basic_leave_room(sid, namespace, room)
        if sid in self.callbacks:
            del self.callbacks[sid]
        if namespace in self.pending_connect and \
                sid in self.pending_connect[namespace]:
            self.pending_connect[namespace].remove(sid)
            if len(self.pending_connect[namespace]) == 0:
                del self.pending_connect[namespace]
        if namespace in self.pending_disconnect and \
                sid in self.pending_disconnect[namespace]:
            self.pending_disconnect[namespace].remove(sid)
            if len(self.pending_disconnect[namespace]) == 0:
                del self.pending_disconnect[namespace]


_R = socketio.AsyncRedisManager


class RedisManagerHooks(_Hooks, socketio.AsyncRedisManager):
    """``socketio.AsyncRedisManager`` with its private hooks under public names."""

    HOOKS: ClassVar[dict[str, str]] = {
        "publish": "_publish",
        "listen": "_listen",
        "redis_connect": "_redis_connect",
    }
    #: ``_publish(self, data)``: publish one message (a dict) on the channel.
    publish = upstream(_R, "_publish")
    #: ``_listen(self)``: an async iterator of the channel's messages.
    listen = upstream(_R, "_listen")
    #: ``_redis_connect(self)``: connect ``redis`` and ``pubsub``.
    redis_connect = upstream(_R, "_redis_connect")


def listener_task(manager: socketio.AsyncPubSubManager) -> Any:
    """The listener task that ``AsyncPubSubManager.initialize`` started (``thread``)."""
    return manager.thread


def own_message_suffix(manager: socketio.AsyncPubSubManager) -> bytes:
    """How every message this manager publishes ends on the wire: its ``host_id``, the last
    key of each message dict, as the manager's JSON codec writes it. The listener drops its
    own messages (other than callbacks) by host id; ending with this, they can be dropped
    before decoding. Made by the codec itself, so it holds for any spacing."""
    encoded = manager.json.dumps({"host_id": manager.host_id})
    text = encoded.decode() if isinstance(encoded, bytes) else encoded
    return text[1:].encode()  # without the opening brace


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    signature(PIN, _S, "_engineio_server_class", ("self",)),
    signature(PIN, _S, "_handle_eio_message", ("self", "eio_sid", "data")),
    signature(PIN, _S, "_handle_event_internal",
              ("self", "server", "sid", "eio_sid", "data", "namespace", "id")),
    signature(PIN, _S, "_send_packet", ("self", "eio_sid", "pkt")),
    signature(PIN, _S, "_handle_connect", ("self", "eio_sid", "namespace", "data")),
    unchanged(PIN, _S, "_handle_connect", "c97c480cf777de36"),
    # event_sid, namespace_handler, ack_data: a client's EVENT, from message to handler.
    unchanged(PIN, _S, "_handle_eio_message", "bef50fc0e1635921"),
    unchanged(PIN, _S, "_handle_event", "65178105ef8b593d"),
    unchanged(PIN, _S, "_handle_event_internal", "472e8b723a12d507"),
    unchanged(PIN, _S, "_trigger_event", "01ba90cfa09ba43e"),
    unchanged(PIN, base_server.BaseServer, "_get_event_handler", "e18d9a6570aaaaf4"),
    unchanged(PIN, base_server.BaseServer, "_get_namespace_handler", "3672467a1c13f704"),
    *(assigned(PIN, base_server.BaseServer, name) for name in (
        "_binary_packet", "handlers", "async_handlers", "not_handled", "manager", "logger")),
    assigned(PIN, base_server.BaseServer, "namespace_handlers"),
    assigned(PIN, base_server.BaseServer, "namespaces"),
    holds(PIN, "what AsyncServer uses of its Engine.IO server (eio.X)",
          lambda: engine_uses() <= ENGINE_SURFACE,
          "it uses more of its engine than backend/realtime/engine.py implements"),
    assigned(PIN, base_server.BaseServer, "manager_initialized"),
    assigned(PIN, base_server.BaseServer, "environ"),
    assigned(PIN, base_server.BaseServer, "packet_class"),
    unchanged(PIN, _S, "_handle_eio_connect", "76704886d944a7e6"),
    present(PIN, sio_packet.Packet, "uses_binary_events"),
    # decode_event and encode_plain: upstream's decode and encode, mirrored.
    unchanged(PIN, sio_packet.Packet, "decode", "61ad7904b539f472"),
    unchanged(PIN, sio_packet.Packet, "encode", "513c45be75181da2"),
    present(PIN, sio_packet.Packet, "json"),
    holds(PIN, "decode_event reads a client's EVENT as Packet.decode does",
          _decoded_as_upstream, "decode_event answers otherwise than Packet.decode"),
    holds(PIN, "encode_plain writes a packet as Packet.encode does",
          _encoded_as_upstream, "encode_plain answers otherwise than Packet.encode"),
    unchanged(PIN, sio_packet.Packet, "__init__", "5fe2fa797e082c1d"),
    # RoomsBySid: its copy of basic_disconnect, and the only rooms pre_connect enters.
    unchanged(PIN, _M, "basic_disconnect", "2933b50bc4b2ea7b"),
    unchanged(PIN, _M, "basic_enter_room", "3f509586d2d7f47e"),
    unchanged(PIN, _M, "basic_leave_room", "e27f3eea06d1c6a6"),
    unchanged(PIN, _M, "pre_connect", "bfdba4c0c8f1bd8a"),
    # SidRoom: the room reads it answers are all there are.
    holds(PIN, "what its managers read of a room beyond a mapping (_fwdm, _invm)",
          lambda: room_reads() == ROOM_READS,
          "its managers read rooms otherwise than SidRoom answers"),
    *(assigned(PIN, _M, name) for name in (
        "rooms", "callbacks", "pending_connect", "pending_disconnect")),
    signature(PIN, _R, "_publish", ("self", "data")),
    signature(PIN, _R, "_listen", ("self",)),
    signature(PIN, _R, "_redis_connect", ("self",)),
    assigned(PIN, _R, "thread"),
    assigned(PIN, _R, "host_id"),
    assigned(PIN, _R, "channel"),
    assigned(PIN, base_manager.BaseManager, "json"),
    # The listener's loop (``_thread``): own messages dropped by host id, callbacks kept.
    unchanged(PIN, _R, "_thread", "fa8d075729aac64d"),
    unchanged(PIN, _R, "initialize", "e8a2b026ecea320f"),
]
