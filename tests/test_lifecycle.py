"""Start-up, restart and the command line, with real processes."""

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.server import ROOT, start_server
from tests.support.services import free_port


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_production_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "ENVIRONMENT": "production"}
    result = _run(env, "migrate")
    assert result.returncode == 2
    assert "JWT_SECRET must be set" in result.stderr


def test_generated_secret_keeps_tokens_valid_across_restarts(tmp_path: Path) -> None:
    server = start_server(tmp_path, JWT_SECRET="")
    try:
        response = httpx.post(f"{server.base_url}/api/v1/auth/register",
                              json={"email": "keep@example.com", "password": "password123"})
        assert response.status_code == 201
        token = response.json()["access_token"]
    finally:
        server.stop()
    assert (tmp_path / "jwt_secret").exists()
    again = start_server(tmp_path, JWT_SECRET="")
    try:
        me = httpx.get(f"{again.base_url}/api/v1/auth/me",
                       headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["email"] == "keep@example.com"
    finally:
        again.stop()


def test_migrate_then_create_users_from_the_command_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "ENVIRONMENT": "production",
           "JWT_SECRET": "p" * 40}
    first = _run(env, "migrate")
    assert first.returncode == 0, first.stderr
    assert _run(env, "migrate").returncode == 0  # idempotent
    created = _run(env, "create-user", "--email", "Agent@Example.com", "--password", "pw123456",
                   "--role", "agent")
    assert created.returncode == 0, created.stderr
    assert "role agent" in created.stdout
    duplicate = _run(env, "create-user", "--email", "agent@example.com", "--password", "x" * 8)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    bad_role = _run(env, "create-user", "--email", "b@example.com", "--password", "x" * 8,
                    "--role", "root")
    assert bad_role.returncode == 2


def test_production_refuses_a_database_without_its_migrations(tmp_path: Path) -> None:
    """Production does not migrate by itself: on a database this release's migrations have
    not reached, the node stops at start-up, saying what to run, instead of answering its
    health checks and failing every request. Once migrated, it starts."""
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "ENVIRONMENT": "production",
           "JWT_SECRET": "p" * 40}
    refused = _run(env, "serve", "--port", "0")
    assert refused.returncode != 0
    assert "models.0001_initial" in refused.stderr, refused.stderr[-2000:]
    assert "run `confab migrate` first" in refused.stderr, refused.stderr[-2000:]
    assert _run(env, "migrate").returncode == 0
    server = start_server(tmp_path, ENVIRONMENT="production", JWT_SECRET="p" * 40)
    try:
        assert httpx.get(f"{server.base_url}/readyz").status_code == 200
    finally:
        server.stop()


def test_production_starts_while_its_database_does_not_answer(tmp_path: Path) -> None:
    """A database down at start-up (a start order, a restart) says nothing of migrations:
    the node starts, warns, and is not ready until the database answers."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "ENVIRONMENT": "production",
           "JWT_SECRET": "p" * 40, "DATABASE_URL": f"postgres://confab@127.0.0.1:{free_port()}/x",
           "DB_TIMEOUT_SECONDS": "1"}
    node = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert node.poll() is None, node.communicate()[0][-2000:]
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the node never listened"
                time.sleep(0.1)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
    finally:
        node.terminate()
        output = node.communicate(timeout=30)[0]
    assert "its migrations were not checked" in output, output[-2000:]
