from typing import Any

CONNECT: int
DISCONNECT: int
EVENT: int
ACK: int
CONNECT_ERROR: int
BINARY_EVENT: int
BINARY_ACK: int
packet_names: list[str]

class Packet:
    uses_binary_events: bool
    json: Any
    packet_type: int
    data: Any
    namespace: str | None
    id: int | None
    attachment_count: int
    attachments: list[bytes]
    def __init__(self, packet_type: int = ..., data: Any = ..., namespace: str | None = ...,
                 id: int | None = ..., binary: bool | None = ...,
                 encoded_packet: str | bytes | None = ...) -> None: ...
    def encode(self) -> Any: ...
    def decode(self, encoded_packet: str | bytes) -> int: ...
    def add_attachment(self, attachment: bytes) -> bool: ...
    def data_is_binary(self, data: Any) -> bool: ...
