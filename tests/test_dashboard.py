"""The agents' dashboard at ``GET /``: what the server serves (types, CSP, no shadowing), and
two agents using the page in headless Chromium against a real server: login, unread counts,
history and paging, sending, typing, read receipts, reactions, and an offline spell after which
the page reconnects and shows every missed message exactly once, in order, and an edit of a
message it already had (resumed from its event position)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.client import Api
from tests.support.debian import ensure_package
from tests.support.node import JS_DIR, run_node
from tests.support.server import ServerProcess
from tests.test_raw_support import device_conversation
from tests.test_socketio_helpers import group

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "backend" / "dashboard" / "static"
CHROMIUM = "/usr/bin/chromium"
SEEDED = 55  # more than one join page (50): the page must offer older history


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium at /usr/bin/chromium, installed when missing."""
    return ensure_package(CHROMIUM, "chromium")


# -- what the server serves -------------------------------------------------------------------


def test_page_and_assets(sqlite_server: ServerProcess) -> None:
    with httpx.Client(base_url=sqlite_server.base_url, timeout=10) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<div id="chat-view"' in page.text
        csp = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        host = f"127.0.0.1:{sqlite_server.port}"
        assert directives["connect-src"] == f"'self' ws://{host} wss://{host}"
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        # Nothing inline (the policy would block it) and nothing from elsewhere.
        assert "<style" not in page.text and re.search(r"<script(?![^>]*\bsrc=)", page.text) is None
        for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert url.startswith("/dashboard/static/"), url

        # A Host header that could smuggle directives is not echoed into the policy.
        evil = http.get("/", headers={"Host": "x; script-src *"})
        assert "script-src 'self'" in evil.headers["content-security-policy"]
        assert "*" not in evil.headers["content-security-policy"]

        types = {"dashboard.js": "text/javascript; charset=utf-8",
                 "socket.io.min.js": "text/javascript; charset=utf-8",
                 "dashboard.css": "text/css; charset=utf-8",
                 "favicon.svg": "image/svg+xml"}
        for name, content_type in types.items():
            asset = http.get(f"/dashboard/static/{name}")
            assert asset.status_code == 200, name
            assert asset.headers["content-type"] == content_type, name
            assert asset.content == (STATIC / name).read_bytes()
            assert "content-security-policy" in asset.headers
            assert asset.headers["x-content-type-options"] == "nosniff"

        assert http.get("/dashboard/static/missing.js").status_code == 404
        assert http.get("/dashboard/static/../routes.py").status_code == 404
        assert http.get("/dashboard/static/%2e%2e/routes.py").status_code == 404
        assert http.post("/").status_code == 405

        # "/" shadows nothing.
        assert http.get("/healthz").json()
        assert http.get("/readyz").status_code == 200
        assert "paths" in http.get("/openapi.json").json()
        assert http.get("/api/v1/auth/me").status_code == 401
        assert http.get("/socket.io/", params={"EIO": "4", "transport": "polling"}).text[0] == "0"
        missing = http.get("/no-such-page")
        assert missing.status_code == 404 and "detail" in missing.json()


