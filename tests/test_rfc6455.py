"""RFC 6455 conformance of the WebSocket protocol every node runs (``--ws
backend.realtime.protocol:WebSocketProtocol``), checked with Autobahn|Testsuite and by hand.

Autobahn's fuzzing client judges a case by two things: the messages it got back (``behavior``:
it expects every message echoed) and the closing handshake (``behaviorClose``: who closed, with
which code, cleanly or not). The project's routes do not echo: they greet a client with JSON
frames and answer the fuzzer's payloads with error frames, so against them every case's
``behavior`` would fail for reasons that are not the protocol's. Hence two runs:

- cases 1-7 and 10 (framing, pings, reserved bits and opcodes, fragmentation, UTF-8, close;
  the performance cases 9 are left out) against a test-only echo app (tests/support/echo_app.py)
  served by uvicorn as a node is served: the project's protocol class, uvloop, httptools, no
  per-message deflate (as ``confab serve`` and the Procfile). Every case must end OK,
  NON-STRICT or INFORMATIONAL, and every closing handshake OK;
- the close cases (7.1.5, 7.3, 7.5, 7.7, 7.9, 7.13) against a real raw route of a real node
  (``/ws/chat/{id}/?token=``), where only the closing handshake (``behaviorClose``) is judged.

Autobahn|Testsuite runs on Python 2.7: it is installed with ``python2.7 -m pip install
--target`` into a cache folder (inside the project's .venv, reused by later runs), with the
``zope/__init__.py`` that ``--target`` leaves out. Without python2.7 or the package, the tests
fail naming what is missing.

Two more tests check the fixed behaviours directly on a real node: a close frame between the
fragments of a message is echoed with 1000 (Autobahn's 7.1.5: websockets answered 1002), and a
text message that is not UTF-8 closes its connection with 1007 and is logged as one warning
line, without a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.support.client import Api
from tests.support.server import ROOT, ServerProcess
from tests.support.services import free_port
from tests.test_raw_chat import chat_url
from tests.test_raw_support import raw, support_conversation

#: Pinned: its dependencies resolve to the last releases that run on Python 2.7.
AUTOBAHN = "autobahntestsuite==25.10.1"
ECHO_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
CLOSE_CASES = ["7.1.5", "7.3.*", "7.5.*", "7.7.*", "7.9.*", "7.13.*"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
CLEAN_CLOSE = {"OK", "INFORMATIONAL"}


def python27() -> tuple[str, dict[str, str]]:
    """A Python 2.7 interpreter and the environment to run it with: ``python2.7`` on PATH,
    else pyenv's 2.7 (its shim answers only when that version is selected)."""
    env = dict(os.environ)
    found = shutil.which("python2.7")
    if found and subprocess.run([found, "--version"], env=env, capture_output=True,
                                timeout=30, check=False).returncode == 0:
        return found, env
    pyenv = shutil.which("pyenv")
    if pyenv:
        versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True,
                                  timeout=30, check=False).stdout.split()
        for version in versions:
            if version.startswith("2.7"):
                env["PYENV_VERSION"] = version
                prefix = subprocess.run([pyenv, "prefix", version], env=env, capture_output=True,
                                        text=True, timeout=30, check=False).stdout.strip()
                interpreter = Path(prefix) / "bin" / "python2.7"
                if interpreter.is_file():
                    return str(interpreter), env
    pytest.fail("Autobahn|Testsuite needs Python 2.7: no working python2.7 on PATH and no "
                "pyenv 2.7 version (install one, e.g. `pyenv install 2.7.18`)")


def cache_dir() -> Path:
    """Where Autobahn|Testsuite is installed: in the user's cache, shared by every checkout on
    the machine (a fresh clone's suite does not spend its first 20 s installing it again),
    else, where that cannot be written, in the project's .venv (never committed)."""
    cache = Path.home() / ".cache" / "confab"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = ROOT / ".venv"
    return cache / "autobahntestsuite"


