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
"""

from __future__ import annotations

import binascii
import inspect
from typing import Any

from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.api_jwt import PyJWT
from jwt.exceptions import DecodeError, InvalidKeyError
from jwt.utils import base64url_decode, base64url_encode

from backend.compat.assumptions import Assumption, Pin, assigned, holds, unchanged, version

PIN = Pin("pyjwt", "2.15.1")
PINS = [PIN]

__all__ = ["DECODER", "KeyOnce", "LeanJWS", "lean_decoder"]

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
]
