"""One HTTP call to a platform's API, and what its failure means for a retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from backend.service.uploads import FileContents


@dataclass(frozen=True, slots=True)
class Reply:
    """What a staff reply sends to a platform: its text (may be empty with a file), and the
    file it carries, if any."""

    text: str
    file: FileContents | None = None


class DeliveryError(Exception):
    """A send that did not go through. ``retryable``: trying again later may succeed (network
    fault, 5xx, 429); otherwise the platform refused it for good (bad chat id, blocked bot)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    params: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> tuple[int, Any]:
    """POST ``body`` as JSON; returns (status, decoded JSON or None). Transport failures raise a
    retryable DeliveryError whose message has ``secrets`` (tokens in the URL) blanked out."""
    return await _post(client, url, secrets, json=body, params=params)


async def post_multipart(
    client: httpx.AsyncClient,
    url: str,
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes, str]],
    *,
    secrets: tuple[str, ...] = (),
) -> tuple[int, Any]:
    """POST ``fields`` and ``files`` (name, bytes, type) as ``multipart/form-data``; answers and
    fails as ``post_json``."""
    return await _post(client, url, secrets, data=fields, files=files)


async def _post(client: httpx.AsyncClient, url: str, secrets: tuple[str, ...],
                **request: Any) -> tuple[int, Any]:
    try:
        response = await client.post(url, **request)
    except httpx.HTTPError as exc:
        detail = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                        secrets)
        raise DeliveryError(detail, retryable=True) from None
    try:
        data = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        data = None
    return response.status_code, data


def http_failure(status: int, description: str, retry_after: float | None = None) -> DeliveryError:
    """The DeliveryError for an HTTP error answer: 429 and 5xx may pass later, other 4xx not."""
    retryable = status == 429 or status >= 500
    return DeliveryError(f"HTTP {status}: {description}"[:255], retryable=retryable,
                         retry_after=retry_after)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every non-empty secret replaced by ``***``: error texts may quote URLs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
