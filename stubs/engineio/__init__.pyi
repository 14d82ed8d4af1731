from typing import Any

from engineio import packet as packet

class Server:
    reason: Any
    def __getattr__(self, name: str) -> Any: ...
