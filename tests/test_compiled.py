"""The compiled modules (backend/compiled.py, setup.py): the check that refuses a compiled file
built from another version of its source, and that an install really runs the listed modules
compiled (or, installed with the opt-out, does not)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from backend.compiled import (
    GROUP,
    LISTED,
    MANIFEST,
    OPT_OUT,
    StaleBuild,
    check,
    compiled_files,
    listed,
    module_name,
    source_hash,
    write_manifest,
)
from tests.support.server import ROOT, ServerProcess

SUFFIX = EXTENSION_SUFFIXES[0]
OPTED_OUT = os.environ.get(OPT_OUT, "") not in ("", "0")


def tree(root: Path, *, compiled: bool = True, manifest: bool = True) -> Path:
    """A package tree like an installed one: two listed modules, the first compiled (a file
    standing in for the compiled module), and the shared library."""
    package = root / "backend"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "fast.py").write_text("X = 1\n")
    (package / "later.py").write_text("Y = 2\n")
    (root / LISTED).write_text("# comment\nbackend/fast.py\n\nbackend/later.py  # added\n")
    if compiled:
        (package / f"fast{SUFFIX}").write_bytes(b"\x7fELF")
        (root / f"confab__mypyc{SUFFIX}").write_bytes(b"\x7fELF")
        if manifest:
            write_manifest(root, root, ["backend/fast.py"])
    return root


def test_a_build_of_the_sources_beside_it_runs(tmp_path: Path) -> None:
    build = check(tree(tmp_path))
    assert build.compiled == ["backend/fast.py"]
    assert build.not_built == ["backend/later.py"]
    assert build.summary() == ("modules compiled (mypyc): backend.fast; listed but not "
                               "compiled (rebuild): backend.later")


def test_an_edited_source_is_refused_naming_the_module_and_the_remedies(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "backend" / "fast.py").write_text("X = 2\n")
    with pytest.raises(StaleBuild) as refused:
        check(root)
    message = str(refused.value)
    assert f"backend.fast (backend/fast{SUFFIX}): its source changed since the build" in message
    assert "pip install -e ." in message
    assert f"{OPT_OUT}=1" in message


def test_a_compiled_file_without_the_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StaleBuild, match=r"without the build's manifest .*: backend\.fast\.\n"):
        check(tree(tmp_path, manifest=False))


def test_a_compiled_file_the_build_did_not_record_is_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "backend" / f"later{SUFFIX}").write_bytes(b"\x7fELF")
    with pytest.raises(StaleBuild, match=r"backend\.later .*: the build did not record it"):
        check(root)


def test_pure_python_runs(tmp_path: Path) -> None:
    build = check(tree(tmp_path, compiled=False))
    assert build.compiled == []
    assert build.summary() == "modules: pure Python (none compiled)"


def test_compiled_files_are_found_by_the_source_they_stand_for(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "backend" / "sub").mkdir()
    (root / "backend" / "sub" / f"__init__{SUFFIX}").write_bytes(b"")
    assert sorted(compiled_files(root)) == ["backend/fast.py", "backend/sub/__init__.py"]
    assert module_name("backend/sub/__init__.py") == "backend.sub"
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest == {"sha256": {"backend/fast.py": source_hash(root / "backend/fast.py")}}


def test_the_listed_modules_run_compiled_unless_installed_pure() -> None:
    """What a node imports (its own process, from the checkout): each listed module from its
    compiled file, or, installed with the opt-out, from its source."""
    modules = [module_name(source) for source in listed()]
    assert modules, f"{LISTED} lists no module"
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]: print(importlib.import_module(name).__file__)")
    result = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    files = result.stdout.split()
    assert [Path(file).parent for file in files] == [
        (ROOT / source).parent for source in listed()]
    if OPTED_OUT:
        assert all(file.endswith(".py") for file in files), files
    else:
        assert all(file.endswith(tuple(EXTENSION_SUFFIXES)) for file in files), (
            f"not compiled: {files}; install the project (pip install -e .), or set {OPT_OUT}=1 "
            "where it was installed without compiling")


def test_a_node_logs_what_runs_compiled(sqlite_server: ServerProcess) -> None:
    expected = ("modules: pure Python" if OPTED_OUT else
                "modules compiled (mypyc): " + ", ".join(sorted(map(module_name, listed()))))
    assert expected in sqlite_server.log()


@pytest.mark.skipif(OPTED_OUT, reason="installed without compiling: no compiled file to spoil")
def test_a_node_refuses_a_compiled_module_whose_source_changed(tmp_path: Path) -> None:
    """A copy of the installed packages, one compiled module's source edited (a comment): the
    node does not start, and says which module and how to rebuild."""
    for package in ("backend", "models", "namespaces"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for library in ROOT.glob(f"{GROUP}__mypyc.*"):
        shutil.copy(library, tmp_path)
    source = listed()[0]
    assert source in compiled_files(tmp_path), f"{source} is not compiled: install the project"
    with open(tmp_path / source, "a") as edited:
        edited.write("# edited after the build\n")
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "JWT_SECRET": "x" * 48}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "uvicorn", "backend.main:app", "--port", "0"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{module_name(source)} (" in result.stderr
    assert "its source changed since the build" in result.stderr
    assert "pip install -e ." in result.stderr
