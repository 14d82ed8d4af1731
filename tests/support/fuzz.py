"""What the fuzz tests share: hypothesis strategies of arbitrary JSON and of payloads shaped
like a route's or an event's own (its field names with odd values), their settings, and the
server-log check.

``FUZZ_EXAMPLES`` (an integer, default 1) multiplies every fuzz test's number of examples:
``FUZZ_EXAMPLES=20 .venv/bin/pytest tests/test_fuzz_*.py`` for a long run. Runs are
derandomized: the same code and the same number give the same inputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: The fuzz server's Telegram secret, Instagram app secret and verify token.
FUZZ_WEBHOOK_SECRET = "fuzz-webhook-secret"
SCALE = max(1, int(os.environ.get("FUZZ_EXAMPLES", "1") or 1))


def fuzz_settings(examples: int) -> settings:
    """Bounded and reproducible: ``examples`` (times FUZZ_EXAMPLES), derandomized, no
    deadline, no shrinking time-outs; the fixtures (a server, a connection) are reused across
    examples on purpose."""
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- arbitrary JSON ---------------------------------------------------------------------------

#: Numbers that sit on the edges of the types a server may hold them in.
EDGE_INTEGERS = st.sampled_from([
    0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
    -(2**63), -(2**63) - 1, 10**30, -(10**30),
])
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 0.5, 1e308, -1e308, 5e-324, 1.0e16, 2.0**63])
EDGE_TEXT = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\u200b", "\ufeff", "😀", "\U0001d54f" * 3, "\r\n", "%s%n", "{}",
    "[]", "null", "true", "1", "-1", "1e999", "0x10", "9" * 40, " 12 ", "١٢", "²", "<script>",
    "' OR 1=1 --", "../../etc/passwd", "\\u0000", "x" * 300,
])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    EDGE_INTEGERS,
    st.floats(allow_nan=False, allow_infinity=False),
    EDGE_FLOATS,
    st.text(max_size=40),
    EDGE_TEXT,
)

#: Any JSON value: scalars, nested lists and objects (odd keys included).
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), EDGE_TEXT), children, max_size=5),
    ),
    max_leaves=20,
)


class Real(str):
    """A placeholder for the id of an object that exists only once the test runs (strategies
    are built before): ``resolve`` puts the real id in, an integer for a ``Real`` and a string
    of digits for a plain string copy of one."""

    def __new__(cls, name: str, index: int) -> Real:
        return super().__new__(cls, f"<real {name} {index}>")


def real_ids(*names: str, count: int = 2) -> dict[str, list[Real]]:
    return {name: [Real(name, i) for i in range(count)] for name in names}


def resolve(value: Any, table: Mapping[str, list[Any]]) -> Any:
    """``value`` with every placeholder replaced by the real id ``table`` gives its name."""
    if isinstance(value, str):
        if not value.startswith("<real "):
            return value
        _, name, index = value.rstrip(">").split(" ")
        options = table.get(name) or [1]
        real = options[int(index) % len(options)]
        return real if isinstance(value, Real) else str(real)
    if isinstance(value, dict):
        return {resolve(k, table): resolve(v, table) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(resolve(item, table) for item in value)
    return value


URL = st.sampled_from(["https://example.com/a.png", "https://example.com/f.pdf", "x"])

#: Values a client following the docs would send, by field name.
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "content": st.text(min_size=1, max_size=40),
    "status": st.sampled_from(["delivered", "read"]),
    "emoji": st.sampled_from(["\U0001f44d", "\u2764\ufe0f", "ok"]),
    "message_type": st.sampled_from(["text", "image", "file"]),
    "media_url": URL,
    "file_url": URL,
    "file_name": st.text(max_size=12),
    "file_size": st.integers(0, 10**6),
    "file_type": st.sampled_from(["image/png", "application/pdf", ""]),
    "file": st.fixed_dictionaries({"url": URL}, optional={
        "name": st.text(max_size=12), "size": st.integers(0, 10**6),
        "type": st.sampled_from(["image/png", ""])}),
    "metadata": st.dictionaries(st.text(max_size=6), scalars, max_size=3),
    "client_msg_id": st.text(min_size=1, max_size=64),
    "is_typing": st.booleans(),
    "is_urgent": st.booleans(),
    "limit": st.integers(1, 100),
    "offset": st.integers(0, 20),
    "cursor": st.none(),
    "title": st.text(max_size=30),
    "subject": st.text(max_size=30),
    "kind": st.sampled_from(["support", "group"]),
    "role": st.sampled_from(["user", "agent", "admin"]),
    "platform": st.sampled_from(["ios", "android"]),
    "password": st.text(min_size=8, max_size=20),
}


def good(name: str, ids: Iterable[Any] = ()) -> st.SearchStrategy[Any]:
    """What a client following the docs would send in a field called ``name``."""
    known = list(ids)
    if name.endswith("_ids") or name == "mentions":
        return st.lists(good(name[:-1], known), max_size=4)
    if name.endswith("_id"):
        if known:
            return st.one_of(st.sampled_from(known), st.sampled_from(known).map(str))
        return st.integers(1, 50)
    return GOOD.get(name, st.text(max_size=40))


#: A wrong value for any field.
ODD = st.one_of(json_values, EDGE_TEXT, EDGE_INTEGERS, st.integers(-5, 60).map(str))


def shaped(names: Iterable[str], ids: Mapping[str, Iterable[Any]] | None = None,
           fixed: Mapping[str, Any] | None = None,
           values: Mapping[str, st.SearchStrategy[Any]] | None = None,
           ) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the fields ``names``: either all well-formed (the handler's happy
    path) or some odd, plus sometimes unknown fields; ``fixed`` fields are always there and
    ``values`` overrides what is well-formed for a field."""
    ids = ids or {}
    names = list(names)
    required = {name: st.just(value) for name, value in (fixed or {}).items()}
    goods = {name: good(name, ids.get(name, ())) for name in names}
    goods.update({name: value for name, value in (values or {}).items() if name in goods})
    wellformed = st.fixed_dictionaries(required, optional=goods)
    fuzzy = st.fixed_dictionaries(
        required, optional={name: st.one_of(value, value, ODD) for name, value in goods.items()})
    extra = st.dictionaries(st.text(max_size=8), json_values, max_size=2)
    return st.one_of(wellformed, st.builds(lambda b, e: {**e, **b}, fuzzy, extra))


def body_fields(schema: Mapping[str, Any], components: Mapping[str, Any]) -> list[str]:
    """The property names of an OpenAPI request body schema (following one ``$ref``)."""
    ref = schema.get("$ref", "")
    if ref:
        schema = components.get(ref.rsplit("/", 1)[-1], {})
    return sorted(schema.get("properties", {}))


# -- the server log ---------------------------------------------------------------------------

_FAULT = re.compile(r"Traceback|Exception|Error in ASGI|exceptions? in ", re.IGNORECASE)


def faults(log: str) -> list[str]:
    """Lines of a server log that tell of an exception (a traceback, a logged failure)."""
    return [line for line in log.splitlines() if _FAULT.search(line)]
