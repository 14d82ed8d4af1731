"""starlette 1.10.0 (pyproject.toml's pin): what its app and router put in a WebSocket's scope.

``backend/raw/routes.py`` (``RawRoutes``) hands a raw WebSocket upgrade straight to its route's
ASGI app, skipping Starlette's app, middleware and router: measured with the benchmark's idle
scenario (1,000 raw clients), 17.3 KB per connection this way against 20.5 KB through
Starlette, 3.2 KB saved on each open connection. It sets what Starlette would have set on the
way (``enter_route``), mirroring ``Starlette.__call__`` (``scope["app"]``), ``Router.app``
(``scope["router"]``, ``scope["route"]``) and ``BaseRoute.matches`` (the route's child scope,
public). One key is left out on purpose: ``starlette.exception_handlers``
(``ExceptionMiddleware``), as the doors handle their own errors (backend/raw/adapter.py).
A check runs a one-route Starlette app and compares the keys it sets with these.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Router, WebSocketRoute

from backend.compat.assumptions import Assumption, Pin, holds, unchanged, version

PIN = Pin("starlette", "1.10.0")
PINS = [PIN]

#: The scope keys Starlette sets on the way to a WebSocket route that ``enter_route`` skips.
SKIPPED_KEYS = frozenset({"starlette.exception_handlers"})

__all__ = ["SKIPPED_KEYS", "enter_route", "keys_starlette_sets"]


def enter_route(scope: MutableMapping[str, Any], app: Starlette, route: BaseRoute,
                child_scope: MutableMapping[str, Any]) -> None:
    """Fill ``scope`` as Starlette's app and router would have on the way to ``route``, whose
    ``matches`` returned ``child_scope``."""
    scope["app"] = app
    scope.setdefault("router", app.router)
    scope.update(child_scope)
    scope["route"] = route


def keys_starlette_sets() -> set[str]:
    """The keys Starlette adds to a WebSocket scope on the way to its route, found by running a
    one-route app (it reaches the route without suspending: the coroutine is driven here)."""
    seen: dict[str, Any] = {}

    class Probe:
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.update(scope)

    async def nothing(*_: Any) -> Any:
        raise AssertionError("not called")

    scope: dict[str, Any] = {"type": "websocket", "path": "/probe", "root_path": "",
                             "query_string": b"", "headers": [], "scheme": "ws"}
    given = set(scope)
    app = Starlette(routes=[WebSocketRoute("/probe", Probe())])
    coroutine = app(scope, nothing, nothing)
    try:
        coroutine.send(None)
    except StopIteration:
        pass
    else:
        coroutine.close()
        raise RuntimeError("Starlette suspended on the way to the route")
    return set(seen) - given


def _same_keys() -> bool:
    route = WebSocketRoute("/probe", lambda *args: None)
    scope: dict[str, Any] = {"type": "websocket", "path": "/probe", "root_path": ""}
    given = set(scope)
    _, child_scope = route.matches(scope)
    enter_route(scope, Starlette(routes=[route]), route, child_scope)
    return keys_starlette_sets() == (set(scope) - given) | SKIPPED_KEYS


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    unchanged(PIN, Starlette, "__call__", "5bf3135c4e85b7f5"),
    unchanged(PIN, Router, "app", "1b1fa16c99a8ce6b"),
    holds(PIN, "the WebSocket scope keys Starlette sets on the way to a route", _same_keys,
          "differ from what enter_route sets (read Starlette.__call__, its middleware and "
          "Router.app, then update enter_route or SKIPPED_KEYS)"),
]
