"""Short-lived download links: HMAC-SHA256 of the file, the variant and the expiry, keyed
with a key derived from the server's secret (never the secret itself)."""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum
from urllib.parse import urlencode

from backend.service.errors import ChatError


class Variant(StrEnum):
    """What a link serves of an upload."""

    FILE = "file"
    THUMBNAIL = "thumbnail"


def link_expired() -> ChatError:
    return ChatError("link_expired", "This download link has expired; ask for a new one", 403)


def bad_signature() -> ChatError:
    return ChatError("bad_signature", "This download link is not valid", 403)


class LinkSigner:
    """Makes and checks the links ``/api/v1/chat/uploads/{id}[/thumbnail]?expires=&signature=``."""

    def __init__(self, secret: str, seconds: int, base_url: str = "") -> None:
        self._key = hmac.new(secret.encode(), b"confab upload links", hashlib.sha256).digest()
        self.seconds = seconds
        self.base_url = base_url

    def link(self, upload_id: int, variant: Variant, *, now: float | None = None) -> str:
        """A link to ``variant`` of the upload, valid for ``seconds`` from now."""
        expires = int(now if now is not None else time.time()) + self.seconds
        query = urlencode({"expires": expires, "signature": self._sign(upload_id, variant,
                                                                        expires)})
        path = f"/api/v1/chat/uploads/{upload_id}"
        if variant == Variant.THUMBNAIL:
            path += "/thumbnail"
        return f"{self.base_url}{path}?{query}"

    def check(self, upload_id: int, variant: Variant, expires: str, signature: str) -> int:
        """Seconds the link has left; raises ``bad_signature`` or ``link_expired``. The
        signature is checked first: a changed expiry is a bad link, not an expired one."""
        if not expires.isdigit() or len(expires) > 12:
            raise bad_signature()
        wanted = self._sign(upload_id, variant, int(expires))
        if not hmac.compare_digest(wanted, signature):
            raise bad_signature()
        left = int(expires) - int(time.time())
        if left <= 0:
            raise link_expired()
        return left

    def _sign(self, upload_id: int, variant: Variant, expires: int) -> str:
        text = f"{upload_id}.{variant}.{expires}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()
