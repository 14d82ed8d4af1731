"""WebSocket close codes, one place: the doors refuse connections with them (through the refusal
table, backend/doors/refusals.py) and the hub closes live connections with them (a device
deactivated, a role changed, the node shutting down).

4001 to 4004 are CONTRACT section 4's; the others are RFC 6455's.
"""

from __future__ import annotations

CREDENTIAL_MISSING = 4001
#: Invalid or inactive (a deactivated device's live sockets close with it too).
CREDENTIAL_INVALID = 4002
#: The reason of a close with CREDENTIAL_INVALID because the connection's login session was
#: logged out.
LOGGED_OUT = "Logged out"
NOT_FOUND = 4003
DENIED = 4004
#: The node is shutting down: reconnect (to another node).
GOING_AWAY = 1001
#: Seed 003's route refuses every connection (credential, participant, not found) with it.
POLICY_VIOLATION = 1008
#: A fault of the server (the database away, a bug), not a refusal of the credential.
SERVER_FAULT = 1011
#: Reconnect now: what the connection may reach has changed (a role given or taken away).
SERVICE_RESTART = 1012
#: The closes after which the client is to come back (it did nothing wrong).
COME_BACK = frozenset({GOING_AWAY, SERVICE_RESTART})
