"""Uploaded files on the node's own disk, under ``DATA_DIR/uploads`` (the zero set-up default;
one node, or nodes sharing that folder)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from backend.storage.stored import StoredFile

_COPY_BUFFER = 1024 * 1024


class LocalFiles:
    """A ``FileStore`` in a folder. Writes go to a temporary name first and are renamed into
    place, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):  # keys are the service's own; still
            raise ValueError(f"storage key outside the store: {key!r}")
        return path

    async def put(self, key: str, source: BinaryIO, content_type: str) -> None:
        await asyncio.to_thread(self._write, key, source)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write_bytes, key, data)

    async def copy_into(self, key: str, target: BinaryIO) -> None:
        await asyncio.to_thread(self._copy_into, key, target)

    async def delete(self, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete, keys)

    def serve(self, key: str, *, name: str, content_type: str, seconds: int) -> StoredFile:
        return StoredFile(path=self._path(key))

    def _write(self, key: str, source: BinaryIO) -> None:
        source.seek(0)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, _COPY_BUFFER)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _copy_into(self, key: str, target: BinaryIO) -> None:
        with open(self._path(key), "rb") as source:
            shutil.copyfileobj(source, target, _COPY_BUFFER)

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)
