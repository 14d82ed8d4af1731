"""Running the official JavaScript clients under node, for browser- and SDK-style tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"


def node_modules() -> Path:
    """tests/js/node_modules, installed from package-lock.json on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the JavaScript client tests", pytrace=False)
    modules = JS_DIR / "node_modules"
    if not all((modules / name).exists() for name in ("socket.io-client", "ws", "playwright-core")):
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            pytest.fail(f"npm ci in tests/js failed:\n{result.stderr}", pytrace=False)
    return modules


def run_node(script: str, *args: str, timeout: float = 60) -> Any:
    """Run tests/js/SCRIPT with ARGS; it prints one JSON document as its last stdout line."""
    node_modules()
    result = subprocess.run(["node", str(JS_DIR / script), *args], cwd=JS_DIR,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"node {script} failed:\n{result.stdout}\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"node {script} printed nothing:\n{result.stderr}"
    return json.loads(lines[-1])
