"""A file's type, told by its first bytes: what the client says it is counts for nothing."""

from __future__ import annotations

import re

#: Bytes at the start of a file → its type. Longer signatures first where they share a prefix.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
    (b"\x1f\x8b", "application/gzip"),
    (b"OggS", "audio/ogg"),
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
    # Two-letter and three-letter signatures that text starts with too ("BMW …", "ID3 …"):
    # the header's next fields must be right as well.
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"  # file size, then four reserved zero bytes
    if head[:3] == b"ID3" and len(head) >= 5 and head[3] in (2, 3, 4) and head[4] != 0xFF:
        return "audio/mpeg"  # an ID3v2 tag: major version 2-4, then its revision
    if _is_text(head):
        return "text/plain"
    return OCTET_STREAM


#: Control characters (Unicode's Cc: C0, DEL and C1) but the whitespace of text files.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL or other control characters than whitespace (a cut multi-byte
    character at the end of ``head`` is allowed). Every other character counts as text: a
    byte-order mark, no-break and ideographic spaces, the joiners of emoji sequences and
    the direction marks of right-to-left text are in ordinary files."""
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return _CONTROL.search(text) is None


def allowed(kind: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``kind`` matches one of ``patterns`` (``image/png``, ``image/*`` or ``*/*``)."""
    major = kind.split("/", 1)[0]
    return any(p in (kind, "*/*", f"{major}/*") for p in patterns)


def is_image(kind: str) -> bool:
    """Whether a thumbnail may be made of a file of type ``kind`` (Pillow reads it)."""
    return kind in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
