"""The fan-out's reader of the conversation event log: what a node replays to fill a gap (a
lost Redis subscription, a lost publish), as fan-out envelopes."""

from __future__ import annotations

from typing import Any, Protocol

from backend.realtime.sink import envelope_of
from backend.service.events import Event


class LogSource(Protocol):
    """What the node reads of the conversation event log (the chat service)."""

    async def log_position(self, conversation_id: int) -> int: ...

    async def replay_page(self, conversation_id: int,
                          after: int) -> tuple[list[Event], int | None]: ...


class LogReader:
    """The fan-out's ``EventLogReader`` over the chat service's log: replays as envelopes
    (no publish stamp: a replay is not measured as fan-out latency)."""

    def __init__(self, source: LogSource) -> None:
        self.source = source

    async def log_position(self, conversation_id: int) -> int:
        return await self.source.log_position(conversation_id)

    async def replay_envelopes(self, conversation_id: int, after: int,
                               ) -> tuple[list[tuple[str, dict[str, Any]]], int | None]:
        replayed, next_after = await self.source.replay_page(conversation_id, after)
        out = []
        for event in replayed:
            envelope = envelope_of(event)
            envelope["published_at"] = None
            out.append((event.name, envelope))
        return out, next_after
