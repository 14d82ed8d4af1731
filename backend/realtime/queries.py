"""A request's query string, parsed once for every reader of it: the Engine.IO request handler,
the WebSocket session's checks and the Socket.IO connect handlers each read the same query,
and the clients of one kind send the same text (``EIO=4&transport=websocket``), so its parse
is kept by that text.

What is handed out is read-only (a mapping of tuples): it is shared by every request that
sent that text.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qs

#: Query texts kept (a query holding a credential is its client's own: those come and go).
KEPT = 256

Query = Mapping[str, tuple[str, ...]]


@lru_cache(maxsize=KEPT)
def parsed_query(text: str) -> Query:
    """``parse_qs(text)`` (blank values left out), each name's values as a tuple."""
    return MappingProxyType({name: tuple(values) for name, values in parse_qs(text).items()})


def first_values(text: str) -> dict[str, str]:
    """Each name's first value: a new dict, the caller's own."""
    return {name: values[0] for name, values in parsed_query(text).items()}
