from typing import Any

class Packet:
    packet_type: int
    data: Any
    def __init__(self, packet_type: int = ..., data: Any = ...,
                 encoded_packet: Any = ...) -> None: ...
