"""What the project uses of pywebpush 2.5.0."""

from typing import Any

class WebPusher:
    def __init__(self, subscription_info: dict[str, Any], requests_session: Any = ...,
                 aiohttp_session: Any = ..., verbose: bool = ...) -> None: ...
    def encode(self, data: bytes, content_encoding: str = ...) -> dict[str, Any]: ...
