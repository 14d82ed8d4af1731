"""One boundary for the libraries' internals.

Every private attribute, private method, private module, copied upstream function or
undocumented behaviour of a library that the project relies on is reached through this
package, one module per library (``uvicorn``, ``websockets``, ``starlette``, ``tortoise``
with its aiosqlite and asyncpg drivers, ``socketio``, ``engineio``). Each module names the
version it was written against (the pin of pyproject.toml) and lists what it assumes of it as
data (``ASSUMPTIONS``, see ``backend/compat/assumptions.py``). ``check_all`` runs every check;
the node refuses to start when one fails (``backend.app.create_app``, ``confab serve``), naming
the library, its installed and pinned versions and the missing piece. docs/upgrading.md says
how to bump a pin.
"""

from __future__ import annotations

import importlib
import logging

from backend.compat.assumptions import Assumption, Failure, IncompatibleLibrary, Pin, check

#: The compat modules, one per library.
MODULES = ("uvicorn", "websockets", "starlette", "tortoise", "socketio", "engineio", "jwt")

__all__ = ["MODULES", "IncompatibleLibrary", "assumptions", "check_all", "failures", "pins"]


def _modules() -> list[object]:
    return [importlib.import_module(f"backend.compat.{name}") for name in MODULES]


def pins() -> list[Pin]:
    """Every distribution whose internals the project relies on, with its pinned version."""
    return [pin for module in _modules() for pin in module.PINS]  # type: ignore[attr-defined]  # each module has it


def assumptions() -> list[Assumption]:
    """Every assumption of every compat module."""
    return [a for module in _modules() for a in module.ASSUMPTIONS]  # type: ignore[attr-defined]  # likewise


def failures() -> list[Failure]:
    """The assumptions that do not hold on the installed libraries. The checks make
    parsers with no client behind them: the lines they would log as connections ("connection
    open") are not written."""
    lines = logging.getLogger("websockets.server")
    level = lines.level
    lines.setLevel(max(level, logging.WARNING))
    try:
        return check(assumptions())
    finally:
        lines.setLevel(level)


def check_all() -> None:
    """Raise ``IncompatibleLibrary`` naming every assumption that fails (a few ms; run once
    at start-up, before serving)."""
    found = failures()
    if found:
        raise IncompatibleLibrary(found)
