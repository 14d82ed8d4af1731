"""Which of the project's modules run compiled (mypyc), and the check that every compiled file
was built from the source beside it.

Python imports ``wire.cpython-311-x86_64-linux-gnu.so`` before ``wire.py``: a compiled module
left by an earlier build would run, silently, in place of the edited source. The build
(setup.py) records the hash of each compiled module's source in a manifest in the package;
``check`` finds every compiled file of the project's packages and refuses (``StaleBuild``)
when its source no longer matches the manifest, or there is none. A node checks at start-up
(``backend.app``), the test session before it starts (tests/conftest.py).

Standard library only: setup.py loads this file on its own to list and record what it builds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

#: Set (to anything but "" or "0") when installing, the project installs without compiling.
OPT_OUT = "CONFAB_PURE_PYTHON"
#: The modules to compile, one source path a line (relative to the root holding ``backend``).
LISTED = "backend/compiled_modules.txt"
#: Written by the build beside the compiled files: each compiled module's source hash.
MANIFEST = "backend/compiled_manifest.json"
#: mypyc's group: the shared library holding the compiled code, ``confab__mypyc.<abi>.so``,
#: sits beside the packages (where mypyc derives the compiled modules' ``__file__`` from).
GROUP = "confab"
#: The packages whose modules may be compiled.
PACKAGES = ("backend", "models", "namespaces")
#: The root the installed (or checked-out) packages sit in.
ROOT = Path(__file__).resolve().parents[1]

REBUILD = ("Rebuild: `pip install -e .` (in a checkout, `python setup.py build_ext --inplace` "
           f"builds in place), or install without compiling: `{OPT_OUT}=1 pip install -e .`")


class StaleBuild(RuntimeError):
    """A compiled module of the project that was not built from the source beside it."""


@dataclass(frozen=True, slots=True)
class Build:
    """What runs compiled: ``compiled`` (source paths), and the listed modules that do not
    (``not_built``: added to the list since the build, or the install opted out)."""

    compiled: list[str]
    not_built: list[str]

    def summary(self) -> str:
        """One line for the start-up log."""
        if not self.compiled:
            return "modules: pure Python (none compiled)"
        line = "modules compiled (mypyc): " + ", ".join(map(module_name, self.compiled))
        if self.not_built:
            line += "; listed but not compiled (rebuild): " + ", ".join(
                map(module_name, self.not_built))
        return line


def listed(root: Path = ROOT) -> list[str]:
    """The source paths of the modules to compile (``LISTED``; none when it is absent)."""
    try:
        text = (root / LISTED).read_text()
    except FileNotFoundError:
        return []
    lines = (line.partition("#")[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def source_hash(path: Path) -> str:
    """The sha256 of a source file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(target: Path, root: Path, sources: list[str]) -> Path:
    """Record the hash of each of ``sources`` (read under ``root``) in ``target``'s manifest."""
    path = target / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes = {source: source_hash(root / source) for source in sources}
    path.write_text(json.dumps({"sha256": hashes}, indent=1, sort_keys=True) + "\n")
    return path


def compiled_files(root: Path = ROOT) -> dict[str, Path]:
    """Every compiled module file this interpreter would import from the project's packages,
    by the source path it stands for (the shared library, no module of its own, left out)."""
    found = {}
    suffixes = sorted(EXTENSION_SUFFIXES, key=len, reverse=True)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            suffix = next((s for s in suffixes if path.name.endswith(s)), None)
            if suffix is None or not path.is_file():
                continue
            stem = path.name.removesuffix(suffix)
            if stem.endswith("__mypyc"):
                continue
            found[path.with_name(stem + ".py").relative_to(root).as_posix()] = path
    return found


def module_name(source: str) -> str:
    """``backend/realtime/wire.py`` -> ``backend.realtime.wire``."""
    return source.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def check(root: Path = ROOT) -> Build:
    """What runs compiled, once every compiled file is known to match its source; else
    ``StaleBuild`` naming each module that does not, and how to rebuild."""
    compiled = compiled_files(root)
    if not compiled:
        return Build([], listed(root))
    try:
        recorded = json.loads((root / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise StaleBuild(
            f"compiled modules without the build's manifest ({MANIFEST}): "
            f"{', '.join(map(module_name, compiled))}.\n{REBUILD}")
    stale = []
    for source, binary in compiled.items():
        path = root / source
        if not path.is_file():
            problem = "its source is missing"
        elif recorded.get(source) is None:
            problem = "the build did not record it (left by an earlier build)"
        elif recorded[source] != source_hash(path):
            problem = "its source changed since the build"
        else:
            continue
        stale.append(f"  - {module_name(source)} ({binary.relative_to(root)}): {problem}")
    if stale:
        raise StaleBuild("compiled modules that do not match their source (Python would run "
                         "the compiled file, not the source):\n" + "\n".join(stale)
                         + f"\n{REBUILD}")
    return Build(sorted(compiled), [s for s in listed(root) if s not in compiled])