@pytest.fixture(scope="module")
def wstest() -> tuple[list[str], dict[str, str]]:
    """The ``wstest`` command and its environment, installing Autobahn|Testsuite first when
    the cache does not hold it."""
    interpreter, env = python27()
    target = cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    done = target / ".installed"
    if not done.exists() or done.read_text() != AUTOBAHN:
        building = Path(tempfile.mkdtemp(prefix="autobahn-", dir=target.parent))
        installed = subprocess.run(
            [interpreter, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(building), AUTOBAHN],
            env=env, capture_output=True, text=True, timeout=900, check=False)
        if installed.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            pytest.fail(f"could not install {AUTOBAHN} with {interpreter}:\n"
                        f"{installed.stdout[-3000:]}\n{installed.stderr[-3000:]}")
        # zope.interface is a namespace package: pip's --target skips the .pth that declares
        # it, so Python 2 needs the package's __init__.py to import it.
        (building / "zope" / "__init__.py").touch()
        (building / ".installed").write_text(AUTOBAHN)
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    env["PYTHONPATH"] = str(target)
    return [interpreter, str(target / "bin" / "wstest")], env


def run_fuzzingclient(wstest: tuple[list[str], dict[str, str]], url: str, cases: list[str],
                      out: Path) -> dict[str, dict[str, object]]:
    """Run the fuzzing client on ``cases`` against ``url``; each case's report entry."""
    command, env = wstest
    spec = out / "spec.json"
    spec.write_text(json.dumps({
        "outdir": str(out / "reports"),
        "servers": [{"agent": "confab", "url": url}],
        "cases": cases, "exclude-cases": [], "exclude-agent-cases": {},
    }))
    started = time.monotonic()
    ran = subprocess.run([*command, "-m", "fuzzingclient", "-s", str(spec)], env=env, cwd=out,
                         capture_output=True, text=True, timeout=600, check=False)
    print(f"\nwstest {cases}: {time.monotonic() - started:.1f} s")
    index = out / "reports" / "index.json"
    assert ran.returncode == 0 and index.exists(), f"wstest failed:\n{ran.stdout}\n{ran.stderr}"
    report: dict[str, dict[str, object]] = json.loads(index.read_text())["confab"]
    counts = collections.Counter(str(case["behavior"]) for case in report.values())
    print(f"{len(report)} cases: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return report


@pytest.fixture(scope="module")
def echo_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """uvicorn serving the echo app with the project's protocol class and a node's options."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("echo") / "echo.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.support.echo_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--loop", "uvloop", "--http", "httptools",
             "--ws", "backend.realtime.protocol:WebSocketProtocol",
             "--ws-per-message-deflate", "false", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(port, env, process, log_path)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"echo server exited:\n{server.log()}"
        try:
            if httpx.get(server.base_url, timeout=1).status_code == 404:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"echo server not up in 30 s:\n{server.log()}"
        time.sleep(0.1)
    yield server
    server.stop(signal.SIGTERM)


@pytest.mark.timeout(900)
def test_autobahn_cases_1_to_7_and_10_on_the_protocol(
    wstest: tuple[list[str], dict[str, str]], echo_node: ServerProcess, tmp_path: Path
) -> None:
    report = run_fuzzingclient(wstest, echo_node.ws_url, ECHO_CASES, tmp_path)
    assert {case.split(".")[0] for case in report} == {"1", "2", "3", "4", "5", "6", "7", "10"}
    failed = {case: result for case, result in report.items()
              if result["behavior"] not in PASSING or result["behaviorClose"] not in CLEAN_CLOSE}
    assert not failed, json.dumps(failed, indent=1)
    assert report["7.1.5"]["behavior"] == "OK" and report["7.1.5"]["remoteCloseCode"] == 1000
    assert "Traceback" not in echo_node.log()


@pytest.mark.timeout(900)
async def test_autobahn_close_cases_on_a_real_raw_route(
    wstest: tuple[list[str], dict[str, str]], sqlite_server: ServerProcess, sqlite_api: Api,
    tmp_path: Path
) -> None:
    owner, cid = await support_conversation(sqlite_api)
    url = chat_url(sqlite_server, cid, owner.token)
    report = await asyncio.to_thread(run_fuzzingclient, wstest, url, CLOSE_CASES, tmp_path)
    assert {"7.1.5", "7.3.1", "7.5.1", "7.7.1", "7.9.1", "7.13.1"} <= report.keys()
    # The route's greeting frames make ``behavior`` differ from the echo Autobahn expects:
    # only the closing handshake is the protocol's here.
    unclean = {case: result for case, result in report.items()
               if result["behaviorClose"] not in CLEAN_CLOSE}
    assert not unclean, json.dumps(unclean, indent=1)
    assert report["7.1.5"]["remoteCloseCode"] == 1000


async def test_a_close_between_fragments_is_echoed_with_1000(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    """RFC 6455 5.4: a control frame may come between a message's fragments. Autobahn 7.1.5:
    first fragment, close 1000, last fragment; the answer is the close echoed, 1000."""
    owner, cid = await support_conversation(sqlite_api)
    client = ClientProtocol(parse_uri(chat_url(sqlite_server, cid, owner.token)))
    reader, writer = await asyncio.open_connection("127.0.0.1", sqlite_server.port)
    try:
        client.send_request(client.connect())
        writer.write(b"".join(client.data_to_send()))
        frames = [Frame(Opcode.TEXT, b'{"type": "typ', fin=False),
                  Frame(Opcode.CLOSE, Close(1000, "").serialize()),
                  Frame(Opcode.CONT, b'ing", "is_typing": true}', fin=True)]
        sent = False
        close: Close | None = None
        async with asyncio.timeout(5):
            while close is None:
                data = await reader.read(65536)
                assert data, "the server dropped the connection without a close frame"
                client.receive_data(data)
                for event in client.events_received():
                    if isinstance(event, Response):
                        assert event.status_code == 101, event
                    elif event.opcode is Opcode.CLOSE:
                        close = Close.parse(event.data)
                if not sent and client.state is State.OPEN:
                    writer.write(b"".join(f.serialize(mask=True) for f in frames))
                    sent = True
        assert (close.code, close.reason) == (1000, "")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the TCP connection ends
    finally:
        writer.close()


async def test_invalid_utf8_closes_1007_with_one_warning_line(
    sqlite_server: ServerProcess, sqlite_api: Api
) -> None:
    """A text frame that is not UTF-8: close 1007 (RFC 6455 8.1), one warning line each and no
    traceback (a client must not be able to write tracebacks into the log), the node unharmed."""
    owner, cid = await support_conversation(sqlite_api)
    url = chat_url(sqlite_server, cid, owner.token)
    start = len(sqlite_server.log())
    bad = [b"\xff", b'{"type": "chat_message", "content": "caf\xc3"}', b"\xed\xa0\x80"]
    for payload in bad:
        async with raw(url) as client:
            await client.next("connection_established")
            await client.ws.send(payload, text=True)  # sent as a text frame, unchecked
            with pytest.raises(ConnectionClosedError) as closed:
                while True:
                    await asyncio.wait_for(client.ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    log = sqlite_server.log()[start:]
    warnings = [line for line in log.splitlines() if "event=websocket_invalid_utf8" in line]
    assert len(warnings) == len(bad), log
    assert all(" WARNING " in line and "closing 1007" in line for line in warnings), warnings
    assert "Traceback" not in log and "Invalid UTF-8 sequence" not in log, log
    # The node carries on: the same route takes and echoes a message.
    async with raw(url) as client:
        await client.next("connection_established")
        await client.send({"type": "chat_message", "content": "still here"})
        assert (await client.next("chat_message"))["content"] == "still here"
