"""Uploads and downloads (CONTRACT section 11, docs/files.md) over real processes: limits,
types told by the bytes, checksums, resumable uploads, file messages on every door, signed
links (members only, expiry, tampering), thumbnails, deletes; on the local store (SQLite) and
on an S3-compatible store (moto's server, PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import socketio
from PIL import Image

from tests.support.client import Api, TestUser, admin_of, with_admin
from tests.support.s3 import S3Server, start_s3
from tests.support.server import ServerProcess, start_server
from tests.support.services import Postgres
from tests.test_raw_support import device_conversation, raw

MAX_BYTES = 300_000
CHUNK_MAX = 65_536
LIMITS = {"UPLOAD_MAX_BYTES": str(MAX_BYTES), "UPLOAD_CHUNK_MAX_BYTES": str(CHUNK_MAX),
          "UPLOAD_ALLOWED_TYPES": "image/*,application/pdf,text/plain"}
BUCKET = "confab-files"
#: The S3 node's links live this long: its expiry test waits for one to pass.
S3_LINK_SECONDS = 4


def png(width: int = 800, height: int = 600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(out, "PNG")
    return out.getvalue()


def text(size: int) -> bytes:
    line = b"the quick brown fox jumps over the lazy dog\n"
    return (line * (size // len(line) + 1))[:size]


@pytest.fixture(scope="module")
def files_server(work_dir: Path) -> Iterator[ServerProcess]:
    """A node of these tests' own (small limits) keeping files on its disk, on SQLite."""
    server = with_admin(start_server(work_dir / "uploads-local", **LIMITS))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(work_dir: Path) -> Iterator[S3Server]:
    server = start_s3(work_dir / "moto")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_server(work_dir: Path, postgres: Postgres, s3: S3Server) -> Iterator[ServerProcess]:
    """A node keeping files in the moto server's bucket, on PostgreSQL, with short links."""
    name, url = asyncio.run(postgres.create_database())
    server = with_admin(start_server(work_dir / "uploads-s3", url, **LIMITS, **s3.bucket(BUCKET),
                                     UPLOAD_URL_SECONDS=str(S3_LINK_SECONDS)))
    yield server
    server.stop()
    asyncio.run(postgres.drop_database(name))


@pytest.fixture
async def files_api(files_server: ServerProcess) -> AsyncIterator[Api]:
    client = Api(files_server.base_url, await admin_of(files_server.base_url))
    yield client
    await client.aclose()


@pytest.fixture
async def s3_api(s3_server: ServerProcess) -> AsyncIterator[Api]:
    client = Api(s3_server.base_url, await admin_of(s3_server.base_url))
    yield client
    await client.aclose()


async def upload(api: Api, user: TestUser, data: bytes, name: str = "file.bin",
                 declared: str = "application/octet-stream") -> httpx.Response:
    return await api.http.post("/api/v1/chat/uploads", files={"file": (name, data, declared)},
                               headers=user.headers)


async def uploaded(api: Api, user: TestUser, data: bytes, name: str = "file.bin") -> dict[str, Any]:
    response = await upload(api, user, data, name)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def fetch(api: Api, url: str, **kwargs: Any) -> httpx.Response:
    """GET a link as a browser would (following the object store's redirect)."""
    return await api.http.get(url, follow_redirects=True, **kwargs)


def tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.path}?" + "&".join(f"{k}={v}" for k, v in query.items())


def stored_files(server: ServerProcess, folder: str, content: bytes | None = None) -> list[Path]:
    """Files under the node's ``DATA_DIR/uploads/<folder>`` (holding ``content``, if given)."""
    root = Path(server.env["DATA_DIR"], "uploads", folder)
    return [p for p in root.rglob("*")
            if p.is_file() and (content is None or p.read_bytes() == content)]


async def send_file(api: Api, user: TestUser, cid: int, upload_id: int,
                    **fields: Any) -> httpx.Response:
    return await api.http.post(f"/api/v1/chat/sessions/{cid}/messages",
                               json={"upload_id": upload_id, **fields}, headers=user.headers)


# -- whole uploads ------------------------------------------------------------------------


