"""The refusal table: one ChatError code, the same meaning on every door.

A refused connection is told with a code of its door: Socket.IO's connect error carries it as
``data.code``, a raw route closes with it, seed 003's route (``/api/v1/chat/ws/``) closes with
its own (1008 for every refusal of the client, as that seed says), and REST answers with the
HTTP status.

======================== ========= ==== ============== =======
ChatError code           Socket.IO raw  seed 003 route HTTP
======================== ========= ==== ============== =======
``credential_missing``   4001      4001 1008           401
``credential_invalid``   4002      4002 1008           401
``unauthorized``         4002      4002 1008           401
``not_found``            4003      4003 1008           404
``forbidden``            4004      4004 1008           403
``too_many_connections`` 4004      4004 1008           429
``shutting_down``        1001      1001 1001           503
``unavailable``          1011      1011 1011           503
``internal_error``       1011      1011 1011           500
any other                4004      4004 1008           its own
======================== ========= ==== ============== =======

A node shutting down answers 1001 ("going away": reconnect, to another node) on every door,
Socket.IO included. A fault of the server (the database away, a bug) is 1011, not a refusal of
the credential: clients drop their credential on 4002 (the dashboard signs out).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backend.realtime.closes import (
    CREDENTIAL_INVALID,
    CREDENTIAL_MISSING,
    DENIED,
    GOING_AWAY,
    NOT_FOUND,
    POLICY_VIOLATION,
    SERVER_FAULT,
)
from backend.service.errors import ChatError
from backend.service.faults import database_fault


@dataclass(frozen=True, slots=True)
class Refusal:
    """How each door tells one refusal."""

    #: ``data.code`` of the Socket.IO connect error.
    socketio: int
    #: The close code of the raw routes.
    raw: int
    #: The close code of seed 003's route.
    seed_003: int
    #: The HTTP status of REST.
    http: int


def _refusal(code: int, seed_003: int, http: int) -> Refusal:
    return Refusal(socketio=code, raw=code, seed_003=seed_003, http=http)


REFUSALS: dict[str, Refusal] = {
    "credential_missing": _refusal(CREDENTIAL_MISSING, POLICY_VIOLATION, 401),
    "credential_invalid": _refusal(CREDENTIAL_INVALID, POLICY_VIOLATION, 401),
    "unauthorized": _refusal(CREDENTIAL_INVALID, POLICY_VIOLATION, 401),
    "not_found": _refusal(NOT_FOUND, POLICY_VIOLATION, 404),
    "forbidden": _refusal(DENIED, POLICY_VIOLATION, 403),
    "too_many_connections": _refusal(DENIED, POLICY_VIOLATION, 429),
    "shutting_down": _refusal(GOING_AWAY, GOING_AWAY, 503),
    "unavailable": _refusal(SERVER_FAULT, SERVER_FAULT, 503),
    "internal_error": _refusal(SERVER_FAULT, SERVER_FAULT, 500),
}


def refusal_for(error: ChatError) -> Refusal:
    """The table's row of ``error``; a code not in it is access denied, with its own status."""
    return REFUSALS.get(error.code) or _refusal(DENIED, POLICY_VIOLATION, error.status)


def internal_error() -> ChatError:
    """A bug of the server, as clients see it (its traceback is in the log)."""
    return ChatError("internal_error", "Internal server error", 500)


def server_fault(exc: BaseException, log: logging.Logger, *, door: str, action: str) -> ChatError:
    """What an exception that is not a ChatError becomes on a door: a database fault is
    ``unavailable`` (logged once, as a warning, by ``database_fault``); anything else is a bug,
    logged with its traceback on the door's ``log``, and ``internal_error``."""
    fault = database_fault(exc, door=door, action=action)
    if fault is not None:
        return fault
    log.error("%s %s failed", door, action[:120], exc_info=exc)
    return internal_error()
