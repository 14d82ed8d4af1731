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

``PlainState`` is the app's ``State`` (``app.state``): upstream keeps the values in its private
``_state`` dict and reads them in ``State.__getattr__``, which Python calls only after the
ordinary lookup failed, an ``AttributeError`` made and formatted first (about 2 µs a read;
every connect read the app's state some eight times). ``PlainState`` keeps each value in
``_state`` as upstream does and also as a plain attribute of the instance, which the ordinary
lookup finds; deleting drops both. A value put in ``_state`` directly (nothing does for the
app's state) is still found by upstream's ``__getattr__``. Checks: upstream's three methods
fingerprinted, and a set, read, replaced and deleted value answering as upstream's.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import BaseRoute, Router, WebSocketRoute

from backend.compat.assumptions import Assumption, Pin, holds, unchanged, version

PIN = Pin("starlette", "1.10.0")
PINS = [PIN]

#: The scope keys Starlette sets on the way to a WebSocket route that ``enter_route`` skips.
SKIPPED_KEYS = frozenset({"starlette.exception_handlers"})

__all__ = ["SKIPPED_KEYS", "PlainState", "enter_route", "keys_starlette_sets"]


class PlainState(State):
    """Starlette's ``State`` whose values are also plain attributes (see the module doc)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__(state)
        for key, value in self._state.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: Any, value: Any) -> None:
        self._state[key] = value
        object.__setattr__(self, key, value)

    def __delattr__(self, key: Any) -> None:
        del self._state[key]
        self.__dict__.pop(key, None)


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


def _state_answers() -> bool:
    """A value set, read, replaced and deleted answers as on upstream's ``State``; one put
    in ``_state`` directly is still read."""
    answers = []
    for state in (State(), PlainState({"given": 0})):
        if type(state) is State:
            state.given = 0
        state.value = 1
        first = state.value
        state.value = 2
        second = state.value
        del state.value
        gone = not hasattr(state, "value")
        state._state["direct"] = 3
        answers.append((first, second, gone, state.direct, state.given, dict(state._state)))
    return answers[0] == answers[1]


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    unchanged(PIN, State, "__init__", "70c4e84357c3ea26"),
    unchanged(PIN, State, "__setattr__", "f1ce63b51a0009c4"),
    unchanged(PIN, State, "__getattr__", "6f45f283677a8c2d"),
    unchanged(PIN, State, "__delattr__", "32c4961eef6dea0d"),
    holds(PIN, "State keeps its values in _state", _state_answers,
          "PlainState answers otherwise than State (read State, then update PlainState)"),
    unchanged(PIN, Starlette, "__call__", "5bf3135c4e85b7f5"),
    unchanged(PIN, Router, "app", "1b1fa16c99a8ce6b"),
    holds(PIN, "the WebSocket scope keys Starlette sets on the way to a route", _same_keys,
          "differ from what enter_route sets (read Starlette.__call__, its middleware and "
          "Router.app, then update enter_route or SKIPPED_KEYS)"),
]
