"""PyJWT 2.15.1 (pyproject.toml's pin): its segment decoder, with the alphabet check in C.

Every token decoded (backend/auth/tokens.py) goes through ``PyJWS._decode_base64url_segment``
three times (header, payload, signature). Upstream refuses a segment with a character outside
the base64url alphabet by testing each character in a generator (``any(character not in
_BASE64URL_ALPHABET for character in stripped)``): a Python step per character of the token,
about a fifth of a decode. ``LeanJWS`` overrides that static method with upstream's copied
(``PyJWS._decode_base64url_segment``, fingerprinted below), the one test written as
``stripped.translate(None, _BASE64URL_ALPHABET)``: what is left once the alphabet's bytes are
deleted is empty exactly when every character is in it. Everything else is upstream's, in
the same order with the same errors.

Each decode also prepares the key again (``HMACAlgorithm.prepare_key``), refusing one that
looks asymmetric by trying to parse it as PEM, SSH, DER and JWK: 12 µs for the node's one
secret at every decode. ``LeanJWS`` replaces the HMAC algorithms of its private
``_algorithms`` (where ``get_algorithm_by_name`` finds the one ``_verify_signature`` uses)
with ``KeyOnce``, which remembers the keys it prepared: a preparation depends on the key
alone, and a key refused raises as before and is never remembered.

``DECODER`` is a ``PyJWT`` (public) whose private ``_jws`` is a ``LeanJWS``; ``PyJWT`` makes
its own ``PyJWS`` in ``__init__`` and decodes through it.

``quick_claims`` answers the plainest case alone: an HS256 token whose header names nothing
but ``alg`` (and ``typ: JWT``), whose claims are all as PyJWT wants them (integer times in the
window, a string subject, the issuer and audience asked for), signed with a key that passes
the length check. It mirrors what ``PyJWT.decode_complete`` checks (``PyJWS.decode_complete``,
``_load``, ``_verify_signature``, ``_validate_headers``; ``PyJWT._validate_claims`` and the
claim checks it calls) for the default options, in a third of the time: no option merging,
no coroutine of checks, orjson for the two JSON texts. Anything else, a failure included,
gives None and the caller decodes through ``DECODER``, whose answer (its errors and their
words) stands: the quick path only ever accepts what upstream accepts, with the same claims.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import inspect
import time
import warnings
from typing import Any

import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.api_jwt import PyJWT
from jwt.exceptions import DecodeError, InvalidKeyError
from jwt.utils import base64url_decode, base64url_encode
from jwt.warnings import InsecureKeyLengthWarning

from backend.compat.assumptions import Assumption, Pin, assigned, holds, unchanged, version

PIN = Pin("pyjwt", "2.15.1")
PINS = [PIN]

__all__ = ["DECODER", "KeyOnce", "LeanJWS", "lean_decoder", "quick_claims"]

#: upstream's ``api_jws._BASE64URL_ALPHABET``
_BASE64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


#: Keys a ``KeyOnce`` remembers at most (a node has one secret; a rotation, a second).
MAX_KEYS = 4


class KeyOnce(HMACAlgorithm):
    """``HMACAlgorithm`` preparing each key once (see the module doc)."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self.prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self.prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)  # a refused key raises, never remembered
            if len(self.prepared) < MAX_KEYS:
                self.prepared[key] = prepared
        return prepared


class LeanJWS(PyJWS):
    """``PyJWS`` with the segment decoder's alphabet check in C and its HMAC keys prepared
    once (see the module doc)."""

    def __init__(self, algorithms: Any = None, options: Any = None) -> None:
        super().__init__(algorithms, options)
        for name, algorithm in list(self._algorithms.items()):
            if type(algorithm) is HMACAlgorithm:
                self._algorithms[name] = KeyOnce(algorithm.hash_alg)

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        # Accept trailing '=' used by some issuers (e.g. AWS ALB). Still
        # reject non-alphabet junk such as '!!!!' (GHSA-hxm8-2xgr-2p9m).
        padding = 0
        stripped = segment
        while stripped.endswith(b"="):
            stripped = stripped[:-1]
            padding += 1
            if padding > 2:
                raise DecodeError(f"Invalid {name} padding")

        if padding and len(segment) % 4 != 0:
            raise DecodeError(f"Invalid {name} padding")

        if len(stripped) % 4 == 1 or stripped.translate(None, _BASE64URL_ALPHABET):
            raise DecodeError(f"Invalid {name} padding")

        try:
            decoded = base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise DecodeError(f"Invalid {name} padding") from err

        if base64url_encode(decoded) != stripped:
            raise DecodeError(f"Invalid {name} padding")

        return decoded


