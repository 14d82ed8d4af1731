"""A real server process: uvicorn on an ephemeral port, its own data folder and database."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "test-secret-" + "x" * 40
#: The embedded default's database file in a node's data folder.
SQLITE_FILE = "chat.sqlite3"


@functools.cache
def migrated_sqlite() -> Path:
    """A SQLite database with every migration applied, made once per test run by the command
    line's ``migrate``. A node started on the embedded default gets a copy, unless its folder
    has a database already: migrating a new file took a second of each start (the ORM's
    migration state rebuilds its models at every step). Starts on a new file stay covered
    where they are the subject (tests/test_lifecycle.py, the benchmark's nodes)."""
    folder = Path(tempfile.mkdtemp(prefix="confab-migrated-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-m", "backend", "migrate"], cwd=ROOT,
                            env={**env, "DATA_DIR": str(folder), "JWT_SECRET": TEST_SECRET},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # Closed cleanly, the write-ahead log is folded into the file: the file alone is whole.
    assert not (folder / f"{SQLITE_FILE}-wal").exists()
    return folder / SQLITE_FILE


@dataclass
class ServerProcess:
    """One running server. ``base_url`` for HTTP, ``ws_url`` for WebSockets."""

    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python -m backend ARGS`` against this server's database."""
        return subprocess.run(
            [sys.executable, "-m", "backend", *args], env=self.env, cwd=ROOT,
            capture_output=True, text=True, timeout=60, check=False,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(data_dir: Path, database_url: str | None = None, *, port: int | None = None,
                 **overrides: str) -> ServerProcess:
    """Start uvicorn with the real app and wait (bounded) until /readyz answers 200; on
    ``port`` (a node restarted at its address), else on a free one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "DATA_DIR": str(data_dir),
        "JWT_SECRET": TEST_SECRET,
        "PYTHONUNBUFFERED": "1",
    })
    if overrides.get("ENVIRONMENT") != "production":
        # Argon2id at its cheapest: the suite registers and logs in thousands of users, and
        # at the real cost (64 MiB, three passes) their hashing alone took minutes. Production
        # refuses these (tests/test_settings.py); the tests that run in production keep them.
        env.update({"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
                    "ARGON2_PARALLELISM": "1"})
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(overrides)
    if "DATABASE_URL" not in env and not (data_dir / SQLITE_FILE).exists():
        shutil.copyfile(migrated_sqlite(), data_dir / SQLITE_FILE)
    log_path = data_dir / f"server-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--loop", "uvloop", "--http", "httptools",
             "--ws", "backend.realtime.protocol:WebSocketProtocol", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    server = ServerProcess(port, env, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not become ready in 30 s:\n{server.log()}")
