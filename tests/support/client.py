"""Test-side helpers for talking to a running server over REST."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.support.server import ServerProcess

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-123"
_counter = itertools.count(1)


@dataclass
class TestUser:
    """A registered user with a valid access token."""

    __test__ = False  # a helper, not a test class

    id: int
    email: str
    password: str
    token: str
    refresh_token: str
    role: str
    first_name: str
    last_name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """An httpx client bound to one server, with factories for users and conversations."""

    def __init__(self, base_url: str, admin: TestUser | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=20)
        self.admin = admin

    async def aclose(self) -> None:
        await self.http.aclose()

    async def register(self, role: str = "user", **fields: Any) -> TestUser:
        n = next(_counter)
        email = fields.pop("email", f"user{n}-{uuid.uuid4().hex[:8]}@example.com")
        body = {"email": email, "password": "password123",
                "first_name": fields.pop("first_name", f"First{n}"),
                "last_name": fields.pop("last_name", f"Last{n}"), **fields}
        response = await self.http.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        user = TestUser(data["user"]["id"], email, "password123", data["access_token"],
                        data["refresh_token"], "user", body["first_name"], body["last_name"])
        if role != "user":
            assert self.admin is not None, "an admin is needed to create staff"
            promoted = await self.http.patch(
                f"/api/v1/auth/users/{user.id}/role", json={"role": role},
                headers=self.admin.headers,
            )
            assert promoted.status_code == 200, promoted.text
            user.role = role
        return user

    async def conversation(self, owner: TestUser, **body: Any) -> dict[str, Any]:
        body.setdefault("title", "Test conversation")
        response = await self.http.post("/api/v1/chat/sessions", json=body,
                                        headers=owner.headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def history(self, user: TestUser, conversation_id: int) -> list[dict[str, Any]]:
        """Up to 200 stored messages of a conversation, oldest first."""
        response = await self.http.get(f"/api/v1/chat/sessions/{conversation_id}/messages",
                                       params={"limit": 200}, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return body if isinstance(body, list) else body["results"]  # type: ignore[no-any-return]

    async def device(self) -> str:
        response = await self.http.post("/mobile/sessions/", json={"platform": "ios"})
        assert response.status_code == 201, response.text
        return response.json()["device_id"]  # type: ignore[no-any-return]


def with_admin(server: ServerProcess) -> ServerProcess:
    """Create the test admin through the command line, against the server's database, unless
    that database has it already (nodes that share one: the cluster tests')."""
    result = server.cli("create-user", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD,
                        "--role", "admin", "--first-name", "Ada", "--last-name", "Admin")
    assert result.returncode == 0 or "already exists" in result.stderr, result.stderr
    return server


async def admin_of(base_url: str) -> TestUser:
    """The test admin, logged in on ``base_url``."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post("/api/v1/auth/login",
                                   json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, response.text
        data = response.json()
    return TestUser(data["user"]["id"], ADMIN_EMAIL, ADMIN_PASSWORD, data["access_token"],
                    data["refresh_token"], "admin", "Ada", "Admin")