def lean_decoder(options: Any = None) -> PyJWT:
    """A ``PyJWT`` with ``options`` (public: merged into its defaults once, here, rather than
    at every decode that passes them) decoding through a ``LeanJWS``."""
    decoder = PyJWT(options)
    decoder._jws = LeanJWS(options=decoder._jws.options)
    return decoder


#: ``jwt.decode``'s decoder, but through ``LeanJWS``.
DECODER = lean_decoder()

#: The options under which ``quick_claims`` answers as ``PyJWT.decode`` (every check on).
_DEFAULT_CHECKS = ("verify_signature", "verify_exp", "verify_nbf", "verify_iat", "verify_aud",
                   "verify_iss", "verify_sub", "verify_jti")
#: The only header ``quick_claims`` reads: nothing PyJWT would check further (kid, crit, b64).
_PLAIN_HEADERS = ({"alg": "HS256"}, {"alg": "HS256", "typ": "JWT"})
_HS256 = KeyOnce(hashlib.sha256)
#: What ``quick_claims`` lets through unread: the base64url alphabet and the segments' dots.
_TOKEN_ALPHABET = _BASE64URL_ALPHABET + b"."
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
#: Per key, an HMAC-SHA256 with the key taken in, copied for each token (not keyed again).
_keyed: dict[str | bytes, hmac.HMAC | None] = {}


def _hs256_for(key: str | bytes) -> hmac.HMAC | None:
    """The keyed HMAC of ``key`` as upstream prepares it; None for a key upstream would
    warn about (shorter than the hash). Raises ``InvalidKeyError`` as upstream."""
    if key in _keyed:
        return _keyed[key]
    prepared = _HS256.prepare_key(key)
    keyed = None if _HS256.check_key_length(prepared) is not None else hmac.new(
        prepared, digestmod=hashlib.sha256)
    if len(_keyed) < MAX_KEYS:
        _keyed[key] = keyed
    return keyed


def _segment(segment: bytes) -> bytes | None:
    """``LeanJWS._decode_base64url_segment`` of an unpadded segment of the alphabet (checked
    by the caller), or None where it raises: a length of 4n+1, or bits past the data (the
    bytes must encode back to the same text)."""
    if len(segment) % 4 == 1:
        return None
    decoded = binascii.a2b_base64((segment + b"=" * (-len(segment) % 4)).translate(_TO_STANDARD))
    encoded = binascii.b2a_base64(decoded, newline=False).translate(_TO_URLSAFE).rstrip(b"=")
    return decoded if encoded == segment else None


def quick_claims(decoder: PyJWT, token: str, key: str, issuer: str | None,
                 audience: str | None, leeway: int) -> dict[str, Any] | None:
    """The claims ``decoder.decode(token, key, algorithms=["HS256"], issuer=issuer,
    audience=audience, leeway=leeway)`` returns, when the token is of the plainest kind
    (see the module doc) and valid now; None otherwise (decode it through ``decoder``)."""
    options = decoder.options
    if options.get("strict_aud") or not all(options.get(name) for name in _DEFAULT_CHECKS):
        return None
    if not isinstance(token, str) or not token.isascii() or token.count(".") != 2:
        return None
    raw = token.encode()
    # Every character in the alphabet (or a dot): no padding, nothing else.
    if raw.translate(None, _TOKEN_ALPHABET):
        return None
    signing_input, _, crypto_segment = raw.rpartition(b".")
    header_segment, _, payload_segment = signing_input.partition(b".")
    header_data = _segment(header_segment)
    signature = _segment(crypto_segment)
    payload_data = _segment(payload_segment)
    if header_data is None or signature is None or payload_data is None:
        return None
    try:
        if orjson.loads(header_data) not in _PLAIN_HEADERS:
            return None
        mac = _hs256_for(key)
    except (InvalidKeyError, orjson.JSONDecodeError):
        return None
    if mac is None:
        return None
    mac = mac.copy()
    mac.update(signing_input)
    if not hmac.compare_digest(signature, mac.digest()):
        return None
    try:
        claims = orjson.loads(payload_data)
    except orjson.JSONDecodeError:
        return None
    if type(claims) is not dict:
        return None
    for claim in options["require"]:
        if claims.get(claim) is None:
            return None
    now = time.time()
    for claim in ("iat", "nbf", "exp"):
        if claim in claims and type(claims[claim]) is not int:
            return None
    if "iat" in claims and claims["iat"] > now + leeway:
        return None
    if "nbf" in claims and claims["nbf"] > now + leeway:
        return None
    if "exp" in claims and claims["exp"] <= now - leeway:
        return None
    if issuer is not None and claims.get("iss") != issuer:
        return None
    aud = claims.get("aud")
    if audience is None:
        if "aud" in claims and aud:
            return None
    elif not (aud == audience or (type(aud) is list and audience in aud
                                  and all(type(item) is str for item in aud))):
        return None
    if "sub" in claims and type(claims["sub"]) is not str:
        return None
    if "jti" in claims and type(claims["jti"]) is not str:
        return None
    return claims


