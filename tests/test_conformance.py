"""The published Socket.IO v5 / Engine.IO v4 protocol suite (socketio/socket.io-protocol, 32
mocha tests), run as it is against the node's own Socket.IO stack (tests/support/
conformance_app.py: the production server classes and uvicorn options, the suite's handlers),
and binary attachments both ways with python-socketio's client against the same app.

The suite lives beside the repository (``../shared/conformance/``, read-only, never copied into
the project): each run copies it to a temporary directory; its node_modules (``npm ci``, then
the ``ws`` client its README asks for) are kept in a cache directory outside the repository
(``$XDG_CACHE_HOME`` or ``~/.cache``, ``confab-tests/``), installed on first use. It talks to
``http://localhost:3000`` only (hard-coded in test-suite.js), so the app listens there.

``PASSING`` is every test of the suite: all 32 must pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT.parent / "shared" / "conformance" / "socket.io-protocol" / "test-suite"
#: The suite's README: ws 8.5.0 (its lock) loses frames that arrive in one TCP read.
WS_CLIENT = "ws@8.16.0"
SUITE_PORT = 3000
#: The suite runs in about 7 s; mocha gets this long to finish and exit.
MOCHA_SECONDS = 60
TOTAL = 32

PASSING = frozenset({
    "Engine.IO protocol handshake HTTP long-polling should successfully open a session",
    "Engine.IO protocol handshake HTTP long-polling should fail with an invalid 'EIO' query "
    "parameter",
    "Engine.IO protocol handshake HTTP long-polling should fail with an invalid 'transport' "
    "query parameter",
    "Engine.IO protocol handshake HTTP long-polling should fail with an invalid request method",
    "Engine.IO protocol handshake WebSocket should successfully open a session",
    "Engine.IO protocol handshake WebSocket should fail with an invalid 'EIO' query parameter",
    "Engine.IO protocol handshake WebSocket should fail with an invalid 'transport' query "
    "parameter",
    "Engine.IO protocol heartbeat HTTP long-polling should send ping/pong packets",
    "Engine.IO protocol heartbeat HTTP long-polling should close the session upon ping timeout",
    "Engine.IO protocol heartbeat WebSocket should send ping/pong packets",
    "Engine.IO protocol heartbeat WebSocket should close the session upon ping timeout",
    "Engine.IO protocol close HTTP long-polling should forcefully close the session",
    "Engine.IO protocol close WebSocket should forcefully close the session",
    "Engine.IO protocol upgrade should successfully upgrade from HTTP long-polling to WebSocket",
    "Engine.IO protocol upgrade should ignore HTTP requests with same sid after upgrade",
    "Engine.IO protocol upgrade should ignore WebSocket connection with same sid after upgrade",
    "Socket.IO protocol connect should allow connection to the main namespace",
    "Socket.IO protocol connect should allow connection to the main namespace with a payload",
    "Socket.IO protocol connect should allow connection to a custom namespace",
    "Socket.IO protocol connect should allow connection to a custom namespace with a payload",
    "Socket.IO protocol connect should disallow connection to an unknown namespace",
    "Socket.IO protocol connect should disallow connection with an invalid handshake",
    "Socket.IO protocol connect should close the connection if no handshake is received",
    "Socket.IO protocol disconnect should disconnect from the main namespace",
    "Socket.IO protocol disconnect should connect then disconnect from a custom namespace",
    "Socket.IO protocol message should send a plain-text packet",
    "Socket.IO protocol message should send a packet with binary attachments",
    "Socket.IO protocol message should send a plain-text packet with an ack",
    "Socket.IO protocol message should send a packet with binary attachments and an ack",
    "Socket.IO protocol message should close the connection upon invalid format (unknown "
    "packet type)",
    "Socket.IO protocol message should close the connection upon invalid format (invalid "
    "payload format)",
    "Socket.IO protocol message should close the connection upon invalid format (invalid ack "
    "id)",
})


def suite_dir() -> Path:
    if not (SUITE / "test-suite.js").is_file():
        pytest.fail(f"the Socket.IO protocol suite is not at {SUITE} (shared/ beside the "
                    "repository)", pytrace=False)
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to run the Socket.IO protocol suite",
                    pytrace=False)
    return SUITE


def npm(args: list[str], cwd: Path) -> None:
    result = subprocess.run(["npm", *args, "--no-audit", "--no-fund"], cwd=cwd,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        pytest.fail(f"npm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)


def suite_modules(suite: Path) -> Path:
    """The suite's node_modules, in the cache: ``npm ci`` from its lock, then ``WS_CLIENT``
    (``--no-save``), in a fresh directory renamed into place once complete."""
    lock = (suite / "package-lock.json").read_bytes()
    key = hashlib.sha256(lock + WS_CLIENT.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "confab-tests"
    done = base / f"socket.io-protocol-{key}"
    if (done / "node_modules" / ".bin" / "mocha").exists():
        return done / "node_modules"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="socket.io-protocol-", dir=base))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(suite / name, work / name)
        npm(["ci"], work)
        npm(["install", "--no-save", WS_CLIENT], work)
        with contextlib.suppress(OSError):  # another run may have finished first
            work.rename(done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done / "node_modules"


@contextlib.contextmanager
def conformance_server(port: int, log_path: Path) -> Iterator[str]:
    """tests/support/conformance_app.py in its own uvicorn process on localhost:PORT."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is taken: the protocol suite only talks to "
                        f"http://localhost:{port}; stop what listens there", pytrace=False)
    base_url = f"http://localhost:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.conformance_app", str(port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the conformance app exited with {process.returncode}:\n"
                            f"{log_path.read_text(errors='replace')}", pytrace=False)
            with contextlib.suppress(httpx.HTTPError):
                opened = httpx.get(f"{base_url}/socket.io/?EIO=4&transport=polling",
                                   timeout=1)
                if opened.status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail("the conformance app did not answer in 30 s:\n"
                            f"{log_path.read_text(errors='replace')}", pytrace=False)
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run_suite(suite: Path, modules: Path, work: Path) -> tuple[dict[str, Any], float, bool]:
    """``npx mocha test-suite.js --reporter json`` in a copy of the suite: its report, its
    wall time in seconds, and whether it exited. mocha only exits once the connections its
    tests left open are closed, by the server; so it gets a bound (``MOCHA_SECONDS``), and
    its report (written at the end of the run, before that wait) is read either way."""
    copy = work / "test-suite"
    shutil.copytree(suite, copy)
    for path in [copy, *copy.iterdir()]:
        path.chmod(path.stat().st_mode | 0o200)  # the shared copy is read-only
    (copy / "node_modules").symlink_to(modules, target_is_directory=True)
    started = time.monotonic()
    try:
        result = subprocess.run(["npx", "mocha", "test-suite.js", "--reporter", "json"],
                                cwd=copy, capture_output=True, text=True,
                                timeout=MOCHA_SECONDS, check=False)
        stdout, exited = result.stdout, True
    except subprocess.TimeoutExpired as timeout:
        out = timeout.stdout or b""
        stdout, exited = (out.decode() if isinstance(out, bytes) else out), False
    elapsed = time.monotonic() - started
    start = stdout.find("{")
    assert start >= 0, f"mocha printed no report:\n{stdout}"
    report: dict[str, Any] = json.loads(stdout[start:])
    return report, elapsed, exited


