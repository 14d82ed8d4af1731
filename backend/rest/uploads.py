"""Uploads and downloads (CONTRACT section 11, docs/files.md): ``/api/v1/chat/uploads…``.

Whole files come as ``multipart/form-data`` (field ``file``); large ones as a resumable
upload: a session, chunks at its offset (``PATCH`` with ``Upload-Offset`` or ``PUT`` with
``Content-Range``), its offset asked again after an interruption, then ``finish``. Downloads
take a signed link (``?expires=&signature=``) or a bearer token.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from backend.auth.accounts import actor_from_token, device_actor
from backend.doors.connections import bearer_token
from backend.rest.api import Api, AuthKind, Call, ORJSONResponse, error_response, refusal_response
from backend.rest.bodies import BodyTooLarge, capped, declared_length
from backend.rest.schemas import (
    DownloadQuery,
    UploadOut,
    UploadSessionBody,
    UploadSessionOut,
)
from backend.service.actors import Actor
from backend.service.errors import invalid
from backend.service.signing import Variant
from backend.service.uploads import Download, OffsetMismatch, Uploads

TAGS = ("files",)
USER_OR_DEVICE: AuthKind = "user_or_device"
#: What a multipart body may hold beyond the file itself (boundaries, part headers).
FORM_OVERHEAD = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d{1,18})-(\d{1,18})/(\d{1,18}|\*)")

MULTIPART: dict[str, Any] = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}}}}}
CHUNK: dict[str, Any] = {"application/octet-stream": {  # any type is taken
    "schema": {"type": "string", "format": "binary"}}}
FILE: dict[str, Any] = {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}


def _uploads(call: Call) -> Uploads:
    uploads = call.chat.uploads
    if uploads is None:
        raise invalid("This server takes no uploads")
    return uploads


def file_response(download: Download) -> Response:
    """The file itself (local store) or a redirect to the object store's own short link."""
    if download.stored.redirect is not None:
        return RedirectResponse(download.stored.redirect, status_code=302,
                                headers={"Cache-Control": "no-store"})
    path = download.stored.path
    if path is None or not path.is_file():
        return error_response(404, "File not found")
    # Served from the API's own origin: never rendered as a page, never sniffed as one.
    inline = download.content_type.startswith("image/")
    return FileResponse(
        path, media_type=download.content_type, filename=download.name,
        content_disposition_type="inline" if inline else "attachment",
        headers={"X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "default-src 'none'; sandbox",
                 "Cache-Control": f"private, max-age={download.seconds}"})


