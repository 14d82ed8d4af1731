"""python-engineio 4.15.1 (pyproject.toml's pin): what little of it the node still meets.

The node's Engine.IO is its own (backend/realtime/engine.py); python-engineio stays installed
because python-socketio imports it, and two of its pieces reach the node through python-socketio:

- the disconnect reasons: python-socketio's servers take theirs from ``engineio.Server.reason``
  (and hand them to the namespaces' disconnect handlers), so the engine's ``Reason`` names the
  same strings (``REASONS``);
- the packets python-socketio's manager builds for a broadcast (``engineio.packet.Packet``),
  handed to the engine's ``send_packet``, which reads their ``packet_type`` and ``data``.
"""

from __future__ import annotations

import engineio
from engineio import packet as eio_packet

from backend.compat.assumptions import Assumption, Pin, assigned, holds, version

PIN = Pin("python-engineio", "4.15.1")
PINS = [PIN]

#: The disconnect reasons, as ``engineio.Server.reason`` and backend/realtime/engine.py's
#: ``Reason`` name them.
REASONS = {"SERVER_DISCONNECT": "server disconnect", "CLIENT_DISCONNECT": "client disconnect",
           "PING_TIMEOUT": "ping timeout", "TRANSPORT_CLOSE": "transport close",
           "TRANSPORT_ERROR": "transport error"}


def _same_reasons() -> bool:
    upstream = engineio.Server.reason
    return all(getattr(upstream, name, None) == value for name, value in REASONS.items())


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    holds(PIN, "engineio.Server.reason (the disconnect reasons)", _same_reasons,
          "its reasons are not REASONS"),
    assigned(PIN, eio_packet.Packet, "packet_type"),
    assigned(PIN, eio_packet.Packet, "data"),
]
