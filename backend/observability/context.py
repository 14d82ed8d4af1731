"""What a log line knows about where it comes from: the HTTP request or WebSocket upgrade it
serves, and the connection (room member) it acts for.

Context variables, so each request's task and each connection's task carry their own; tasks a
connection starts inherit them.
"""

from __future__ import annotations

from contextvars import ContextVar

#: The request id of the HTTP request or WebSocket upgrade being served (request_ids.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
#: The member id (``sio:<sid>``, ``raw:<node>:<n>``) of the connection being served.
CONNECTION_ID: ContextVar[str | None] = ContextVar("connection_id", default=None)


def bind_connection(member_id: str) -> None:
    """Name the connection the current task serves: its later log lines carry
    ``connection_id``. Not reset: the task belongs to that connection."""
    CONNECTION_ID.set(member_id)