#: Segments the copy must answer as upstream does: kept, padded, junk, bad lengths.
_SAMPLES = (b"", b"e30", b"eyJhIjoxfQ", b"eyJhIjoxfQ==", b"e30=", b"e30==", b"e30===",
            b"e3", b"e", b"!!!!", b"e3+/", b"e3 0", b"ab=c", b"eyJ\xff", b"AAB", b"-_-_")


def _answer(decode: object, segment: bytes) -> object:
    try:
        return decode(segment, "payload")  # type: ignore[operator]
    except DecodeError as error:
        return str(error)


def _same_answers() -> bool:
    return all(_answer(LeanJWS._decode_base64url_segment, s)
               == _answer(PyJWS._decode_base64url_segment, s) for s in _SAMPLES)


def _same_alphabet() -> bool:
    from jwt import api_jws

    return api_jws._BASE64URL_ALPHABET == _BASE64URL_ALPHABET


def _decodes_through_its_jws() -> bool:
    return isinstance(DECODER._jws, LeanJWS) and "self._jws.decode_complete" in _source()


def _keys_prepared_once() -> bool:
    """A token decoded through ``DECODER`` has its key prepared by ``KeyOnce``, once; a
    key ``HMACAlgorithm`` refuses is refused."""
    algorithm = DECODER._jws.get_algorithm_by_name("HS256")
    if not isinstance(algorithm, KeyOnce):
        return False
    key = "k" * 32
    token = PyJWT().encode({"sub": "1"}, key, algorithm="HS256")
    for _ in range(2):
        if DECODER.decode(token, key, algorithms=["HS256"]) != {"sub": "1"}:
            return False
    remembered = algorithm.prepared.pop(key, None) is not None
    pem = b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
    try:
        algorithm.prepare_key(pem)
    except InvalidKeyError:
        return remembered and pem not in algorithm.prepared
    return False


def _segments_answer() -> bool:
    """``_segment`` decodes what the segment decoder decodes, and refuses what it refuses,
    among the samples of the alphabet without padding."""
    for sample in (*_SAMPLES, b"eyJhbGciOiJIUzI1NiJ9", b"e30A", b"e31", b"AB", b"ABC", b"AAAA"):
        if b"=" in sample or sample.translate(None, _BASE64URL_ALPHABET):
            continue
        try:
            upstream: bytes | None = LeanJWS._decode_base64url_segment(sample, "payload")
        except DecodeError:
            upstream = None
        if _segment(sample) != upstream:
            return False
    return True


