"""What the project assumes of a library's internals, as data, and the checks of it.

Each compat module (one per library) names the version it was written against (``Pin``) and
lists its ``Assumption``s: a private attribute present, a method with the parameters the
project calls or overrides it with, an attribute the library's own code assigns on its
instances, the source of an upstream function the project copies or mirrors (a fingerprint:
a new version that changes it must be read again). ``check`` runs them; a node does not start
when one fails (``backend.compat.check_all``).
"""

from __future__ import annotations

import dis
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: A check returns None when the assumption holds, else what is wrong (a short phrase).
Check = Callable[[], "str | None"]


@dataclass(frozen=True, slots=True)
class Pin:
    """A distribution and the version (pyproject.toml's pin) its compat module was written for."""

    distribution: str
    version: str

    def installed(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None


@dataclass(frozen=True, slots=True)
class Assumption:
    """One thing the project relies on in ``pin``'s library: ``what`` (named as upstream names
    it), held when ``check`` returns None."""

    pin: Pin
    what: str
    check: Check


@dataclass(frozen=True, slots=True)
class Failure:
    """An assumption that does not hold on the installed library."""

    pin: Pin
    installed: str | None
    what: str
    problem: str

    def __str__(self) -> str:
        installed = self.installed or "not installed"
        return (f"{self.pin.distribution} {installed} (pinned {self.pin.version}): "
                f"{self.what}: {self.problem}")


class IncompatibleLibrary(RuntimeError):
    """Raised by ``backend.compat.check_all`` when an installed library is not what the
    project's compat modules were written for."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        lines = "\n".join(f"  - {failure}" for failure in failures)
        super().__init__(
            "the installed libraries do not match what this node relies on "
            f"(see docs/upgrading.md):\n{lines}")


def check(assumptions: Iterable[Assumption]) -> list[Failure]:
    """Every assumption that fails (a check that raises fails with its error)."""
    failures = []
    for assumption in assumptions:
        try:
            problem = assumption.check()
        except Exception as exc:
            problem = f"check raised {type(exc).__name__}: {exc}"
        if problem is not None:
            failures.append(Failure(assumption.pin, assumption.pin.installed(), assumption.what,
                                    problem))
    return failures


# -- the kinds of checks -------------------------------------------------------------------------


def version(pin: Pin) -> Assumption:
    """The installed version is the pinned one."""

    def run() -> str | None:
        installed = pin.installed()
        if installed is None:
            return "not installed"
        return None if installed == pin.version else f"installed {installed}, not {pin.version}"

    return Assumption(pin, "installed version", run)


def importable(pin: Pin, module: str, *names: str) -> Assumption:
    """``module`` imports and has ``names``."""

    def run() -> str | None:
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            return f"cannot be imported ({exc})"
        missing = [name for name in names if not hasattr(imported, name)]
        return f"has no {', '.join(missing)}" if missing else None

    label = f"{module} ({', '.join(names)})" if names else module
    return Assumption(pin, label, run)


def _qualname(owner: Any, name: str) -> str:
    return f"{getattr(owner, '__qualname__', getattr(owner, '__name__', owner))}.{name}"


def present(pin: Pin, owner: Any, name: str) -> Assumption:
    """``owner`` (a class or module) has the attribute ``name``."""
    return Assumption(pin, _qualname(owner, name),
                      lambda: None if hasattr(owner, name) else "is missing")


def signature(pin: Pin, owner: Any, name: str, parameters: tuple[str, ...]) -> Assumption:
    """``owner.name`` is a callable whose parameters are named ``parameters`` (in order; ``self``
    included for a method looked up on its class)."""

    def run() -> str | None:
        if not hasattr(owner, name):
            return "is missing"
        found = tuple(inspect.signature(getattr(owner, name)).parameters)
        if found != parameters:
            return f"has parameters ({', '.join(found)}), expected ({', '.join(parameters)})"
        return None

    return Assumption(pin, f"{_qualname(owner, name)}({', '.join(parameters)})", run)


def accepts(pin: Pin, owner: Any, name: str, *parameters: str) -> Assumption:
    """``owner.name`` is a callable that takes (at least) the named ``parameters``."""

    def run() -> str | None:
        if not hasattr(owner, name):
            return "is missing"
        found = inspect.signature(getattr(owner, name)).parameters
        missing = [parameter for parameter in parameters if parameter not in found]
        return f"has no parameter {', '.join(missing)}" if missing else None

    return Assumption(pin, f"{_qualname(owner, name)}(..., {', '.join(parameters)})", run)


def assigned(pin: Pin, cls: type, name: str) -> Assumption:
    """Instances of ``cls`` get the attribute ``name`` from the library's own code (a method
    of ``cls`` or one of its bases, or a function nested in one, stores it: ``self.name =
    ...``)."""

    def run() -> str | None:
        if any(_stores(code, name) for klass in cls.__mro__ if klass is not object
               for code in _codes(klass)):
            return None
        return f"is no longer assigned by {cls.__name__} (no `self.{name} = ...`)"

    return Assumption(pin, f"{cls.__qualname__}().{name}", run)


@functools.cache
def _codes(klass: type) -> tuple[types.CodeType, ...]:
    """The compiled code of ``klass``'s own methods and of the functions nested in them. Read
    from code rather than from source: ``inspect.getsource`` of a class parses its whole
    module, which made these checks most of a node's start-up."""
    found: list[types.CodeType] = []
    pending = [code for value in vars(klass).values() for code in _codes_of(value)]
    while pending:
        code = pending.pop()
        found.append(code)
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return tuple(found)


