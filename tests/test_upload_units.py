"""Unit tests of the uploads' pure parts: types told by the bytes, signed links, file names,
settings. The end-to-end behaviour is in test_uploads.py."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from backend.service.errors import ChatError
from backend.service.filetypes import allowed, sniff
from backend.service.signing import LinkSigner, Variant
from backend.service.thumbnails import thumbnail
from backend.service.uploads import clean_name
from backend.settings import ConfigurationError, Settings, StorageKind


def _image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, kind)
    return out.getvalue()


@pytest.mark.parametrize(("data", "kind"), [
    (_image("PNG"), "image/png"),
    (_image("JPEG"), "image/jpeg"),
    (_image("GIF"), "image/gif"),
    (_image("WEBP"), "image/webp"),
    (_image("BMP"), "image/bmp"),
    (b"%PDF-1.7\n...", "application/pdf"),
    (b"PK\x03\x04rest", "application/zip"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00", "video/mp4"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
    (b"ID3\x04\x00", "audio/mpeg"),
    ("héllo, wörld\n".encode(), "text/plain"),
    ("cut in the middle: é".encode()[:-1], "text/plain"),
    (b"text with a \x00 NUL", "application/octet-stream"),
    (b"\x01\x02\x03", "application/octet-stream"),
    (b"<html><script>", "text/plain"),  # never text/html: served as plain text, if allowed
    # Ordinary text: a byte-order mark, no-break and ideographic spaces, an emoji sequence
    # joined by U+200D, right-to-left marks; and text that starts as a signature does.
    ("\ufeffname;price\n\u00a0caf\u00e9;3\u00a0\u20ac\n".encode(), "text/plain"),
    ("\u3000\u3053\u3093\u306b\u3061\u306f \U0001f469\u200d\U0001f4bb\n".encode(), "text/plain"),
    ("\u200f\u05e9\u05dc\u05d5\u05dd \u200eok\n".encode(), "text/plain"),
    (b"BMW service notes, 2024\n", "text/plain"),
    (b"ID3 tags of my songs\n", "text/plain"),
    (b"\x1b[31mred\x1b[0m", "application/octet-stream"),  # an escape: not text
    ("a C1 control \u0085 here".encode(), "application/octet-stream"),
])
def test_sniff_tells_the_type_by_the_bytes(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


def test_allowed_types_take_wildcards() -> None:
    patterns = ("image/*", "application/pdf")
    assert allowed("image/webp", patterns) and allowed("application/pdf", patterns)
    assert not allowed("application/zip", patterns)
    assert allowed("application/zip", ("*/*",))


def test_links_are_refused_when_changed_or_expired() -> None:
    signer = LinkSigner("s" * 40, 60)
    url = signer.link(5, Variant.FILE)
    query = dict(p.split("=") for p in url.split("?")[1].split("&"))
    expires, signature = query["expires"], query["signature"]
    assert 0 < signer.check(5, Variant.FILE, expires, signature) <= 60
    for upload_id, variant, exp, sig in [
        (6, Variant.FILE, expires, signature),
        (5, Variant.THUMBNAIL, expires, signature),
        (5, Variant.FILE, str(int(expires) + 1), signature),
        (5, Variant.FILE, expires, signature[:-1] + ("0" if signature[-1] != "0" else "1")),
        (5, Variant.FILE, "-1", signature),
    ]:
        with pytest.raises(ChatError) as refused:
            signer.check(upload_id, variant, exp, sig)
        assert refused.value.code == "bad_signature"
    other = LinkSigner("t" * 40, 60)
    with pytest.raises(ChatError):
        other.check(5, Variant.FILE, expires, signature)
    old = signer.link(5, Variant.FILE, now=time.time() - 120)
    query = dict(p.split("=") for p in old.split("?")[1].split("&"))
    with pytest.raises(ChatError) as expired:
        signer.check(5, Variant.FILE, query["expires"], query["signature"])
    assert expired.value.code == "link_expired"
    assert LinkSigner("s" * 40, 60, "https://chat.example.com").link(
        5, Variant.THUMBNAIL).startswith("https://chat.example.com/api/v1/chat/uploads/5/thumbnail?")


def test_names_lose_paths_and_control_characters() -> None:
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("C:\\Users\\me\\photo.png") == "photo.png"
    assert clean_name("a\x00b\r\nc.txt") == "abc.txt"
    assert clean_name("") == clean_name(None) == clean_name("dir/") == "file"
    assert len(clean_name("x" * 1000)) == 255


def test_thumbnail_of_a_non_image_is_none() -> None:
    assert thumbnail(io.BytesIO(b"%PDF-1.7 not an image"), 320) is None
    small = thumbnail(io.BytesIO(_image("PNG")), 4)
    assert small is not None and small[:4] == b"RIFF"


def test_upload_settings(tmp_path: Path) -> None:
    base = {"DATA_DIR": str(tmp_path)}
    default = Settings.from_env(base).uploads
    assert default.storage == StorageKind.LOCAL and "image/*" in default.allowed_types
    custom = Settings.from_env({**base, "UPLOAD_STORAGE": "S3", "S3_BUCKET": "files",
                                "UPLOAD_ALLOWED_TYPES": "image/png, text/plain",
                                "PUBLIC_URL": "https://x.example/"}).uploads
    assert custom.storage == StorageKind.S3
    assert custom.allowed_types == ("image/png", "text/plain")
    assert custom.public_url == "https://x.example"
    for env, word in [({"UPLOAD_STORAGE": "ftp"}, "UPLOAD_STORAGE"),
                      ({"UPLOAD_STORAGE": "s3"}, "S3_BUCKET"),
                      ({"UPLOAD_MAX_BYTES": "0"}, "UPLOAD_MAX_BYTES"),
                      ({"UPLOAD_URL_SECONDS": "x"}, "UPLOAD_URL_SECONDS")]:
        with pytest.raises(ConfigurationError, match=word):
            Settings.from_env({**base, **env})
