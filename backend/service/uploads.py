"""Uploaded files (CONTRACT section 11, docs/files.md): taken in whole or in chunks, checked
(size, type told by the bytes, SHA-256), kept in a ``FileStore``, attached to one message, and
handed out through short-lived signed links.

An upload is its uploader's until a message names it (``upload_id``); from then on it is seen
by whoever sees that conversation, and a deleted message takes it along.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

from backend.service.access import ensure_upload_visible
from backend.service.actors import Actor
from backend.service.clock import now
from backend.service.errors import ChatError, conflict, invalid, not_found, too_large, unavailable
from backend.service.filetypes import HEAD_BYTES, allowed, is_image, sniff
from backend.service.ports import FileStore
from backend.service.signing import LinkSigner, Variant
from backend.service.thumbnails import THUMBNAIL_TYPE, thumbnail
from backend.settings import Uploads as UploadSettings
from backend.storage.stored import StoredFile
from models import Upload, UploadState

log = logging.getLogger("confab.uploads")

#: How long the object store's own link (a redirect target) lives: long enough to follow.
REDIRECT_SECONDS = 60
_READ_BUFFER = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Download:
    """A file a client may have now: what to send and for how long it may be cached."""

    name: str
    content_type: str
    size: int | None
    stored: StoredFile
    seconds: int


@dataclass(frozen=True, slots=True)
class FileContents:
    """An attached file as it is sent on to an outside platform: its bytes, and a signed link
    (absolute when ``PUBLIC_URL`` is set) for platforms that fetch files themselves."""

    name: str
    content_type: str
    data: bytes
    url: str


def unsupported_type(kind: str) -> ChatError:
    return ChatError("unsupported_type", f"Files of type {kind} are not accepted", 415)


def clean_name(name: str | None) -> str:
    """The file's name as shown: its last path component, without control characters, at most
    255 characters; ``file`` when nothing is left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:255] or "file"


def _digest(source: BinaryIO) -> tuple[int, str, bytes]:
    """(size, SHA-256, first bytes) of ``source``, read once from its start. Blocking."""
    source.seek(0)
    hasher = hashlib.sha256()
    size = 0
    head = b""
    while chunk := source.read(_READ_BUFFER):
        if len(head) < HEAD_BYTES:
            head += chunk[:HEAD_BYTES - len(head)]
        hasher.update(chunk)
        size += len(chunk)
    source.seek(0)
    return size, hasher.hexdigest(), head


