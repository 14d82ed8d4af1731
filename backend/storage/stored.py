"""What a file store hands back for a download (both stores, and the service's port)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StoredFile:
    """How a door hands a stored object to a client: a local ``path`` to send, or a
    ``redirect`` to a short-lived link of the object store itself."""

    path: Path | None = None
    redirect: str | None = None
