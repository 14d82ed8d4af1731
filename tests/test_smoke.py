"""The app starts on each database and answers its health checks."""

from tests.support.client import Api


async def test_health_and_registration(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
    user = await api.register()
    me = await api.http.get("/api/v1/auth/me", headers=user.headers)
    assert me.status_code == 200 and me.json()["id"] == user.id