def summary(report: dict[str, Any]) -> str:
    return "\n".join(f"FAIL {test['fullTitle']}: {test['err'].get('message', '')[:200]}"
                     for test in report["failures"])


@pytest.mark.timeout(MOCHA_SECONDS + 600)  # a first run installs the suite's modules
def test_socketio_protocol_suite(tmp_path: Path) -> None:
    suite = suite_dir()
    modules = suite_modules(suite)
    with conformance_server(SUITE_PORT, tmp_path / "server.log"):
        report, elapsed, exited = run_suite(suite, modules, tmp_path)
    passed = {test["fullTitle"] for test in report["passes"]}
    print(f"\nSocket.IO protocol suite: {len(passed)}/{report['stats']['tests']} passed "
          f"in {elapsed:.1f} s\n{summary(report)}")
    assert report["stats"]["tests"] == TOTAL == len(PASSING), report["stats"]
    missing = PASSING - passed
    assert not missing and passed == PASSING, (
        f"not passing: {sorted(missing)}\n{summary(report)}\n"
        f"server log:\n{(tmp_path / 'server.log').read_text(errors='replace')}")
    assert exited, (f"mocha did not exit within {MOCHA_SECONDS} s: a connection the suite "
                    "left open was never closed by the server")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_binary_attachments_round_trip(tmp_path: Path, transport: str) -> None:
    """Events and acks carrying bytes (anywhere in their arguments) reach the server and come
    back as the same bytes, on either transport."""
    with conformance_server(free_port(), tmp_path / "server.log") as base_url:
        client = socketio.AsyncClient(reconnection=False)
        back: list[tuple[Any, ...]] = []
        got = asyncio.Event()

        async def message_back(*args: Any) -> None:
            back.append(args)
            got.set()

        client.on("message-back", message_back)
        await client.connect(base_url, transports=[transport], wait_timeout=5)
        try:
            blob = bytes(range(256))
            nested = {"name": "photo", "parts": [b"\x00\x01", {"raw": bytearray(b"xyz")}]}
            await client.emit("message", (blob, "text", nested))
            async with asyncio.timeout(5):
                await got.wait()
            expected = (blob, "text", {"name": "photo", "parts": [b"\x00\x01", {"raw": b"xyz"}]})
            assert back == [expected]
            ack = await client.call("message-with-ack", (b"\xff" * 3, 1, nested), timeout=5)
            assert ack == (b"\xff" * 3, 1, expected[2])
            plain = await client.call("message-with-ack", ("no bytes", {"n": 1}), timeout=5)
            assert plain == ("no bytes", {"n": 1})
        finally:
            await client.disconnect()
