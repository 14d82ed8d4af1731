"""How Socket.IO packets are encoded: orjson behind the ``json`` interface python-socketio
expects, and the packet class every Socket.IO frame of the node is built with."""

from __future__ import annotations

from typing import Any

import orjson

from backend.compat.socketio import PacketWithoutBinaryScan


class OrjsonCodec:
    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class Packet(PacketWithoutBinaryScan):
    """python-socketio's packet, with the codec above, and no binary check on what the node
    sends.

    The library walks a packet's whole data, at every level, looking for bytes to send as
    binary attachments, for every packet built from data (each ack, each fan-out frame): about
    11 µs for one message's dict, twice per message sent over Socket.IO (its ack and its
    broadcast). Nothing the node sends is binary (every payload is JSON from its serializers),
    so the walk is skipped (``uses_binary_events``). Packets from clients are decoded as
    before, binary attachments included (decoding does not read the flag). The server is given
    this class (``Server``), and the fan-out's dialects build their frames with it."""

    json = OrjsonCodec