def _stores(code: types.CodeType, name: str) -> bool:
    """``code`` assigns ``self.name``."""
    return name in code.co_names and name in _self_stores(code)


def _self_stores(code: types.CodeType) -> set[str]:
    """The attributes ``code`` assigns on ``self``: a ``STORE_ATTR`` right after ``self`` is
    loaded (a local, or a closure's cell in a nested function)."""
    names: set[str] = set()
    loaded: object = None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "STORE_ATTR" and loaded == "self":
            names.add(instruction.argval)
        argval = instruction.argval
        # A combined load (newer Pythons) names its operands in a tuple, the last loaded last.
        loaded = argval[-1] if isinstance(argval, tuple) and argval else argval
        if not instruction.opname.startswith("LOAD_"):
            loaded = None
    return names


def self_assigned(klass: type) -> frozenset[str]:
    """Every attribute that ``klass``'s own code (its methods and the functions nested in
    them, not its bases) assigns as ``self.name = ...``."""
    return frozenset(name for code in _codes(klass) for name in _self_stores(code))


def _codes_of(value: Any) -> list[types.CodeType]:
    """The code objects of a class attribute: a function's, a static or class method's, a
    property's accessors'."""
    if isinstance(value, property):
        return [code for accessor in (value.fget, value.fset, value.fdel)
                for code in _codes_of(accessor)]
    function = getattr(value, "__func__", value)
    code = getattr(function, "__code__", None)
    return [code] if isinstance(code, types.CodeType) else []


def fingerprint(function: Any) -> str:
    """The first 16 hex digits of the SHA-256 of ``function``'s source."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def unchanged(pin: Pin, owner: Any, name: str, expected: str) -> Assumption:
    """The source of upstream's ``owner.name`` is the one the project's copy or mirror was
    made from (``fingerprint``); a new version that changes it must be read again."""

    def run() -> str | None:
        if not hasattr(owner, name):
            return "is missing"
        found = fingerprint(getattr(owner, name))
        if found != expected:
            return (f"source changed (fingerprint {found}, the copy was made from {expected}): "
                    "compare it with the project's copy, then update the fingerprint")
        return None

    return Assumption(pin, f"source of {_qualname(owner, name)}", run)


def holds(pin: Pin, what: str, predicate: Callable[[], bool], problem: str) -> Assumption:
    """A behaviour of the library, tried: ``predicate`` returns True."""
    return Assumption(pin, what, lambda: None if predicate() else problem)


def upstream(owner: Any, name: str) -> Any:
    """``owner.name``, for binding at import time; when it is missing, a stand-in that raises
    if called, so that importing the project still works and the start-up check
    (``backend.compat.check_all``) reports what is missing instead of an import error."""
    try:
        return getattr(owner, name)
    except AttributeError:
        qualname = _qualname(owner, name)

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"{qualname} is missing (see backend.compat.check_all)")

        return missing
