"""``/openapi.json`` lists every REST route, with request schemas, and seed 003's ten paths."""

from __future__ import annotations

from backend.rest.api import path_parameters
from backend.rest.routes import build_api
from tests.support.client import Api

SEED_003_PATHS = [
    "/api/v1/chat/block",
    "/api/v1/chat/sessions",
    "/api/v1/chat/sessions/{session_id}",
    "/api/v1/chat/sessions/{session_id}/close",
    "/api/v1/chat/sessions/{session_id}/mark-read",
    "/api/v1/chat/sessions/{session_id}/messages",
    "/api/v1/chat/sessions/{session_id}/participants",
    "/api/v1/chat/unblock",
    "/api/v1/chat/ws",
    "/api/v1/chat/ws-stats",
]

CHAT_ROUTES = {
    ("POST", "/api/v1/chat/sessions"), ("GET", "/api/v1/chat/sessions"),
    ("GET", "/api/v1/chat/sessions/{session_id}"),
    ("POST", "/api/v1/chat/sessions/{session_id}/close"),
    ("POST", "/api/v1/chat/sessions/{session_id}/mark-read"),
    ("GET", "/api/v1/chat/sessions/{session_id}/messages"),
    ("POST", "/api/v1/chat/sessions/{session_id}/messages"),
    ("GET", "/api/v1/chat/sessions/{session_id}/participants"),
    ("PATCH", "/api/v1/chat/messages/{message_id}"),
    ("DELETE", "/api/v1/chat/messages/{message_id}"),
    ("POST", "/api/v1/chat/messages/{message_id}/reactions"),
    ("GET", "/api/v1/chat/search"), ("POST", "/api/v1/chat/block"),
    ("POST", "/api/v1/chat/unblock"), ("GET", "/api/v1/chat/ws-stats"),
    ("GET", "/api/chat/conversations/"), ("GET", "/api/chat/conversations/{conversation_id}/"),
    ("GET", "/api/chat/conversations/{conversation_id}/messages/"),
    ("POST", "/api/chat/conversations/{conversation_id}/mark_read/"),
    ("POST", "/api/chat/messages/"), ("GET", "/api/chat/messages/{message_id}/"),
    ("POST", "/api/chat/connections/"), ("POST", "/api/chat/connections/{connection_id}/accept/"),
    ("GET", "/api/chat/connections/"),
    ("POST", "/mobile/chat/start/"), ("GET", "/mobile/chat/list/"),
    ("GET", "/mobile/chat/{conversation_id}/detail/"),
    ("POST", "/mobile/chat/{conversation_id}/send-message/"),
}


def _resolve(document: dict, schema: dict) -> dict:  # type: ignore[type-arg]
    ref = schema.get("$ref")
    if ref:
        return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]  # type: ignore[no-any-return]
    return schema


async def test_openapi_lists_every_route(api: Api) -> None:
    response = await api.http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "SwipeSavvy Backend API"  # seed 003's quick start
    paths = document["paths"]
    chat_paths = sorted(p for p in paths if "chat" in p and p.startswith("/api/v1/"))
    assert set(SEED_003_PATHS) <= set(chat_paths)
    assert [p for p in chat_paths if p in SEED_003_PATHS] == SEED_003_PATHS
    ws = paths["/api/v1/chat/ws"]["get"]
    assert "/api/v1/chat/ws/{session_id}" in ws["summary"]

    registered = build_api().operations
    declared = {(op.method, op.path) for op in registered}
    assert CHAT_ROUTES <= declared
    for op in registered:
        entry = paths[op.path][op.method.lower()]
        assert entry["summary"] == op.summary
        names = [p["name"] for p in entry["parameters"] if p["in"] == "path"]
        assert names == path_parameters(op.path)
        if op.body is not None:
            schema = entry["requestBody"]["content"]["application/json"]["schema"]
            assert _resolve(document, schema)["type"] == "object", op.path
            assert _resolve(document, schema)["properties"], op.path
        if op.query is not None:
            assert [p for p in entry["parameters"] if p["in"] == "query"], op.path
        if op.auth == "user":
            assert entry["security"] == [{"bearer": []}]

    send = paths["/api/v1/chat/sessions/{session_id}/messages"]["post"]
    body = _resolve(document, send["requestBody"]["content"]["application/json"]["schema"])
    assert {"content", "message_type", "client_msg_id"} <= body["properties"].keys()
    create = paths["/api/v1/chat/sessions"]["post"]
    body = _resolve(document, create["requestBody"]["content"]["application/json"]["schema"])
    assert body["required"] == ["title"]
    logout = paths["/api/v1/auth/logout"]["post"]
    assert logout["security"] == [{"bearer": []}]
    body = _resolve(document, logout["requestBody"]["content"]["application/json"]["schema"])
    assert {"refresh_token", "all"} <= body["properties"].keys()
    history = paths["/api/v1/chat/sessions/{session_id}/messages"]["get"]
    assert {p["name"] for p in history["parameters"] if p["in"] == "query"} == {
        "limit", "offset", "before_id", "after_id"}
    assert "upload_id" in _resolve(document, send["requestBody"]["content"][
        "application/json"]["schema"])["properties"]

    # Files (CONTRACT section 11): a multipart body, raw chunks, files out.
    upload = paths["/api/v1/chat/uploads"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    assert upload["security"] == [{"bearer": []}, {}]  # or a device's device_id
    assert "device_id" in {p["name"] for p in upload["parameters"]}
    out = _resolve(document, upload["responses"]["201"]["content"]["application/json"]["schema"])
    assert {"id", "name", "size", "type", "sha256", "url", "thumbnail_url"} <= out[
        "properties"].keys()
    chunks = paths["/api/v1/chat/uploads/sessions/{upload_id}"]
    assert {"get", "patch", "put"} <= chunks.keys()
    assert "application/octet-stream" in chunks["patch"]["requestBody"]["content"]
    download = paths["/api/v1/chat/uploads/{upload_id}"]["get"]
    assert "application/octet-stream" in download["responses"]["200"]["content"]
    assert {p["name"] for p in download["parameters"] if p["in"] == "query"} == {
        "expires", "signature"}
    assert "/api/v1/chat/uploads/{upload_id}/thumbnail" in paths