def _quick_answers() -> bool:
    """``quick_claims`` answers a plain valid token as ``DECODER`` does, and leaves to it
    every token it would refuse (or treat otherwise) among these."""
    key, issuer, audience = "q" * 32, "confab", "confab-clients"
    decoder = lean_decoder({"require": ["exp", "iat", "sub"]})
    now = int(time.time())
    good = {"sub": "7", "iat": now, "exp": now + 60, "iss": issuer, "aud": audience,
            "sid": "s", "type": "access"}
    encode = PyJWT().encode
    plain = encode(good, key, algorithm="HS256")
    claims = quick_claims(decoder, plain, key, issuer, audience, 10)
    if claims is None or claims != decoder.decode(plain, key, algorithms=["HS256"],
                                                  issuer=issuer, audience=audience,
                                                  leeway=10):
        return False
    if quick_claims(decoder, encode({**good, "aud": [audience, "x"]}, key, algorithm="HS256"),
                    key, issuer, audience, 10) is None:
        return False
    left = [
        encode(good, "w" * 32, algorithm="HS256"),  # another key
        encode(good, key * 2, algorithm="HS384"),
        encode(good, key, algorithm="HS256", headers={"kid": "k"}),
        encode({**good, "exp": now - 60}, key, algorithm="HS256"),
        encode({**good, "exp": str(now + 60)}, key, algorithm="HS256"),
        encode({**good, "iat": now + 60}, key, algorithm="HS256"),
        encode({**good, "nbf": now + 60}, key, algorithm="HS256"),
        encode({**good, "nbf": now - 0.5}, key, algorithm="HS256"),
        encode({**good, "iss": "other"}, key, algorithm="HS256"),
        encode({**good, "aud": "other"}, key, algorithm="HS256"),
        encode({**good, "aud": [audience, 1]}, key, algorithm="HS256"),
        encode({**good, "sub": 7}, key, algorithm="HS256"),
        encode({**good, "jti": 7}, key, algorithm="HS256"),
        encode({k: v for k, v in good.items() if k != "sub"}, key, algorithm="HS256"),
        plain + "=", plain[:-2], plain.replace(".", "..", 1), "a.b", 7,
    ]
    if any(quick_claims(decoder, token, key, issuer, audience, 10) is not None  # type: ignore[arg-type]
           for token in left):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        short = encode(good, "k", algorithm="HS256")
    return quick_claims(decoder, short, "k", issuer, audience, 10) is None


def _source() -> str:
    return inspect.getsource(PyJWT.decode_complete)


ASSUMPTIONS: list[Assumption] = [
    version(PIN),
    unchanged(PIN, PyJWS, "_decode_base64url_segment", "c00c1d4615f8809d"),
    assigned(PIN, PyJWT, "_jws"),
    holds(PIN, "PyJWT decodes through its own _jws", _decodes_through_its_jws,
          "PyJWT no longer decodes through its _jws"),
    assigned(PIN, PyJWS, "_algorithms"),
    holds(PIN, "a decode prepares its HMAC key through the algorithm's prepare_key",
          _keys_prepared_once, "KeyOnce is not what prepares a decode's key"),
    holds(PIN, "upstream's base64url alphabet is the copy's", _same_alphabet,
          "upstream's base64url alphabet changed"),
    holds(PIN, "LeanJWS decodes segments as PyJWS does", _same_answers,
          "the segment decoder's copy answers otherwise than upstream's"),
    unchanged(PIN, PyJWT, "decode_complete", "6522ecbd95d6662f"),
    unchanged(PIN, PyJWT, "_decode_payload", "1938b575e58f4314"),
    unchanged(PIN, PyJWT, "_validate_claims", "1396d6b733cc59af"),
    unchanged(PIN, PyJWT, "_validate_required_claims", "427e17fb1f0381aa"),
    unchanged(PIN, PyJWT, "_validate_iat", "46c80a04f5e7176d"),
    unchanged(PIN, PyJWT, "_validate_nbf", "4927ee1a7c537c13"),
    unchanged(PIN, PyJWT, "_validate_exp", "029fde067d930841"),
    unchanged(PIN, PyJWT, "_validate_iss", "a5f96c21fb9d045b"),
    unchanged(PIN, PyJWT, "_validate_aud", "a0db6053866eed76"),
    unchanged(PIN, PyJWT, "_validate_sub", "3bce68a5f977c5dc"),
    unchanged(PIN, PyJWT, "_validate_jti", "2ff9fbf9573c3e65"),
    unchanged(PIN, PyJWS, "decode_complete", "72798f0f952f54e3"),
    unchanged(PIN, PyJWS, "_load", "431d1ff11ddaa78d"),
    unchanged(PIN, PyJWS, "_verify_signature", "5059a16ea8a9ad7c"),
    unchanged(PIN, PyJWS, "_validate_headers", "22515e8f17bc80b0"),
    unchanged(PIN, HMACAlgorithm, "check_key_length", "62688fe2dc1bc229"),
    holds(PIN, "quick_claims decodes a segment as LeanJWS does", _segments_answer,
          "quick_claims decodes a segment otherwise than LeanJWS"),
    holds(PIN, "quick_claims accepts only what PyJWT.decode accepts, with its claims",
          _quick_answers, "quick_claims answers otherwise than PyJWT.decode"),
]