def test_vendored_client_matches_pinned_version() -> None:
    """The page's Socket.IO client is the one the JavaScript tests pin."""
    lock = json.loads((JS_DIR / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/socket.io-client"]["version"]
    header = (STATIC / "socket.io.min.js").read_text()[:200]
    assert f"Socket.IO v{pinned}\n" in header
    assert pinned in (STATIC / "VENDORED.md").read_text()


# -- two agents in a browser ------------------------------------------------------------------


@pytest.mark.timeout(1200)  # a first run may install chromium (bounded in the fixture)
async def test_two_agents_in_the_browser(sqlite_server: ServerProcess, sqlite_api: Api,
                                         chromium: str) -> None:
    api = sqlite_api
    agent1 = await api.register(role="agent", first_name="Alice", last_name="Agent")
    agent2 = await api.register(role="agent", first_name="Bob", last_name="Agent")
    cid = await group(api, agent1, agent2)
    seeded = [await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                  json={"content": f"seed {n}"}, headers=agent2.headers)
              for n in range(SEEDED)]
    assert all(r.status_code == 201 for r in seeded)

    device_id, device_cid = await device_conversation(api)
    config = {
        "chromium": chromium,
        "conversation_id": cid,
        "device": {"id": device_id, "conversation_id": device_cid},
        "server_pid": sqlite_server.process.pid,
        "agent1": {"email": agent1.email, "password": agent1.password},
        "agent2": {"email": agent2.email, "password": agent2.password},
    }
    try:
        result = await asyncio.to_thread(run_node, "dashboard_agents.js", api.base_url,
                                         json.dumps(config), timeout=120)
    finally:
        os.kill(sqlite_server.process.pid, signal.SIGCONT)  # whatever the script did

    assert result["problems"] == []  # no CSP violation, no script error
    assert result["me1"] == "Alice Agent (agent)"
    # The first connection is "connecting" until both namespaces are up, never "reconnecting".
    first = result["firstStates1"]
    assert "connected" in first and "reconnecting" not in first[:first.index("connected")], first
    # History: the join gives the latest 50, the REST page before them the rest.
    assert result["loadOlderShown"] is True
    assert result["firstPageCount"] == 50
    assert result["afterOlderCount"] == SEEDED
    # Unread count on the list, cleared once read; the sender sees the receipt.
    assert result["unreadBefore"] == 1 and result["unreadAfter"] == 0
    assert result["firstReceipt"] == "Read"
    assert result["typingText"] == "Alice Agent is typing…"
    assert result["reactionText"] == "👍 1"

    # Offline: nothing arrived while away; the indicator went offline → reconnecting →
    # connected; afterwards every message is there once, in order.
    assert result["seenWhileOffline"] == 0
    states = result["states2"]
    assert states[0] == "connected" and states[-1] == "connected"
    assert "offline" in states
    assert states[states.index("offline"):][-2:] == ["reconnecting", "connected"]
    assert result["state1"] == "connected"
    assert result["deviceTypingCleared"] is True  # a device's typing ends with its message
    # A send the stalled node did not answer in time went again by itself, stored once.
    assert result["resentAfterStall"] is True and result["stalledCopies"] == 1
    replies = (await api.http.get(f"/api/v1/chat/sessions/{device_cid}/messages",
                                  headers=agent1.headers)).json()
    assert [m["content"] for m in replies].count("Through a stall") == 1, replies
    assert result["resumedAfterReload"] is True

    history = (await api.http.get(f"/api/v1/chat/sessions/{cid}/messages",
                                  params={"limit": 200}, headers=agent1.headers)).json()
    stored = [(m["id"], m["content"]) for m in history]
    ids = result["ids"]
    assert result["editStatus"] == 200
    assert [content for _, content in stored[SEEDED:]] == [
        "First message from agent one", "Live hello, edited", "Missed one", "Missed two",
        "After the reconnect"]
    assert [i for i, _ in stored[SEEDED:]] == [
        ids["first"], ids["live"], ids["missed1"], ids["missed2"], ids["after"]]

    shown1 = [(m["id"], m["content"]) for m in result["messages1"]]
    shown2 = [(m["id"], m["content"]) for m in result["messages2"]]
    assert shown1 == stored  # page 1 loaded everything, older page included
    # Page 2 joined after the first message (the latest 50, it included), then got 4 more.
    assert len(shown2) == 50 + 4 and shown2 == stored[-len(shown2):]
    assert not any(m["pending"] for m in result["messages1"] + result["messages2"])
    assert [m["mine"] for m in result["messages2"][-5:]] == [False] * 5


# -- attaching a file -------------------------------------------------------------------------


@pytest.mark.timeout(1200)  # a first run may install chromium (bounded in the fixture)
async def test_attach_button_uploads_and_sends_a_file(sqlite_api: Api, chromium: str) -> None:
    api = sqlite_api
    agent = await api.register(role="agent", first_name="Ann", last_name="Agent")
    other = await api.register(role="agent")
    cid = await group(api, agent, other)
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(out, "PNG")
    image = out.getvalue()
    config = {"chromium": chromium, "conversation_id": cid,
              "agent": {"email": agent.email, "password": agent.password},
              "png_base64": base64.b64encode(image).decode()}
    result = await asyncio.to_thread(run_node, "dashboard_attach.js", api.base_url,
                                     json.dumps(config), timeout=120)

    assert result["problems"] == []  # no CSP violation, no script error
    assert result["linkText"].startswith("chart.png (")
    assert result["thumbnailWidth"] == 320
    assert "Not uploaded" in result["refusal"] and "application/octet-stream" in result["refusal"]
    stored = (await api.history(other, cid))[-1]
    assert stored["id"] == result["messageId"]
    assert (stored["message_type"], stored["file"]["name"]) == ("image", "chart.png")
    got = await api.http.get(result["linkHref"])
    assert got.status_code == 200 and got.content == image


async def test_search_box_in_the_browser(sqlite_api: Api, chromium: str) -> None:
    """The sidebar's search: ranked hits with their matches marked, more pages, nothing
    found, refused text, and a hit opening its conversation; a message's own markup shows as
    text (the page keeps only the snippet's text and marks)."""
    import uuid

    api = sqlite_api
    agent = await api.register(role="agent", first_name="Sam", last_name="Searcher")
    other = await api.register()
    cid = await group(api, agent, other)
    word = "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])
    contents = [f"note {n} about {word}" for n in range(23)]
    contents += [f'<img src=x onerror="alert(1)"> {word}', f"<b>bold</b> {word} {word}"]
    for content in contents:
        sent = await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                                   json={"content": content}, headers=agent.headers)
        assert sent.status_code == 201, sent.text
    config = {"chromium": chromium, "agent": {"email": agent.email, "password": agent.password},
              "word": word, "conversation_id": cid}
    result = await asyncio.to_thread(run_node, "dashboard_search.js", api.base_url,
                                     json.dumps(config), timeout=120)
    assert result["problems"] == []  # no script error, no CSP violation, no alert
    assert result["panelHiddenAtFirst"] is True
    assert len(result["firstPage"]) == 20
    every = result["allHits"]
    assert len(every) == len(contents) == len({hit["message_id"] for hit in every})
    assert result["summary"] == f"{len(contents)} found"
    assert {hit["conversation_id"] for hit in every} == {cid}
    assert all(hit["marks"] and set(hit["marks"]) == {word} for hit in every)
    assert all(set(hit["elements"]) == {"MARK"} for hit in every)
    assert any('<img src=x onerror="alert(1)">' in hit["snippet_text"] for hit in every)
    assert "<b>bold</b>" in every[0]["snippet_text"]  # the best match: the word twice
    assert result["emptyCount"] == 0
    assert result["refusedSummary"].startswith("Search: ")
    assert result["opened"] == cid
