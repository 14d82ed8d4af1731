"""The import layers of the code, held against its imports (every import: module level,
inside functions, under TYPE_CHECKING). A module imports only from its own layer or below,
and no modules import each other in a circle. docs/architecture.md draws the same layers."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "models", "namespaces")

#: Bottom to top. A module belongs to the last (most specific) prefix that names it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("models", "backend.settings", "backend.observability", "backend.compat")),
    ("storage", ("backend.storage",)),
    ("service", ("backend.service",)),
    ("service users", ("backend.auth", "backend.integrations")),
    ("real-time spine", ("backend.realtime",)),
    ("cluster", ("backend.cluster",)),
    ("doors", ("backend.doors", "backend.raw", "namespaces", "backend.rest", "backend.dashboard")),
    ("app", ("backend.app", "backend.main", "backend.cli", "backend.__main__",
             "backend.shutdown", "backend.collector", "backend")),
)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(found: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of the project's own modules."""

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in found.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in filter(None, map(resolve, targets)):
                if target != module and not module.startswith(f"{target}."):
                    edges[module].add(target)
    return edges


def layer_of(module: str) -> int:
    best, length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(f"{prefix}.")) and len(prefix) > length:
                best, length = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS (and to the architecture doc)"
    return best


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_imports_point_down_the_layers() -> None:
    found = modules()
    edges = imports(found)
    assert len(found) > 80 and sum(map(len, edges.values())) > 200  # the walk saw the code
    upward = sorted(
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
        f"({LAYERS[layer_of(target)][0]})"
        for module, targets in edges.items() for target in targets
        if layer_of(target) > layer_of(module))
    assert upward == [], "\n".join(upward)


def test_no_import_circles() -> None:
    assert circles(imports(modules())) == []


def test_the_checks_catch_what_they_look_for() -> None:
    """An upward import and a circle, made up, are found."""
    assert layer_of("backend.service.chat") < layer_of("backend.realtime.hub")
    assert layer_of("backend.cluster.node") < layer_of("namespaces.chat")
    assert layer_of("backend.storage.sends") < layer_of("backend.service.messages")
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
