"""Debian packages the tests need (a browser, a proxy), installed when missing.

A package that cannot be had fails the test with a message naming it: never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _apt(package: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(["apt-get", *args], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{package}: `apt-get {' '.join(args)}` took over {timeout:.0f} s",
                    pytrace=False)


def ensure_package(binary: str, package: str, timeout: float = 420) -> str:
    """The path of ``binary`` (a path or a name on PATH), installing Debian's ``package``
    with apt-get when it is missing (bounded by ``timeout`` per apt-get step)."""
    def found() -> str | None:
        if os.path.isabs(binary):
            return binary if os.access(binary, os.X_OK) else None
        return shutil.which(binary)

    path = found()
    if path is not None:
        return path
    if shutil.which("apt-get") is None:
        pytest.fail(f"{package}: {binary} is missing and apt-get is not available to install "
                    f"Debian's `{package}` package", pytrace=False)
    result = _apt(package, "install", "-y", "-q", package, timeout=timeout)
    if result.returncode != 0:  # most often: the package lists are stale or empty
        update = _apt(package, "update", "-q", timeout=timeout)
        if update.returncode != 0:
            pytest.fail(f"{package}: `apt-get update` failed:\n{update.stderr[-2000:]}",
                        pytrace=False)
        result = _apt(package, "install", "-y", "-q", package, timeout=timeout)
    path = found()
    if result.returncode != 0 or path is None:
        pytest.fail(f"{package}: `apt-get install -y {package}` failed:\n"
                    f"{result.stderr[-2000:]}", pytrace=False)
    return path
