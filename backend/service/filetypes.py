"""A file's type, told by its first bytes: what the client says it is counts for nothing."""

from __future__ import annotations

#: Bytes at the start of a file → its type. Longer signatures first where they share a prefix.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
    (b"\x1f\x8b", "application/gzip"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"\xff\xf3", "audio/mpeg"),
    (b"\xff\xf2", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
)

#: How many leading bytes ``sniff`` needs.
HEAD_BYTES = 4096
OCTET_STREAM = "application/octet-stream"


def sniff(head: bytes) -> str:
    """The type of a file starting with ``head`` (up to ``HEAD_BYTES``);
    ``application/octet-stream`` when none of the known signatures matches."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(
            head[8:12], OCTET_STREAM)
    if head[4:8] == b"ftyp":  # ISO base media: the brand tells video from still images
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1"):
            return "image/heic"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if _is_text(head):
        return "text/plain"
    return OCTET_STREAM


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL or other control characters than whitespace (a cut multi-byte
    character at the end of ``head`` is allowed)."""
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text)


def allowed(kind: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``kind`` matches one of ``patterns`` (``image/png``, ``image/*`` or ``*/*``)."""
    major = kind.split("/", 1)[0]
    return any(p in (kind, "*/*", f"{major}/*") for p in patterns)


def is_image(kind: str) -> bool:
    """Whether a thumbnail may be made of a file of type ``kind`` (Pillow reads it)."""
    return kind in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
