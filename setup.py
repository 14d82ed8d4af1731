"""The build: pyproject.toml describes the package; this compiles the modules listed in
backend/compiled_modules.txt with mypyc (README, "Compiled modules") and records, beside them,
the hash of the source each was built from (the manifest ``backend.compiled`` checks at start).

``CONFAB_PURE_PYTHON=1`` (at install time) compiles nothing. A build that cannot compile (no C
compiler, no Python headers, mypyc refusing a module) fails, naming that opt-out.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _load_compiled() -> ModuleType:
    """backend/compiled.py on its own (standard library only): the package is not built yet."""
    spec = importlib.util.spec_from_file_location("_confab_compiled", ROOT / "backend" /
                                                  "compiled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks its module up
    spec.loader.exec_module(module)
    return module


compiled = _load_compiled()
PURE = os.environ.get(compiled.OPT_OUT, "") not in ("", "0")
SOURCES: list[str] = [] if PURE else compiled.listed(ROOT)


def _failed(what: str, remedy: str = "Compiling needs a C compiler and the Python headers "
            "(e.g. gcc and python3-dev)") -> SystemExit:
    return SystemExit(f"confab: {what}. {remedy}; or install without compiling (pure Python): "
                      f"{compiled.OPT_OUT}=1 pip install ...")


def _remove_stale_in_tree() -> None:
    """Compiled files in the checkout that this build does not make again (a module taken off
    the list, or everything with the opt-out) would otherwise still be imported."""
    keep = set(SOURCES)
    for source, binary in compiled.compiled_files(ROOT).items():
        if source not in keep:
            print(f"confab: removing {binary.relative_to(ROOT)} (not compiled by this build)")
            binary.unlink()
    if not keep:
        for stale in [*ROOT.glob(f"{compiled.GROUP}__mypyc.*"), ROOT / compiled.MANIFEST]:
            stale.unlink(missing_ok=True)


@functools.cache
def _extensions() -> list[Any]:
    """mypyc's extensions (the C it generates, under build/mypyc). Made when the build asks for
    them, not at every command pip runs this file for (metadata, requirements)."""
    if "backend/compiled.py" in SOURCES:
        raise _failed("backend/compiled.py checks the compiled modules; it cannot be one",
                      f"Take it off {compiled.LISTED}")
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise _failed(f"mypyc is not installed ({exc})",
                      "Install mypy==2.4.1 (the test extra has it)") from None
    build = ROOT / "build"
    build.mkdir(exist_ok=True)
    # The type check mypyc compiles by: the project's own stubs, and libraries it cannot see
    # taken as Any (the build's isolated environment holds none of the runtime dependencies).
    # Not [tool.mypy]: that one (strict, every library installed) is CI's.
    with tempfile.NamedTemporaryFile("w", suffix=".ini", dir=build, delete=False) as config:
        config.write("[mypy]\nmypy_path = stubs\nignore_missing_imports = True\n"
                     "follow_imports = silent\ncache_dir = build/mypy_cache\n")
    try:
        return mypycify([f"--config-file={config.name}", *SOURCES], group_name=compiled.GROUP,
                        target_dir="build/mypyc")
    except SystemExit as exc:  # mypyc reports what it refuses, then exits
        raise _failed(f"mypyc could not compile the listed modules ({exc})",
                      f"Fix what it reports above, or take the module off {compiled.LISTED}"
                      ) from None
    finally:
        os.unlink(config.name)


#: Commands that only describe the package (what pip asks before it builds).
METADATA_ONLY = {"egg_info", "dist_info", "sdist"}


class BuildExt(build_ext):
    """Compile, naming the opt-out when that fails; then record the manifest beside the
    compiled files (in the checkout for an in-place or editable build)."""

    def finalize_options(self) -> None:
        # pip's metadata steps finalize this command too (to list sources): only a build runs
        # mypyc, once, and puts its extensions in the stand-in's place.
        if SOURCES and not set(self.distribution.commands) <= METADATA_ONLY:
            self.distribution.ext_modules = _extensions()
        super().finalize_options()

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            raise _failed(f"compiling the listed modules failed ({exc})") from None
        if SOURCES:
            target = ROOT if self.inplace else Path(self.build_lib)
            written = compiled.write_manifest(target, ROOT, SOURCES)
            print(f"confab: compiled {len(SOURCES)} module(s); manifest {written}")


os.chdir(ROOT)
_remove_stale_in_tree()
# A stand-in until build_ext asks for mypyc's (it tells setuptools the wheel is platform's own).
PLACEHOLDER = [Extension(f"{compiled.GROUP}__mypyc", sources=[])] if SOURCES else []
setup(ext_modules=PLACEHOLDER, cmdclass={"build_ext": BuildExt})
