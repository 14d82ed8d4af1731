"""How Socket.IO packets are encoded: orjson behind the ``json`` interface python-socketio
expects, and the packet class every Socket.IO frame of the node is built with."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import orjson
from socketio import packet as sio_packet

from backend.compat.socketio import PacketWithoutBinaryScan, encode_plain

T = TypeVar("T")
V = TypeVar("V")


class OrjsonCodec:
    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class SharedEncodings:
    """Values many connections are sent, encoded once for all of them: the events a
    reconnect storm's readers of one point each get (a Socket.IO ``join`` ack's JSON
    fragment, a raw door's frames). Keyed by the value's identity and how it is encoded; a
    value is held while its encoding is, so its ``id`` is not reused meanwhile; the oldest go
    past ``most``. The values must not change once encoded."""

    def __init__(self, most: int = 32) -> None:
        self.most = most
        self._held: dict[tuple[int, Hashable], tuple[Any, Any]] = {}

    def once(self, value: V, how: Hashable, encode: Callable[[V], T]) -> T:
        """``encode(value)``, the same result for every call with this very value and ``how``."""
        key = (id(value), how)
        held = self._held.get(key)
        if held is not None and held[0] is value:
            encoded: T = held[1]
            return encoded
        encoded = encode(value)
        while len(self._held) >= self.most:
            del self._held[next(iter(self._held))]  # the oldest (dicts keep insertion order)
        self._held[key] = (value, encoded)
        return encoded

    def fragment(self, value: Any) -> orjson.Fragment:
        """``value`` as a JSON fragment that a packet's encoding copies as it is."""
        return self.once(value, "json", _fragment)


def _fragment(value: Any) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


class Packet(PacketWithoutBinaryScan):
    """python-socketio's packet, with the codec above, and binary attachments found only when
    the JSON encoding fails.

    The library walks a packet's whole data, at every level, looking for bytes to send as
    binary attachments, for every packet built from data (each ack, each fan-out frame): about
    11 µs for one message's dict, twice per message sent over Socket.IO (its ack and its
    broadcast). So the packet skips the walk when it is built (``PacketWithoutBinaryScan``)
    and ``encode`` tries orjson first: it refuses bytes (a ``TypeError``), and only then, for an
    EVENT or ACK whose data does hold bytes, is the packet made a BINARY_EVENT or BINARY_ACK
    and encoded the library's way, its placeholders in the text and each attachment a frame
    of its own. The node's own payloads (JSON from its serializers) pay nothing for it; a
    packet with bytes pays one failed JSON encoding. A flag set on the generic emit and ack
    paths would cost as little, but would leave out any path not flagged; this one holds
    wherever a packet is encoded. Packets from clients are decoded as before, binary
    attachments included (decoding does not read the flag). The server is given this class
    (``Server``), and the fan-out's dialects build their frames with it."""

    json = OrjsonCodec

    @classmethod
    def encoded(cls, packet_type: int, data: Any, namespace: str | None = None,
                id: int | None = None) -> Any:
        """``cls(packet_type, data=data, namespace=namespace, id=id).encode()``: for data
        orjson encodes (the node's own payloads), written without building the packet."""
        try:
            return encode_plain(cls.json, packet_type, data, namespace, id)
        except TypeError:  # bytes in the data, say: the packet's own encode decides
            return cls(packet_type, data=data, namespace=namespace, id=id).encode()

    def encode(self) -> Any:
        """The packet's text, or for binary data a list: the text, then each attachment."""
        try:
            return super().encode()
        except TypeError:
            binary = _BINARY.get(self.packet_type)
            if binary is None or not self.data_is_binary(self.data):
                raise
            self.packet_type = binary
            return super().encode()


#: The binary packet type of each type that may carry binary attachments.
_BINARY = {sio_packet.EVENT: sio_packet.BINARY_EVENT, sio_packet.ACK: sio_packet.BINARY_ACK}