async def test_upload_tells_the_type_by_its_bytes_and_keeps_a_checksum(files_api: Api) -> None:
    user = await files_api.register()
    image = png()
    # Named and declared as text: the bytes say PNG.
    body = await uploaded(files_api, user, image, name="../../notes.txt")
    assert body["type"] == "image/png"
    assert body["name"] == "notes.txt"
    assert body["size"] == len(image)
    assert body["sha256"] == hashlib.sha256(image).hexdigest()
    got = await fetch(files_api, body["url"])
    assert got.status_code == 200, got.text
    assert got.content == image
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"

    thumb = await fetch(files_api, body["thumbnail_url"])
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.format == "WEBP"
        assert max(small.size) == 320 and small.size == (320, 240)

    plain = text(1000)
    body = await uploaded(files_api, user, plain, name="readme")
    assert (body["type"], body["sha256"]) == ("text/plain", hashlib.sha256(plain).hexdigest())
    assert body.get("thumbnail_url") is None
    assert (await fetch(files_api, body["url"])).content == plain
    no_thumb = await fetch(files_api, body["url"].replace(f"/{body['id']}?",
                                                          f"/{body['id']}/thumbnail?"))
    assert no_thumb.status_code == 403  # a file link is no thumbnail link


async def test_a_download_is_served_as_the_docs_say(files_api: Api) -> None:
    """The local store's headers (docs/files.md "What comes back"): an image inline, another
    file as an attachment with its name, never rendered as a page of the API's origin, cached
    privately no longer than the link lives, and served by ranges. A text file with a
    byte-order mark and no-break spaces (a spreadsheet's CSV) is text."""
    user = await files_api.register()
    image = await uploaded(files_api, user, png(), "photo.png")
    csv = "\ufeffname;price\n\u00a0caf\u00e9;3\u00a0\u20ac\n".encode()
    sheet = await uploaded(files_api, user, csv, "prices.csv")
    assert sheet["type"] == "text/plain", sheet
    shown = await fetch(files_api, image["url"])
    assert shown.status_code == 200
    assert shown.headers["content-disposition"].startswith("inline")
    saved = await fetch(files_api, sheet["url"])
    assert saved.status_code == 200 and saved.content == csv
    assert saved.headers["content-disposition"].startswith("attachment")
    assert "prices.csv" in saved.headers["content-disposition"]
    for got in (shown, saved):
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"
        cache = got.headers["cache-control"]
        assert cache.startswith("private, max-age="), cache
        expires = int(parse_qs(urlsplit(str(got.url)).query)["expires"][0])
        assert 0 < int(cache.split("max-age=")[1]) <= expires - int(time.time()) + 1, cache
    part = await fetch(files_api, sheet["url"], headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == csv[:4]
    assert part.headers["content-range"] == f"bytes 0-3/{len(csv)}"


async def test_limits_are_refused_with_a_reason(files_api: Api) -> None:
    user = await files_api.register()
    cases = [
        (await upload(files_api, user, text(MAX_BYTES + 1)), 413, "larger than"),
        (await upload(files_api, user, text(MAX_BYTES + 70_000)), 413, "larger than"),
        (await upload(files_api, user, b"PK\x03\x04" + bytes(200), name="a.png",
                      declared="image/png"), 415, "application/zip"),
        (await upload(files_api, user, b"\x00\x01\x02\x03" * 10), 415,
         "application/octet-stream"),
        (await upload(files_api, user, b""), 422, "empty"),
        (await files_api.http.post("/api/v1/chat/uploads",
                                   files={"other": ("a", b"hello", "text/plain")},
                                   headers=user.headers), 422, "file"),
        (await files_api.http.post("/api/v1/chat/uploads", json={"file": "x"},
                                   headers=user.headers), 415, "multipart"),
        (await files_api.http.post("/api/v1/chat/uploads",
                                   files={"file": ("a", b"hello", "text/plain")}), 401, ""),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["detail"], response.text
    # Exactly the limit is fine.
    assert (await upload(files_api, user, text(MAX_BYTES))).status_code == 201


async def test_a_body_without_length_is_cut_off_at_the_limit(files_api: Api) -> None:
    """Chunked transfer encoding: no Content-Length to refuse up front; the body is counted
    while it is read and refused once past the limit."""
    user = await files_api.register()
    boundary = "confab-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(40):  # 40 chunks of 16 KiB: twice the limit and more
            yield text(16_384)
        yield tail

    response = await files_api.http.post(
        "/api/v1/chat/uploads", content=body(), headers={
            **user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["detail"]


# -- resumable uploads --------------------------------------------------------------------


async def interrupted_chunk(server: ServerProcess, user: TestUser, upload_id: int,
                            offset: int, data: bytes) -> None:
    """Send a chunk's headers and half its body, then hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (f"PATCH /api/v1/chat/uploads/sessions/{upload_id} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {user.token}\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    writer.write(head.encode() + data[:len(data) // 2])
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def chunked_upload(api: Api, server: ServerProcess, user: TestUser,
                         data: bytes) -> dict[str, Any]:
    """Upload ``data`` in chunks, with one chunk interrupted and a wrong offset on the way;
    every step's answer checked."""
    http = api.http
    opened = await http.post("/api/v1/chat/uploads/sessions",
                             json={"name": "big.png", "size": len(data)}, headers=user.headers)
    assert opened.status_code == 201, opened.text
    session = opened.json()
    sid, url = session["id"], session["url"]
    assert (session["offset"], session["chunk_max"]) == (0, CHUNK_MAX)

    first = await http.patch(url, content=data[:CHUNK_MAX],
                             headers={**user.headers, "Upload-Offset": "0"})
    assert first.status_code == 200, first.text
    assert first.json()["offset"] == CHUNK_MAX
    assert first.headers["upload-offset"] == str(CHUNK_MAX)

    await interrupted_chunk(server, user, sid, CHUNK_MAX, data[CHUNK_MAX:2 * CHUNK_MAX])
    head = await http.head(url, headers=user.headers)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == str(CHUNK_MAX), "half a chunk was kept"
    assert head.headers["upload-length"] == str(len(data))

    early = await http.post(f"{url}/finish", headers=user.headers)
    assert early.status_code == 409, early.text
    assert "of" in early.json()["detail"]

    wrong = await http.patch(url, content=data[2 * CHUNK_MAX:3 * CHUNK_MAX],
                             headers={**user.headers, "Upload-Offset": str(2 * CHUNK_MAX)})
    assert wrong.status_code == 409, wrong.text
    assert wrong.headers["upload-offset"] == str(CHUNK_MAX)
    assert wrong.json()["code"] == "offset_mismatch"

    too_big = await http.patch(url, content=data[CHUNK_MAX:CHUNK_MAX + CHUNK_MAX + 1],
                               headers={**user.headers, "Upload-Offset": str(CHUNK_MAX)})
    assert too_big.status_code == 413, too_big.text

    # Resume where the server says, with Content-Range this time.
    offset = int((await http.get(url, headers=user.headers)).json()["offset"])
    while offset < len(data):
        end = min(offset + CHUNK_MAX, len(data))
        sent = await http.put(url, content=data[offset:end], headers={
            **user.headers, "Content-Range": f"bytes {offset}-{end - 1}/{len(data)}"})
        assert sent.status_code == 200, sent.text
        offset = sent.json()["offset"]
        assert offset == end
    stranger = await api.register()
    assert (await http.post(f"{url}/finish", headers=stranger.headers)).status_code == 404
    done = await http.post(f"{url}/finish", headers=user.headers)
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["size"], body["type"], body["state"]) == (len(data), "image/png", "ready")
    again = await http.patch(url, content=b"x", headers={**user.headers,
                                                         "Upload-Offset": str(len(data))})
    assert again.status_code == 409, again.text
    return body


def noisy_png() -> bytes:
    """A PNG of a few chunks (random pixels do not compress)."""
    import random

    rng = random.Random(7)
    image = Image.frombytes("RGB", (280, 280), rng.randbytes(280 * 280 * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def test_chunked_upload_resumes_after_an_interrupted_chunk(
    files_api: Api, files_server: ServerProcess
) -> None:
    user = await files_api.register()
    data = noisy_png()
    assert 3 * CHUNK_MAX < len(data) <= MAX_BYTES
    body = await chunked_upload(files_api, files_server, user, data)
    got = await fetch(files_api, body["url"])
    assert got.content == data
    assert (await fetch(files_api, body["thumbnail_url"])).status_code == 200
    assert not stored_files(files_server, "parts"), "chunks left behind"


async def test_a_session_refuses_the_wrong_type_and_size_early(files_api: Api) -> None:
    user = await files_api.register()
    http = files_api.http
    big = await http.post("/api/v1/chat/uploads/sessions",
                          json={"name": "x", "size": MAX_BYTES + 1}, headers=user.headers)
    assert big.status_code == 413, big.text
    opened = await http.post("/api/v1/chat/uploads/sessions", json={"name": "x", "size": 1000},
                             headers=user.headers)
    url = opened.json()["url"]
    zipped = await http.patch(url, content=b"PK\x03\x04" + bytes(100),
                              headers={**user.headers, "Upload-Offset": "0"})
    assert zipped.status_code == 415, zipped.text
    no_offset = await http.patch(url, content=b"abc", headers=user.headers)
    assert no_offset.status_code == 400 and "Upload-Offset" in no_offset.json()["detail"]
    mismatch = await http.put(url, content=b"abc", headers={
        **user.headers, "Content-Range": "bytes 0-9/1000"})
    assert mismatch.status_code == 400, mismatch.text
    past = await http.patch(url, content=text(1001), headers={**user.headers,
                                                              "Upload-Offset": "0"})
    assert past.status_code == 422, past.text

    # Text at first, binary after: refused when finished as a whole, and gone with its chunks.
    opened = await http.post("/api/v1/chat/uploads/sessions", json={"name": "y", "size": 2000},
                             headers=user.headers)
    url = opened.json()["url"]
    for offset, chunk in ((0, b"hello"), (5, bytes(1995))):
        sent = await http.patch(url, content=chunk, headers={**user.headers,
                                                             "Upload-Offset": str(offset)})
        assert sent.status_code == 200, sent.text
    finished = await http.post(f"{url}/finish", headers=user.headers)
    assert finished.status_code == 415, finished.text
    assert (await http.get(url, headers=user.headers)).status_code == 404


# -- file messages on every door ----------------------------------------------------------


async def test_a_file_message_reaches_every_door_with_the_file(
    files_server: ServerProcess, files_api: Api
) -> None:
    device_id, cid = await device_conversation(files_api)
    agent, session_agent = [await files_api.register(role="agent") for _ in range(2)]
    image = png(64, 48)
    body = await uploaded(files_api, agent, image, name="receipt.png")
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(files_server.base_url, auth={"token": agent.token}, namespaces=["/chat"],
                      transports=["websocket"], wait_timeout=10)
    try:
        joined = await sio.call("join", {"conversation_id": cid}, namespace="/chat", timeout=10)
        assert joined["ok"] is True, joined
        ws = files_server.ws_url
        async with (
            raw(f"{ws}/ws/mobile/chat/{cid}/?device_id={device_id}") as mobile,
            raw(f"{ws}/api/v1/chat/ws/{cid}?token={session_agent.token}") as session,
        ):
            await mobile.next("connection_established")
            await session.next("user_joined")
            ack = await sio.call("chat_message", {"conversation_id": cid,
                                                  "upload_id": body["id"]},
                                 namespace="/chat", timeout=10)
            assert ack["ok"] is True, ack
            sent = ack["message"]
            assert sent["message_type"] == "image"
            assert sent["content"] == "receipt.png"
            shown = sent["file"]
            assert (shown["name"], shown["size"], shown["type"]) == (
                "receipt.png", len(image), "image/png")
            assert sent["media_url"] == shown["url"]

            frame = await session.next("message", within=10)  # seed 003
            assert frame["file_url"] == shown["url"]
            assert (frame["file_name"], frame["file_size"], frame["file_type"]) == (
                "receipt.png", len(image), "image/png")
            assert frame["metadata"]["file"]["url"] == shown["url"]

            pushed = await mobile.next("chat_message", within=10)  # seed 000
            assert pushed["message"]["media_url"] == shown["url"]
            assert pushed["message"]["message_type"] == "image"
            got = await fetch(files_api, pushed["message"]["media_url"])
            assert got.status_code == 200 and got.content == image

            detail = await files_api.http.get(f"/mobile/chat/{cid}/detail/",
                                              params={"device_id": device_id})
            stored = detail.json()["messages"][-1]
            assert stored["file"]["name"] == "receipt.png"
            assert (await fetch(files_api, stored["media_url"])).content == image

            # Seed 003's own file frame may name an upload too.
            second = await uploaded(files_api, session_agent, text(500), name="notes.txt")
            await session.send({"message_type": "file", "upload_id": second["id"]})
            echoed = await session.next(lambda f: f.get("message_type") == "message"
                                        and f.get("file_name") == "notes.txt", within=10)
            assert (echoed["file_size"], echoed["file_type"]) == (500, "text/plain")
            assert echoed["content"] == "notes.txt"
            # A device is not the uploader: its message may not name someone else's upload.
            third = await uploaded(files_api, agent, text(10))
            await mobile.send({"type": "chat_message", "upload_id": third["id"],
                               "message_type": "file"})
            refused = await mobile.next("error", within=10)
            assert "upload" in refused["message"]

            # A device uploads with its device_id and sends its own file over seed 000.
            photo = png(30, 20)
            own = await files_api.http.post(
                "/api/v1/chat/uploads", params={"device_id": device_id},
                files={"file": ("photo.png", photo, "image/png")})
            assert own.status_code == 201, own.text
            await mobile.send({"type": "chat_message", "upload_id": own.json()["id"],
                               "message_type": "image", "content": "my photo"})
            echo = await mobile.next(lambda f: f.get("type") == "chat_message"
                                     and f["message"]["content"] == "my photo", within=10)
            assert echo["message"]["file"]["name"] == "photo.png"
            from_device = await session.next(lambda f: f.get("message_type") == "message"
                                             and f.get("file_name") == "photo.png", within=10)
            assert (await fetch(files_api, from_device["file_url"])).content == photo
            by_device = await files_api.http.get(
                f"/api/v1/chat/uploads/{body['id']}", params={"device_id": device_id})
            assert by_device.status_code == 200 and by_device.content == image
    finally:
        await sio.disconnect()


async def test_a_kept_page_gives_each_reader_links_of_its_own(
    files_server: ServerProcess, files_api: Api
) -> None:
    """The latest page is kept between connects (backend/service/latest_pages.py), but the
    links of its files are made for each reader, valid from when it connected."""
    from tests.test_raw_support import support_conversation

    owner, cid = await support_conversation(files_api)
    agent = await files_api.register(role="agent")
    body = await uploaded(files_api, owner, png(20, 20), name="kept.png")
    url = f"{files_server.ws_url}/ws/chat/{cid}/?token="

    async def link() -> str:
        async with raw(url + agent.token) as reader:
            page = (await reader.next("recent_messages"))["messages"]
        assert page[-1]["file"]["url"] == page[-1]["media_url"]
        return page[-1]["media_url"]  # type: ignore[no-any-return]

    async with raw(url + owner.token) as holder:  # the node follows the room meanwhile
        await holder.next("recent_messages")
        await holder.send({"type": "chat_message", "upload_id": body["id"]})
        await holder.next("chat_message")
        first = await link()
        # Links are signed to the second: the next reader connects in the next one.
        await asyncio.sleep(int(time.time()) + 1 - time.time())
        second = await link()
    expiry = [int(parse_qs(urlsplit(u).query)["expires"][0]) for u in (first, second)]
    assert expiry[1] > expiry[0]
    assert (await fetch(files_api, second)).status_code == 200


# -- who may download ---------------------------------------------------------------------


async def test_downloads_go_to_members_only_and_links_cannot_be_forged(files_api: Api) -> None:
    http = files_api.http
    owner, member, stranger = [await files_api.register() for _ in range(3)]
    body = await uploaded(files_api, owner, png(40, 40), name="pic.png")
    bearer = f"/api/v1/chat/uploads/{body['id']}"
    # Before it is attached: its uploader's alone.
    assert (await http.get(bearer, headers=owner.headers)).status_code == 200
    assert (await http.get(bearer, headers=stranger.headers)).status_code == 404
    assert (await http.get(f"{bearer}/links", headers=stranger.headers)).status_code == 404
    assert (await http.get(bearer)).status_code == 401

    group = await files_api.conversation(owner, kind="group", participant_ids=[member.id])
    # Someone else may not send it.
    assert (await send_file(files_api, member, group["id"], body["id"])).status_code == 422
    sent = await send_file(files_api, owner, group["id"], body["id"], content="look")
    assert sent.status_code == 201, sent.text
    assert sent.json()["file"]["name"] == "pic.png"
    # Once only.
    twice = await send_file(files_api, owner, group["id"], body["id"])
    assert twice.status_code == 409, twice.text

    assert (await http.get(bearer, headers=member.headers)).status_code == 200
    refused = await http.get(bearer, headers=stranger.headers)
    assert refused.status_code == 403, refused.text
    assert (await http.get(f"{bearer}/thumbnail", headers=stranger.headers)).status_code == 403
    fresh = await http.get(f"{bearer}/links", headers=member.headers)
    assert fresh.status_code == 200
    assert (await fetch(files_api, fresh.json()["url"])).status_code == 200

    history = await files_api.history(member, group["id"])
    url = history[-1]["file"]["url"]
    assert (await fetch(files_api, url)).status_code == 200
    query = parse_qs(urlsplit(url).query)
    signature, expires = query["signature"][0], int(query["expires"][0])
    forged = [
        tampered(url, signature=("0" if signature[0] != "0" else "1") + signature[1:]),
        tampered(url, expires=str(expires + 3600)),
        tampered(url, expires="soon"),
        url.replace(f"/{body['id']}?", f"/{body['id'] + 1}?"),
    ]
    for link in forged:
        response = await fetch(files_api, link)
        assert response.status_code == 403, (link, response.text)
        assert response.json()["code"] == "bad_signature"


async def test_deleting_the_message_makes_its_file_unreachable(
    files_api: Api, files_server: ServerProcess
) -> None:
    owner, member = [await files_api.register() for _ in range(2)]
    image = png(90, 30)
    body = await uploaded(files_api, owner, image)
    group = await files_api.conversation(owner, kind="group", participant_ids=[member.id])
    sent = (await send_file(files_api, owner, group["id"], body["id"])).json()
    url, thumb = sent["file"]["url"], sent["file"]["thumbnail_url"]
    assert (await fetch(files_api, url)).status_code == 200
    stored = stored_files(files_server, "files", image)
    assert len(stored) == 1

    deleted = await files_api.http.delete(f"/api/v1/chat/messages/{sent['id']}",
                                          headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["file"] is None
    for link in (url, thumb):
        gone = await fetch(files_api, link)
        assert gone.status_code == 404, gone.text
    bearer = await files_api.http.get(f"/api/v1/chat/uploads/{body['id']}",
                                      headers=member.headers)
    assert bearer.status_code == 404
    assert not stored_files(files_server, "files", image)
    last = (await files_api.history(member, group["id"]))[-1]
    assert (last["file"], last["media_url"], last["is_deleted"]) == (None, "", True)


async def test_uploads_never_attached_are_swept(work_dir: Path) -> None:
    server = with_admin(start_server(work_dir / "uploads-sweep", **LIMITS,
                                     UPLOAD_UNATTACHED_SECONDS="5", UPLOAD_SWEEP_SECONDS="0.3"))
    api = Api(server.base_url)
    try:
        user = await api.register()
        left, kept = text(700), text(800)
        lonely = await uploaded(api, user, left)
        sent = await uploaded(api, user, kept)
        conversation = await api.conversation(user)
        assert (await send_file(api, user, conversation["id"], sent["id"])).status_code == 201
        opened = await api.http.post("/api/v1/chat/uploads/sessions",
                                     json={"name": "half", "size": 2000}, headers=user.headers)
        url = opened.json()["url"]
        chunk = await api.http.patch(url, content=text(1000),
                                     headers={**user.headers, "Upload-Offset": "0"})
        assert chunk.status_code == 200, chunk.text
        assert stored_files(server, "files", left) and stored_files(server, "parts")

        deadline = time.monotonic() + 60
        bearer = f"/api/v1/chat/uploads/{lonely['id']}"
        while (await api.http.get(bearer, headers=user.headers)).status_code != 404:
            assert time.monotonic() < deadline, "the unattached upload was never swept"
            await asyncio.sleep(0.2)
        while (await api.http.get(url, headers=user.headers)).status_code != 404:
            assert time.monotonic() < deadline, "the unfinished upload was never swept"
            await asyncio.sleep(0.2)
        assert not stored_files(server, "files", left)
        assert not stored_files(server, "parts")
        history = await api.history(user, conversation["id"])
        assert (await fetch(api, history[-1]["file"]["url"])).content == kept
        assert "never attached in time deleted" in server.log()
    finally:
        await api.aclose()
        server.stop()


# -- the S3-compatible store --------------------------------------------------------------


async def test_s3_store_uploads_serves_refuses_expires_and_deletes(
    s3_api: Api, s3_server: ServerProcess, s3: S3Server
) -> None:
    owner, member, stranger = [await s3_api.register() for _ in range(3)]
    image = png(500, 100)
    before = set(s3.keys(BUCKET))
    body = await uploaded(s3_api, owner, image, name="wide.png")
    assert (body["type"], body["sha256"]) == ("image/png", hashlib.sha256(image).hexdigest())
    added = sorted(set(s3.keys(BUCKET)) - before)
    assert len(added) == 2 and all(k.startswith("confab/files/") for k in added), added

    group = await s3_api.conversation(owner, kind="group", participant_ids=[member.id])
    sent = await send_file(s3_api, owner, group["id"], body["id"])
    assert sent.status_code == 201, sent.text
    links = (await s3_api.http.get(f"/api/v1/chat/uploads/{body['id']}/links",
                                   headers=member.headers)).json()
    redirect = await s3_api.http.get(links["url"])
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith(s3.endpoint)
    got = await fetch(s3_api, links["url"])
    assert got.status_code == 200 and got.content == image
    thumb = await fetch(s3_api, links["thumbnail_url"])
    assert thumb.status_code == 200
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert small.size == (320, 64)
    bearer = f"/api/v1/chat/uploads/{body['id']}"
    assert (await s3_api.http.get(bearer, headers=stranger.headers)).status_code == 403
    assert (await fetch(s3_api, bearer, headers=member.headers)).content == image

    # Expiry: once the link's time is past, it is refused (and not before).
    expires = int(parse_qs(urlsplit(links["url"]).query)["expires"][0])
    assert expires - time.time() <= S3_LINK_SECONDS
    deadline = time.monotonic() + S3_LINK_SECONDS + 30
    while time.time() <= expires + 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    expired = await fetch(s3_api, links["url"])
    assert expired.status_code == 403, expired.text
    assert expired.json()["code"] == "link_expired"

    deleted = await s3_api.http.delete(f"/api/v1/chat/messages/{sent.json()['id']}",
                                       headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    fresh = await s3_api.http.get(f"{bearer}/links", headers=member.headers)
    assert fresh.status_code == 404
    assert not set(added) & set(s3.keys(BUCKET)), "objects of a deleted message left"


async def test_s3_store_takes_a_resumable_upload(
    s3_api: Api, s3_server: ServerProcess, s3: S3Server
) -> None:
    user = await s3_api.register()
    data = noisy_png()
    body = await chunked_upload(s3_api, s3_server, user, data)
    assert not [k for k in s3.keys(BUCKET) if k.startswith("confab/parts/")], "chunks left"
    links = (await s3_api.http.get(f"/api/v1/chat/uploads/{body['id']}/links",
                                   headers=user.headers)).json()
    assert (await fetch(s3_api, links["url"])).content == data
