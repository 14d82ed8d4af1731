"""Fake receivers of the server's deliveries to the outside, on 127.0.0.1: webhook receivers,
a Web Push service and FCM (its OAuth token endpoint and its v1 send endpoint).

Each checks what a real one checks and answers as it would: a webhook receiver verifies
``X-Confab-Signature`` with its secret; the push service verifies the VAPID ``Authorization``
(the JWT's signature against the key in ``k=``, its ``aud``, ``exp`` and ``sub``), the
``TTL`` header and decrypts the ``aes128gcm`` body with the subscription's private key; FCM's
token endpoint verifies the JWT assertion with the service account's public key and the send
endpoint the bearer token it issued. A request that fails a check is answered 400/401/403 and
recorded with the reason. Tests script the next answers per path (``script``), e.g. a 503 or
a 500 first, and wait on the recorded requests with a deadline. It runs in a thread, so the
server under test and the test's own event loop both reach it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

FCM_PROJECT = "confab-test"


@dataclass
class Received:
    """One request the fake received, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    #: Why a check failed ("" when every check passed).
    error: str = ""
    #: The decoded content: a webhook's JSON, a push's decrypted JSON, FCM's message.
    content: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class PushKeys:
    """A browser's subscription keys: the private half stays here to decrypt."""

    private: ec.EllipticCurvePrivateKey
    auth: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    @property
    def p256dh(self) -> str:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return b64(raw)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeOutside:
    """Start with ``FakeOutside()``; ``stop()`` when done."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.webhook_secrets: dict[str, str] = {}
        self.push_keys: dict[str, PushKeys] = {}
        self._scripts: dict[str, list[int]] = {}
        self._changed = threading.Condition()
        self.account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fcm_tokens: set[str] = set()
        self.gone_tokens: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- set-up -----------------------------------------------------------------------------

    def webhook(self, secret: str) -> str:
        """A new receiver URL whose requests are verified with ``secret``."""
        path = f"/hooks/{secrets.token_hex(6)}"
        self.webhook_secrets[path] = secret
        return self.base_url + path

    def subscription(self) -> dict[str, Any]:
        """A new browser subscription ``{endpoint, keys: {p256dh, auth}}``."""
        path = f"/push/{secrets.token_hex(8)}"
        keys = PushKeys(ec.generate_private_key(ec.SECP256R1()))
        self.push_keys[path] = keys
        return {"endpoint": self.base_url + path,
                "keys": {"p256dh": keys.p256dh, "auth": b64(keys.auth)}}

    def service_account(self) -> str:
        """A service account JSON whose token URI is this fake's."""
        pem = self.account_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        return json.dumps({
            "type": "service_account", "project_id": FCM_PROJECT,
            "private_key_id": "key1", "private_key": pem,
            "client_email": f"push@{FCM_PROJECT}.iam.gserviceaccount.com",
            "token_uri": self.base_url + "/oauth2/token"})

    def script(self, path_or_url: str, *statuses: int) -> None:
        """Answer the next requests to a path with ``statuses``, in order, before checking."""
        path = urlsplit(path_or_url).path
        with self._changed:
            self._scripts.setdefault(path, []).extend(statuses)

    # -- what was received ------------------------------------------------------------------

    def to(self, path_or_url: str) -> list[Received]:
        path = urlsplit(path_or_url).path
        with self._changed:
            return [r for r in self.received if r.path == path]

    async def wait(self, what: Callable[[list[Received]], bool], within: float = 30.0,
                   describe: str = "requests") -> list[Received]:
        """Wait until ``what(received)`` holds, up to ``within`` seconds."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: what(list(self.received)),
                                              timeout=within)

        if not await asyncio.to_thread(wait):
            got = [(r.path, r.status, r.error) for r in self.received]
            raise AssertionError(f"timed out waiting for {describe}; got {got}")
        with self._changed:
            return list(self.received)

    # -- request handling (server threads) --------------------------------------------------

    def answer(self, method: str, raw_path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, Any]:
        path = urlsplit(raw_path).path
        with self._changed:
            script = self._scripts.get(path)
            scripted = script.pop(0) if script else None
        if scripted is not None:
            record = Received(path, headers, body, scripted, "scripted")
            payload: Any = {"error": f"scripted {scripted}"}
        else:
            record, payload = self._check(method, path, headers, body)
        with self._changed:
            self.received.append(record)
            self._changed.notify_all()
        return record.status, payload

    def _check(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[Received, Any]:
        def refuse(status: int, why: str) -> tuple[Received, Any]:
            return Received(path, headers, body, status, why), {"error": why}

        if method != "POST":
            return refuse(405, "POST only")
        if path in self.webhook_secrets:
            return self._webhook(path, headers, body, refuse)
        if path in self.push_keys:
            return self._push(path, headers, body, refuse)
        if path == "/oauth2/token":
            return self._token(path, headers, body, refuse)
        if path == f"/v1/projects/{FCM_PROJECT}/messages:send":
            return self._fcm(path, headers, body, refuse)
        return refuse(404, "no such path")

    Refuse = Callable[[int, str], tuple[Received, Any]]

    def _webhook(self, path: str, headers: dict[str, str], body: bytes,
                 refuse: Refuse) -> tuple[Received, Any]:
        header = headers.get("x-confab-signature", "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        if set(parts) != {"t", "v1"} or not parts["t"].isdigit():
            return refuse(400, f"bad signature header {header!r}")
        if abs(time.time() - int(parts["t"])) > 300:
            return refuse(400, "stale timestamp")
        expected = hmac.new(self.webhook_secrets[path].encode(),
                            parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["v1"]):
            return refuse(401, "signature mismatch")
        if headers.get("content-type") != "application/json":
            return refuse(400, "not JSON")
        return Received(path, headers, body, 200, "", json.loads(body)), {"ok": True}

    def _push(self, path: str, headers: dict[str, str], body: bytes,
              refuse: Refuse) -> tuple[Received, Any]:
        auth = headers.get("authorization", "")
        if not auth.startswith("vapid "):
            return refuse(401, f"no VAPID authorization: {auth!r}")
        fields = dict(item.strip().split("=", 1) for item in auth[6:].split(","))
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                               unb64(fields["k"]))
            claims = jwt.decode(fields["t"], key, algorithms=["ES256"],
                                audience=self.base_url, options={"require": ["exp", "sub"]})
        except Exception as exc:
            return refuse(403, f"VAPID refused: {type(exc).__name__}: {exc}")
        if claims["exp"] > time.time() + 24 * 3600:
            return refuse(403, "VAPID exp more than 24 h ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return refuse(403, "VAPID sub is no mailto: or https: URL")
        if not headers.get("ttl", "").isdigit():
            return refuse(400, "no TTL")
        if headers.get("content-encoding") != "aes128gcm":
            return refuse(400, "content encoding is not aes128gcm")
        keys = self.push_keys[path]
        try:
            plain = http_ece.decrypt(body, private_key=keys.private, auth_secret=keys.auth,
                                     version="aes128gcm")
        except Exception as exc:
            return refuse(400, f"cannot decrypt: {type(exc).__name__}: {exc}")
        if path in self.gone_tokens:
            return refuse(410, "subscription expired")
        return Received(path, headers, body, 201, "", json.loads(plain)), {}

    def _token(self, path: str, headers: dict[str, str], body: bytes,
               refuse: Refuse) -> tuple[Received, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return refuse(400, f"bad grant_type {form.get('grant_type')!r}")
        try:
            claims = jwt.decode(form.get("assertion", ""), self.account_key.public_key(),
                                algorithms=["RS256"], audience=self.base_url + "/oauth2/token",
                                options={"require": ["exp", "iat", "iss", "scope"]})
        except Exception as exc:
            return refuse(401, f"assertion refused: {type(exc).__name__}: {exc}")
        if "firebase.messaging" not in claims["scope"]:
            return refuse(403, "scope lacks firebase.messaging")
        token = "ya29." + secrets.token_urlsafe(16)
        with self._changed:
            self.fcm_tokens.add(token)
        return (Received(path, headers, body, 200, "", claims),
                {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _fcm(self, path: str, headers: dict[str, str], body: bytes,
             refuse: Refuse) -> tuple[Received, Any]:
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.fcm_tokens:
            return refuse(401, "unknown bearer token")
        try:
            message = json.loads(body)["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return refuse(400, "no message.token")
        if token in self.gone_tokens:
            return (Received(path, headers, body, 404, "unregistered", message),
                    {"error": {"code": 404, "status": "NOT_FOUND", "details": [
                        {"errorCode": "UNREGISTERED"}]}})
        name = f"projects/{FCM_PROJECT}/messages/{secrets.token_hex(6)}"
        return Received(path, headers, body, 200, "", message), {"name": name}


def _handler(fake: FakeOutside) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.answer(self.command, self.path, headers,
                                          self.rfile.read(length))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