class Uploads:
    """Every operation on uploaded files, once for every door."""

    def __init__(self, store: FileStore, settings: UploadSettings, secret: str) -> None:
        self.store = store
        self.settings = settings
        self.signer = LinkSigner(secret, settings.url_seconds, settings.public_url)

    # -- what clients see -------------------------------------------------------------------

    def describe(self, upload: Upload) -> dict[str, Any]:
        """An upload as its uploader sees it, with fresh signed links."""
        described = {"id": upload.id, "name": upload.name, "size": upload.size,
                     "type": upload.content_type, "sha256": upload.sha256,
                     "state": str(upload.state), "url": self.signer.link(upload.id, Variant.FILE)}
        if upload.thumbnail_key:
            described["thumbnail_url"] = self.signer.link(upload.id, Variant.THUMBNAIL)
        return described

    @staticmethod
    def attachment(upload: Upload) -> dict[str, Any]:
        """What a message stores of its upload (``messages.file``): links are made when it is
        shown, never stored, since they expire."""
        return {"upload_id": upload.id, "name": upload.name, "size": upload.size,
                "type": upload.content_type, "thumbnail": upload.thumbnail_key is not None}

    def present(self, stored: dict[str, Any]) -> dict[str, Any]:
        """A message's ``file`` as clients get it: ``{url, name, size, type, upload_id,
        thumbnail_url}`` with links valid for ``UPLOAD_URL_SECONDS`` from now."""
        upload_id = stored["upload_id"]
        return {"url": self.signer.link(upload_id, Variant.FILE), "name": stored.get("name", ""),
                "size": stored.get("size", 0), "type": stored.get("type", ""),
                "upload_id": upload_id,
                "thumbnail_url": self.signer.link(upload_id, Variant.THUMBNAIL)
                if stored.get("thumbnail") else None}

    # -- whole uploads ----------------------------------------------------------------------

    async def create(self, actor: Actor, name: str | None, source: BinaryIO) -> dict[str, Any]:
        """Take in the whole file in ``source`` (a spooled or temporary file)."""
        upload = Upload(owner_key=actor.key, name=clean_name(name), size=0,
                        state=UploadState.READY)
        await self._ingest(upload, source)
        await upload.save()
        return self.describe(upload)

    async def _ingest(self, upload: Upload, source: BinaryIO) -> None:
        """Check ``source`` (size, type by its bytes), store it and its thumbnail, and fill in
        ``upload``'s size, type, checksum and keys (not saved)."""
        size, sha256, head = await asyncio.to_thread(_digest, source)
        self._check_size(size)
        kind = sniff(head)
        if not allowed(kind, self.settings.allowed_types):
            raise unsupported_type(kind)
        thumb = None
        if is_image(kind):  # before the store has it: a store may close ``source``
            thumb = await asyncio.to_thread(thumbnail, source, self.settings.thumbnail_pixels)
        key = f"files/{secrets.token_hex(16)}"
        keys = [key]
        try:
            await self.store.put(key, source, kind)
            if thumb is not None:
                keys.append(f"{key}-thumbnail")
                await self.store.put_bytes(keys[1], thumb, THUMBNAIL_TYPE)
        except Exception as exc:
            await self._discard(keys)
            log.warning("file store failed: %s: %s", type(exc).__name__, str(exc)[:200])
            raise unavailable("The file store is unavailable; retry later") from exc
        upload.size, upload.sha256, upload.content_type = size, sha256, kind
        upload.storage_key = key
        upload.thumbnail_key = keys[1] if len(keys) > 1 else None

    def _check_size(self, size: int) -> None:
        if size <= 0:
            raise invalid("The file is empty")
        if size > self.settings.max_bytes:
            raise too_large(f"The file is larger than {self.settings.max_bytes} bytes")

    async def _discard(self, keys: list[str]) -> None:
        """Delete objects nothing names any more; a failure leaves orphans, logged."""
        if not keys:
            return
        try:
            await self.store.delete(keys)
        except Exception as exc:
            log.warning("could not delete %d stored object(s): %s: %s", len(keys),
                        type(exc).__name__, str(exc)[:200])

    # -- resumable uploads ------------------------------------------------------------------

    async def open_session(self, actor: Actor, name: str | None, size: int) -> dict[str, Any]:
        """Start a resumable upload of ``size`` bytes; chunks follow with ``append``."""
        self._check_size(size)
        upload = await Upload.create(owner_key=actor.key, name=clean_name(name), size=size,
                                     state=UploadState.RECEIVING)
        return self.session_view(upload)

    def session_view(self, upload: Upload) -> dict[str, Any]:
        return {"id": upload.id, "name": upload.name, "size": upload.size,
                "offset": upload.received, "state": str(upload.state),
                "chunk_max": self.settings.chunk_max_bytes,
                "url": f"/api/v1/chat/uploads/sessions/{upload.id}"}

    async def session(self, actor: Actor, upload_id: int) -> dict[str, Any]:
        """Where a resumable upload stands (its ``offset``: the next byte it expects)."""
        return self.session_view(await self._own(actor, upload_id))

    async def append(self, actor: Actor, upload_id: int, offset: int, data: bytes,
                     total: int | None = None) -> dict[str, Any]:
        """Store the chunk ``data`` at ``offset``, which must be the upload's offset now (a
        retried or concurrent chunk gets 409 with the offset to go on from); ``total``, when
        the client names it, must be the upload's size. Returns the session's new state. A
        chunk is kept whole or not at all: an interrupted one never reaches here."""
        upload = await self._own(actor, upload_id)
        if upload.state != UploadState.RECEIVING:
            raise conflict("This upload is finished")
        if total is not None and total != upload.size:
            raise invalid(f"The upload's size is {upload.size} bytes, not {total}")
        if offset != upload.received:
            raise OffsetMismatch(upload.received)
        if not data:
            raise invalid("The chunk is empty")
        if len(data) > self.settings.chunk_max_bytes:
            raise too_large(f"A chunk is at most {self.settings.chunk_max_bytes} bytes")
        if offset + len(data) > upload.size:
            raise invalid(f"The chunk ends past the upload's size ({upload.size} bytes)")
        if offset == 0:  # refuse a file of the wrong type before it is all sent
            kind = sniff(data[:HEAD_BYTES])
            if not allowed(kind, self.settings.allowed_types):
                raise unsupported_type(kind)
        key = f"parts/{upload.id}/{offset:016d}-{secrets.token_hex(4)}"
        try:
            await self.store.put_bytes(key, data, "application/octet-stream")
        except Exception as exc:
            log.warning("file store failed: %s: %s", type(exc).__name__, str(exc)[:200])
            raise unavailable("The file store is unavailable; retry later") from exc
        # Only from the offset read: a concurrent chunk that won keeps its own part.
        moved = await Upload.filter(id=upload.id, state=UploadState.RECEIVING,
                                    received=offset).update(
            received=offset + len(data), parts=[*upload.parts, key])
        if not moved:
            await self._discard([key])
            fresh = await self._own(actor, upload_id)
            raise OffsetMismatch(fresh.received)
        upload.received = offset + len(data)
        return self.session_view(upload)

    async def finish(self, actor: Actor, upload_id: int) -> dict[str, Any]:
        """Assemble a fully received upload, check it as a whole upload is checked, and make
        it ready to attach."""
        upload = await self._own(actor, upload_id)
        if upload.state != UploadState.RECEIVING:
            raise conflict("This upload is finished already")
        if upload.received != upload.size:
            raise ChatError("upload_incomplete", f"The upload has {upload.received} of "
                            f"{upload.size} bytes", 409)
        parts = list(upload.parts)
        with tempfile.TemporaryFile() as assembled:
            try:
                for key in parts:
                    await self.store.copy_into(key, assembled)
            except Exception as exc:
                log.warning("file store failed: %s: %s", type(exc).__name__, str(exc)[:200])
                raise unavailable("The file store is unavailable; retry later") from exc
            try:
                await self._ingest(upload, assembled)
            except ChatError as refused:
                if refused.code != "unavailable":  # nothing to resume: the file is refused
                    await Upload.filter(id=upload.id, state=UploadState.RECEIVING).delete()
                    await self._discard(parts)
                raise
        done = await Upload.filter(id=upload.id, state=UploadState.RECEIVING).update(
            state=UploadState.READY, size=upload.size, sha256=upload.sha256,
            content_type=upload.content_type, storage_key=upload.storage_key,
            thumbnail_key=upload.thumbnail_key, parts=[])
        if not done:  # finished meanwhile by a concurrent call
            await self._discard([upload.storage_key, *([upload.thumbnail_key]
                                                        if upload.thumbnail_key else [])])
            raise conflict("This upload is finished already")
        await self._discard(parts)
        upload.state = UploadState.READY
        return self.describe(upload)

    async def _own(self, actor: Actor, upload_id: int) -> Upload:
        upload = await Upload.get_or_none(id=upload_id)
        if upload is None or upload.owner_key != actor.key:
            raise not_found("Upload")
        return upload

    # -- attaching to a message (the send path, only for a message with ``upload_id``) ----

    async def claim(self, actor: Actor, upload_id: int, conversation_id: int) -> Upload:
        """Mark the actor's ready upload as attached in ``conversation_id``: one message only
        may name it (a second claim is refused)."""
        claimed = await Upload.filter(id=upload_id, owner_key=actor.key,
                                      state=UploadState.READY).update(
            state=UploadState.ATTACHED, conversation_id=conversation_id)
        upload = await Upload.get_or_none(id=upload_id)
        if claimed and upload is not None:
            return upload
        if upload is None or upload.owner_key != actor.key or upload.state == UploadState.DELETED:
            raise invalid("upload_id names no upload of yours")
        if upload.state == UploadState.RECEIVING:
            raise conflict("This upload is not finished")
        raise conflict("This upload is attached to a message already")

    async def release(self, upload_id: int) -> None:
        """A send that claimed the upload failed: it is its uploader's again."""
        await Upload.filter(id=upload_id, state=UploadState.ATTACHED,
                            message_id__isnull=True).update(state=UploadState.READY,
                                                            conversation_id=None)

    async def bind(self, upload_id: int, message_id: int) -> None:
        """Record the message that names the upload (after the send's commit)."""
        await Upload.filter(id=upload_id).update(message_id=message_id)

    async def message_deleted(self, stored: dict[str, Any]) -> None:
        """A message naming an upload was deleted: every link to the file is refused from
        now on and its objects are deleted."""
        upload_id = stored.get("upload_id")
        if not isinstance(upload_id, int):
            return
        upload = await Upload.get_or_none(id=upload_id)
        if upload is None or upload.state == UploadState.DELETED:
            return
        await Upload.filter(id=upload_id).update(state=UploadState.DELETED)
        await self._discard([k for k in (upload.storage_key, upload.thumbnail_key) if k])

    # -- what no message names -------------------------------------------------------------

    async def sweep(self, batch: int = 500) -> int:
        """Delete uploads no message named within ``UPLOAD_UNATTACHED_SECONDS`` and resumable
        uploads not finished by then, with their objects; returns how many. Each row goes only
        while it is still unattached: a send claiming it at the same moment wins or loses
        whole (every node runs this; the deletes are idempotent)."""
        cutoff = now() - timedelta(seconds=self.settings.unattached_seconds)
        stale = await Upload.filter(state__in=(UploadState.RECEIVING, UploadState.READY),
                                    created_at__lt=cutoff).order_by("id").limit(batch)
        swept = 0
        for upload in stale:
            if not await Upload.filter(id=upload.id, state=upload.state).delete():
                continue  # claimed, finished or swept meanwhile
            swept += 1
            await self._discard([k for k in (upload.storage_key, upload.thumbnail_key) if k]
                                + list(upload.parts))
        return swept

    # -- downloads --------------------------------------------------------------------------

    async def signed(self, upload_id: int, variant: Variant, expires: str,
                     signature: str) -> Download:
        """The file a signed link names: the link is the permission (it was handed to those
        who may see the file), as long as it has not expired and the file still exists."""
        left = self.signer.check(upload_id, variant, expires, signature)
        upload = await Upload.get_or_none(id=upload_id)
        if upload is None or upload.state not in (UploadState.READY, UploadState.ATTACHED):
            raise not_found("File")
        return self._download(upload, variant, left)

    async def fetch(self, actor: Actor, upload_id: int, variant: Variant) -> Download:
        """The file for a signed-in actor who may see it (``access.ensure_upload_visible``)."""
        upload = await self._visible(actor, upload_id)
        return self._download(upload, variant, self.settings.url_seconds)

    async def contents(self, upload_id: int) -> FileContents | None:
        """The bytes of an upload a message names, for the node itself to send on (a staff
        reply to a platform customer); None when it is gone."""
        upload = await Upload.get_or_none(id=upload_id)
        if upload is None or upload.state not in (UploadState.READY, UploadState.ATTACHED):
            return None
        buffer = io.BytesIO()
        await self.store.copy_into(upload.storage_key, buffer)
        return FileContents(upload.name, upload.content_type, buffer.getvalue(),
                            self.signer.link(upload.id, Variant.FILE))

    async def links(self, actor: Actor, upload_id: int) -> dict[str, Any]:
        """Fresh signed links to an upload the actor may see."""
        return self.describe(await self._visible(actor, upload_id))

    async def _visible(self, actor: Actor, upload_id: int) -> Upload:
        upload = await Upload.get_or_none(id=upload_id)
        if upload is None:
            raise not_found("Upload")
        await ensure_upload_visible(actor, upload)
        if upload.state == UploadState.RECEIVING:
            raise conflict("This upload is not finished")
        return upload

    def _download(self, upload: Upload, variant: Variant, seconds: int) -> Download:
        if variant == Variant.THUMBNAIL:
            if not upload.thumbnail_key:
                raise not_found("Thumbnail")
            key, name, kind, size = upload.thumbnail_key, "thumbnail.webp", THUMBNAIL_TYPE, None
        else:
            key, name, kind, size = (upload.storage_key, upload.name, upload.content_type,
                                     upload.size)
        stored = self.store.serve(key, name=name, content_type=kind,
                                  seconds=min(seconds, REDIRECT_SECONDS))
        return Download(name, kind, size, stored, seconds)


class OffsetMismatch(ChatError):
    """409: a chunk not at the upload's offset; ``offset`` is where to go on from."""

    def __init__(self, offset: int) -> None:
        super().__init__("offset_mismatch", f"The upload's offset is {offset}", 409)
        self.offset = offset
