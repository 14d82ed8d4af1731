"""Uploaded files in an S3-compatible object store (AWS S3, MinIO, Ceph, …), through boto3
in worker threads. Downloads are handed out as the store's own presigned links."""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO
from urllib.parse import quote

import boto3
from botocore.config import Config

from backend.settings import Uploads
from backend.storage.stored import StoredFile

_CHUNK = 1024 * 1024


class S3Files:
    """A ``FileStore`` in one bucket, under ``S3_PREFIX``. A boto3 client is safe to share
    between threads; each call runs in one."""

    def __init__(self, uploads: Uploads) -> None:
        self.bucket = uploads.s3_bucket
        self.prefix = uploads.s3_prefix
        # Path-style addressing when an endpoint is named: what S3-compatible servers serve.
        config = Config(signature_version="s3v4", retries={"max_attempts": 3},
                        s3={"addressing_style": "path" if uploads.s3_endpoint_url else "auto"})
        self.client: Any = boto3.client(
            "s3", endpoint_url=uploads.s3_endpoint_url, region_name=uploads.s3_region,
            aws_access_key_id=uploads.s3_access_key,
            aws_secret_access_key=uploads.s3_secret_key, config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def put(self, key: str, source: BinaryIO, content_type: str) -> None:
        source.seek(0)
        await asyncio.to_thread(self.client.upload_fileobj, source, self.bucket, self._key(key),
                                ExtraArgs={"ContentType": content_type})

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=self._key(key),
                                Body=data, ContentType=content_type)

    async def copy_into(self, key: str, target: BinaryIO) -> None:
        await asyncio.to_thread(self._copy_into, key, target)

    def _copy_into(self, key: str, target: BinaryIO) -> None:
        # Not download_fileobj: its ranged parts seek to their offset in the object, and the
        # object is appended at ``target``'s position here.
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        try:
            for chunk in body.iter_chunks(_CHUNK):
                target.write(chunk)
        finally:
            body.close()

    async def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # the most one request may name
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            await asyncio.to_thread(self.client.delete_objects, Bucket=self.bucket,
                                    Delete={"Objects": batch, "Quiet": True})

    def serve(self, key: str, *, name: str, content_type: str, seconds: int) -> StoredFile:
        disposition = "inline" if content_type.startswith("image/") else "attachment"
        url = self.client.generate_presigned_url("get_object", Params={
            "Bucket": self.bucket, "Key": self._key(key),
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
        }, ExpiresIn=seconds)
        return StoredFile(redirect=url)
