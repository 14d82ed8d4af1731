"""How Socket.IO packets are encoded: orjson behind the ``json`` interface python-socketio
expects, and the packet class every Socket.IO frame of the node is built with."""

from __future__ import annotations

from typing import Any

import orjson
from socketio import packet as sio_packet


class OrjsonCodec:
    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class Packet(sio_packet.Packet):
    """python-socketio's packet, with the codec above, and a binary check that stops at the
    first binary item.

    The library's check builds a list at every level of the data and folds it with a lambda,
    for every packet built from data (each ack, each event to one socket): a few percent of a
    Socket.IO node's CPU. Same answer, ``any`` instead. The server is given this class
    (``Server``), and the fan-out's dialects build their frames with it."""

    json = OrjsonCodec

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        if isinstance(data, (bytes, bytearray)):
            return True
        if isinstance(data, list):
            return any(map(cls.data_is_binary, data))
        if isinstance(data, dict):
            return any(map(cls.data_is_binary, data.values()))
        return False
