from typing import Any

class BaseServer:
    manager: Any
    eio: Any
    environ: dict[str, Any]
    packet_class: Any
    manager_initialized: bool
    def __getattr__(self, name: str) -> Any: ...