def register(api: Api) -> None:
    @api.route("POST", "/api/v1/chat/uploads", summary="Upload a file (multipart field `file`)",
               response=UploadOut, status=201, auth=USER_OR_DEVICE, tags=TAGS, raw_body=MULTIPART)
    async def upload(call: Call) -> Any:
        uploads = _uploads(call)
        request = call.request
        limit = uploads.settings.max_bytes + FORM_OVERHEAD
        too_large = f"The file is larger than {uploads.settings.max_bytes} bytes"
        length = declared_length(request)
        if length is not None and length > limit:
            return error_response(413, too_large, code="too_large")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error_response(415, "Send the file as multipart/form-data, field `file`",
                                  code="unsupported_media_type")
        capped_request = Request(request.scope, capped(request.receive, limit))
        try:
            async with capped_request.form(max_files=1, max_fields=10) as form:
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    return error_response(422, "The form has no file in the field `file`",
                                          code="invalid")
                return await uploads.create(call.actor, file.filename, file.file)
        except BodyTooLarge:
            return error_response(413, too_large, code="too_large")
        except (MultiPartException, HTTPException) as exc:
            detail = exc.detail if isinstance(exc, HTTPException) else exc.message
            return error_response(400, f"Malformed multipart body: {detail}", code="invalid")

    @api.route("POST", "/api/v1/chat/uploads/sessions",
               summary="Start a resumable upload (then send chunks at its offset)",
               body=UploadSessionBody, response=UploadSessionOut, status=201,
               auth=USER_OR_DEVICE, tags=TAGS)
    async def open_session(call: Call) -> Any:
        body: UploadSessionBody = call.body
        session = await _uploads(call).open_session(call.actor, body.name, body.size)
        return ORJSONResponse(session, status_code=201, headers=_offset_headers(session))

    @api.route("GET", "/api/v1/chat/uploads/sessions/{upload_id}",
               summary="Where a resumable upload stands (also HEAD: `Upload-Offset`)",
               response=UploadSessionOut, auth=USER_OR_DEVICE, tags=TAGS)
    async def session(call: Call) -> Any:
        state = await _uploads(call).session(call.actor, call.path["upload_id"])
        return ORJSONResponse(state, headers=_offset_headers(state))

    async def chunk(call: Call) -> Any:
        uploads = _uploads(call)
        request = call.request
        offset = _chunk_offset(request)
        if isinstance(offset, Response):
            return offset
        limit = uploads.settings.chunk_max_bytes
        length = declared_length(request)
        if length is not None and length > limit:
            return error_response(413, f"A chunk is at most {limit} bytes", code="too_large")
        try:
            data = await Request(request.scope, capped(request.receive, limit)).body()
        except BodyTooLarge:
            return error_response(413, f"A chunk is at most {limit} bytes", code="too_large")
        except ClientDisconnect:
            # The chunk never came whole: nothing is kept, the offset stays where it was.
            return error_response(400, "The chunk was interrupted", code="invalid")
        expected, total = _range(request)
        if expected is not None and expected != len(data):
            return error_response(400, "Content-Range does not match the body's length",
                                  code="invalid")
        try:
            state = await uploads.append(call.actor, call.path["upload_id"], offset, data,
                                         total)
        except OffsetMismatch as exc:
            response = refusal_response(request, exc)
            response.headers["Upload-Offset"] = str(exc.offset)
            return response
        return ORJSONResponse(state, headers=_offset_headers(state))

    api.route("PATCH", "/api/v1/chat/uploads/sessions/{upload_id}",
              summary="Send a chunk at `Upload-Offset` (tus style)",
              response=UploadSessionOut, auth=USER_OR_DEVICE, tags=TAGS,
              raw_body=CHUNK)(chunk)
    api.route("PUT", "/api/v1/chat/uploads/sessions/{upload_id}",
              summary="Send a chunk at `Content-Range: bytes start-end/size`",
              response=UploadSessionOut, auth=USER_OR_DEVICE, tags=TAGS,
              raw_body=CHUNK)(chunk)

    @api.route("POST", "/api/v1/chat/uploads/sessions/{upload_id}/finish",
               summary="Finish a fully received resumable upload", response=UploadOut,
               status=201, auth=USER_OR_DEVICE, tags=TAGS)
    async def finish(call: Call) -> Any:
        return await _uploads(call).finish(call.actor, call.path["upload_id"])

    @api.route("GET", "/api/v1/chat/uploads/{upload_id}/links",
               summary="Fresh signed links to an upload you may see", response=UploadOut,
               auth=USER_OR_DEVICE, tags=TAGS)
    async def links(call: Call) -> Any:
        return await _uploads(call).links(call.actor, call.path["upload_id"])

    async def download(call: Call, variant: Variant) -> Response:
        uploads = _uploads(call)
        query: DownloadQuery = call.query
        upload_id = call.path["upload_id"]
        if query.signature is not None or query.expires is not None:
            return file_response(await uploads.signed(
                upload_id, variant, query.expires or "", query.signature or ""))
        return file_response(await uploads.fetch(await _caller(call), upload_id, variant))

    @api.route("GET", "/api/v1/chat/uploads/{upload_id}",
               summary="The file: by its signed link (`url`), or with a bearer token",
               query=DownloadQuery, auth="none", tags=TAGS, produces=FILE)
    async def get_file(call: Call) -> Any:
        return await download(call, Variant.FILE)

    @api.route("GET", "/api/v1/chat/uploads/{upload_id}/thumbnail",
               summary="An image's thumbnail (WebP): by its signed link or a bearer token",
               query=DownloadQuery, auth="none", tags=TAGS,
               produces={"image/webp": FILE["application/octet-stream"]})
    async def get_thumbnail(call: Call) -> Any:
        return await download(call, Variant.THUMBNAIL)


async def _caller(call: Call) -> Actor:
    """A download's caller without a signed link: a bearer token, else a device's
    ``device_id`` (the rule of ``user_or_device`` operations)."""
    request = call.request
    if "authorization" not in request.headers and "device_id" in request.query_params:
        return await device_actor(request.query_params.get("device_id"))
    state = request.app.state
    token = bearer_token(request.headers.get("authorization", ""))
    return await actor_from_token(state.settings, state.sessions, token)


def _offset_headers(state: dict[str, Any]) -> dict[str, str]:
    return {"Upload-Offset": str(state["offset"]), "Upload-Length": str(state["size"]),
            "Cache-Control": "no-store"}


def _chunk_offset(request: Request) -> int | Response:
    """The chunk's offset: ``Upload-Offset: N`` or ``Content-Range: bytes N-M/size``."""
    raw = request.headers.get("upload-offset")
    if raw is not None:
        if raw.isdigit() and len(raw) < 19:
            return int(raw)
        return error_response(400, "Upload-Offset must be a number of bytes", code="invalid")
    match = _CONTENT_RANGE.fullmatch(request.headers.get("content-range", ""))
    if match is None:
        return error_response(400, "Name the chunk's offset: Upload-Offset: N, or "
                              "Content-Range: bytes N-M/size", code="invalid")
    return int(match.group(1))


def _range(request: Request) -> tuple[int | None, int | None]:
    """(the chunk's length, the whole size) a ``Content-Range`` announces; None for what it
    does not say (no header, or ``/*``)."""
    match = _CONTENT_RANGE.fullmatch(request.headers.get("content-range", ""))
    if match is None:
        return None, None
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    return (end - start + 1 if end >= start else -1), total
