"""Settings, read once from the environment.

Every knob an operator may turn is here, with its environment variable and default. The embedded
default (no variables at all) is one node on an SQLite file under ``DATA_DIR``; production mode
(``ENVIRONMENT=production``) refuses to start without an explicit ``JWT_SECRET``.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec


class ConfigurationError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


#: Development mode multiplies the login and registration limits by this: one laptop address
#: makes every account of a test run or a benchmark.
DEVELOPMENT_FACTOR = 1000


@dataclass(frozen=True)
class Limits:
    """Per-message and per-connection limits, enforced by the chat service and the transports."""

    max_content_chars: int = 4000
    max_frame_bytes: int = 64 * 1024
    max_body_bytes: int = 256 * 1024
    send_rate_per_second: float = 20.0
    send_burst: int = 40
    history_page_max: int = 200
    #: Full-text search ranks the newest this many matches a reader may see (each costs a
    #: score; older matches are reached with ``sort=newest`` or narrower filters).
    search_rank_window: int = 10_000
    #: Per node and per email (six times as many per client address): password checks are
    #: costly on purpose. Production default; development allows far more (tests, demos).
    login_attempts_per_minute: int = 10
    #: Per node and client address: accounts and mobile devices made. Production default.
    registrations_per_hour: int = 60
    #: Typing events of one actor in one conversation that repeat the last state: after a
    #: burst of 3, one per this many seconds is sent on (a change of state always goes through).
    typing_interval_seconds: float = 2.0
    max_sockets_per_user: int = 20
    max_sockets_per_device: int = 5
    max_joined_per_socket: int = 100
    #: Bytes that may wait unsent for one connection (a client reading slower than it is
    #: written to) before it is cut off, alone: close 1013 on raw routes, a dropped transport
    #: (the client reconnects and catches up) on Socket.IO.
    max_backlog_bytes: int = 4 * 1024 * 1024
    #: The event log's retention (models/events.py): at most this many events per
    #: conversation, none older than this; a resume from before them gets ``resync_required``.
    event_log_max_events: int = 10_000
    event_log_max_age_seconds: float = 7 * 24 * 3600.0
    #: How often a node deletes what the retention no longer keeps.
    event_log_trim_seconds: float = 60.0
    #: Rooms of more distinct actors than this get one ``presence_diff`` of counts per room per
    #: window instead of per-user ``user_joined``/``user_left``/``user_status`` events: a burst
    #: of n joins then costs each member one frame per window, not n.
    presence_detail_max_members: int = 100
    #: The window over which a large room's joins and leaves are coalesced.
    presence_window_seconds: float = 1.0
    #: The most active members a group conversation may have (adding past it is refused).
    max_group_members: int = 10_000
    #: How long a node shows a conversation's kept latest history page without reading it
    #: again: the bound on how late what no event announces (a sender's name or role, an
    #: outbound delivery status) shows in it (backend/service/latest_pages.py).
    latest_page_keep_seconds: float = 5.0


@dataclass(frozen=True)
class Integrations:
    """Outside platforms (docs/integrations.md): webhook secrets, API credentials and bases, and
    the retry policy of replies sent out. An unset secret turns its webhook off (404)."""

    telegram_webhook_secret: str | None = None
    telegram_bot_token: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    instagram_verify_token: str | None = None
    instagram_app_secret: str | None = None
    instagram_access_token: str | None = None
    instagram_api_base: str = "https://graph.facebook.com/v19.0"
    outbound_attempts: int = 5
    outbound_backoff_seconds: float = 1.0
    outbound_backoff_max_seconds: float = 60.0
    outbound_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Integrations:
        """Read the ``TELEGRAM_*``, ``INSTAGRAM_*`` and ``OUTBOUND_*`` variables of ``env``."""
        attempts = _int(env, "OUTBOUND_ATTEMPTS", cls.outbound_attempts)
        if attempts < 1:
            raise ConfigurationError(f"OUTBOUND_ATTEMPTS must be at least 1, got {attempts}")
        return cls(
            telegram_webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET") or None,
            telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN") or None,
            telegram_api_base=(env.get("TELEGRAM_API_BASE") or cls.telegram_api_base).rstrip("/"),
            instagram_verify_token=env.get("INSTAGRAM_VERIFY_TOKEN") or None,
            instagram_app_secret=env.get("INSTAGRAM_APP_SECRET") or None,
            instagram_access_token=env.get("INSTAGRAM_ACCESS_TOKEN") or None,
            instagram_api_base=(
                env.get("INSTAGRAM_API_BASE") or cls.instagram_api_base
            ).rstrip("/"),
            outbound_attempts=attempts,
            outbound_backoff_seconds=_float(
                env, "OUTBOUND_BACKOFF_SECONDS", cls.outbound_backoff_seconds
            ),
            outbound_backoff_max_seconds=_float(
                env, "OUTBOUND_BACKOFF_MAX_SECONDS", cls.outbound_backoff_max_seconds
            ),
            outbound_timeout_seconds=_float(
                env, "OUTBOUND_TIMEOUT_SECONDS", cls.outbound_timeout_seconds
            ),
        )


class StorageKind(StrEnum):
    """Where uploaded files are kept (docs/files.md)."""

    LOCAL = "local"
    S3 = "s3"


#: What may be uploaded unless ``UPLOAD_ALLOWED_TYPES`` says otherwise: types told by the
#: file's first bytes (backend/service/filetypes.py); ``image/*`` names every image type.
DEFAULT_UPLOAD_TYPES = (
    "image/*", "application/pdf", "text/plain", "application/zip", "audio/mpeg",
    "audio/ogg", "audio/wav", "video/mp4",
)


@dataclass(frozen=True)
class Uploads:
    """Uploaded files (docs/files.md): limits, signed links and the storage backend."""

    storage: StorageKind = StorageKind.LOCAL
    max_bytes: int = 25 * 1024 * 1024
    allowed_types: tuple[str, ...] = DEFAULT_UPLOAD_TYPES
    #: How long a signed download link stays valid.
    url_seconds: int = 900
    #: The largest chunk of a resumable upload.
    chunk_max_bytes: int = 8 * 1024 * 1024
    #: The longest side of an image's thumbnail, in pixels.
    thumbnail_pixels: int = 320
    #: Uploads no message names after this long (and resumable uploads not finished) are
    #: deleted, with their bytes.
    unattached_seconds: int = 24 * 3600
    #: How often a node looks for them.
    sweep_seconds: float = 600.0
    #: Prefixed to the download links when set (``https://chat.example.com``); else they are
    #: paths on the server's own origin.
    public_url: str = ""
    s3_bucket: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Uploads:
        """Read the ``UPLOAD_*`` and ``S3_*`` variables of ``env``."""
        raw = (env.get("UPLOAD_STORAGE") or StorageKind.LOCAL).strip().lower()
        try:
            storage = StorageKind(raw)
        except ValueError as exc:
            raise ConfigurationError(
                f"UPLOAD_STORAGE must be 'local' or 's3', got {raw!r}") from exc
        bucket = env.get("S3_BUCKET", "")
        if storage == StorageKind.S3 and not bucket:
            raise ConfigurationError("S3_BUCKET must be set when UPLOAD_STORAGE=s3")
        uploads = cls(
            storage=storage,
            max_bytes=_int(env, "UPLOAD_MAX_BYTES", cls.max_bytes),
            allowed_types=_list(env, "UPLOAD_ALLOWED_TYPES") or DEFAULT_UPLOAD_TYPES,
            url_seconds=_int(env, "UPLOAD_URL_SECONDS", cls.url_seconds),
            chunk_max_bytes=_int(env, "UPLOAD_CHUNK_MAX_BYTES", cls.chunk_max_bytes),
            thumbnail_pixels=_int(env, "UPLOAD_THUMBNAIL_PIXELS", cls.thumbnail_pixels),
            unattached_seconds=_int(env, "UPLOAD_UNATTACHED_SECONDS", cls.unattached_seconds),
            sweep_seconds=_interval(env, "UPLOAD_SWEEP_SECONDS", cls.sweep_seconds),
            public_url=env.get("PUBLIC_URL", "").rstrip("/"),
            s3_bucket=bucket,
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            s3_region=env.get("S3_REGION") or None,
            s3_access_key=env.get("S3_ACCESS_KEY_ID") or None,
            s3_secret_key=env.get("S3_SECRET_ACCESS_KEY") or None,
            s3_prefix=env.get("S3_PREFIX", ""),
        )
        for name, value in (("UPLOAD_MAX_BYTES", uploads.max_bytes),
                            ("UPLOAD_URL_SECONDS", uploads.url_seconds),
                            ("UPLOAD_CHUNK_MAX_BYTES", uploads.chunk_max_bytes),
                            ("UPLOAD_THUMBNAIL_PIXELS", uploads.thumbnail_pixels),
                            ("UPLOAD_UNATTACHED_SECONDS", uploads.unattached_seconds)):
            if value < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {value}")
        if not uploads.sweep_seconds > 0:
            raise ConfigurationError(
                f"UPLOAD_SWEEP_SECONDS must be above 0, got {uploads.sweep_seconds}")
        return uploads


@dataclass(frozen=True)
class Delivery:
    """The outbox (deliveries to the outside: webhooks and push, docs/push-and-webhooks.md):
    retries, leases, the network guard, and the push services' credentials."""

    #: Attempts per delivery before it is dead-lettered.
    attempts: int = 8
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 3600.0
    #: How long a node holds a claimed delivery: past it, another node takes it over.
    lease_seconds: float = 60.0
    #: How often an idle worker looks for due deliveries (new ones wake it at once).
    poll_seconds: float = 1.0
    timeout_seconds: float = 10.0
    #: Deliveries one node runs at once.
    concurrency: int = 16
    #: Delivered rows are deleted this long after (dead ones are kept for staff).
    keep_done_seconds: float = 7 * 24 * 3600.0
    #: Webhook and Web Push URLs may name private, loopback or link-local addresses.
    allow_private_networks: bool = False
    #: How often a node reads the webhook endpoints again (those registered on others).
    webhook_refresh_seconds: float = 5.0
    #: How often the catch-up over the event log runs, and how old a logged event must be
    #: before it looks at it (every transaction that took a smaller id has ended by then).
    webhook_catch_up_seconds: float = 10.0
    webhook_catch_up_delay_seconds: float = 30.0
    #: Web Push (VAPID, RFC 8292): the application server's private key (base64url of the
    #: raw 32-byte P-256 key, or PEM) and its contact. None: Web Push is off.
    vapid_private_key: str | None = None
    vapid_subject: str = "mailto:admin@localhost"
    #: How long a push service keeps an undelivered notification.
    push_ttl_seconds: int = 86400
    #: At most one notification per user and conversation this often (the rest collapse).
    push_min_interval_seconds: float = 30.0
    #: At most this many notifications per user per minute (per node).
    push_per_user_per_minute: int = 10
    #: FCM HTTP v1: the service account's JSON (its text). None: FCM is off.
    fcm_service_account: str | None = None
    fcm_api_base: str = "https://fcm.googleapis.com"

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path, production: bool) -> Delivery:
        """Read the ``OUTBOX_*``, ``WEBHOOK_*``, ``VAPID_*``, ``PUSH_*`` and ``FCM_*``
        variables. Outside production a VAPID key is made once and kept in ``data_dir``."""
        attempts = _int(env, "OUTBOX_ATTEMPTS", cls.attempts)
        if attempts < 1:
            raise ConfigurationError(f"OUTBOX_ATTEMPTS must be at least 1, got {attempts}")
        keep = _float(env, "OUTBOX_KEEP_DONE_SECONDS", cls.keep_done_seconds)
        if keep < 3600:
            # The webhook catch-up finds a delivered event by its row: kept shorter, an event
            # could be queued again.
            raise ConfigurationError(
                f"OUTBOX_KEEP_DONE_SECONDS must be at least 3600, got {keep}")
        vapid = env.get("VAPID_PRIVATE_KEY") or None
        if vapid is None and not production:
            vapid = _persistent_dev_vapid_key(data_dir)
        account = env.get("FCM_SERVICE_ACCOUNT_JSON") or None
        account_file = env.get("FCM_SERVICE_ACCOUNT_FILE")
        if account is None and account_file:
            try:
                account = Path(account_file).read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"FCM_SERVICE_ACCOUNT_FILE cannot be read: {exc}") from exc
        return cls(
            attempts=attempts,
            backoff_seconds=_float(env, "OUTBOX_BACKOFF_SECONDS", cls.backoff_seconds),
            backoff_max_seconds=_float(env, "OUTBOX_BACKOFF_MAX_SECONDS",
                                       cls.backoff_max_seconds),
            lease_seconds=_float(env, "OUTBOX_LEASE_SECONDS", cls.lease_seconds),
            poll_seconds=_interval(env, "OUTBOX_POLL_SECONDS", cls.poll_seconds),
            timeout_seconds=_float(env, "OUTBOX_TIMEOUT_SECONDS", cls.timeout_seconds),
            concurrency=max(1, _int(env, "OUTBOX_CONCURRENCY", cls.concurrency)),
            keep_done_seconds=keep,
            allow_private_networks=_bool(env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS"),
            webhook_refresh_seconds=_interval(env, "WEBHOOK_REFRESH_SECONDS",
                                              cls.webhook_refresh_seconds),
            webhook_catch_up_seconds=_interval(env, "WEBHOOK_CATCH_UP_SECONDS",
                                               cls.webhook_catch_up_seconds),
            webhook_catch_up_delay_seconds=_float(env, "WEBHOOK_CATCH_UP_DELAY_SECONDS",
                                                  cls.webhook_catch_up_delay_seconds),
            vapid_private_key=vapid,
            vapid_subject=env.get("VAPID_SUBJECT") or cls.vapid_subject,
            push_ttl_seconds=_int(env, "PUSH_TTL_SECONDS", cls.push_ttl_seconds),
            push_min_interval_seconds=_float(env, "PUSH_MIN_INTERVAL_SECONDS",
                                             cls.push_min_interval_seconds),
            push_per_user_per_minute=_int(env, "PUSH_PER_USER_PER_MINUTE",
                                          cls.push_per_user_per_minute),
            fcm_service_account=account,
            fcm_api_base=(env.get("FCM_API_BASE") or cls.fcm_api_base).rstrip("/"),
        )


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _persistent_dev_vapid_key(data_dir: Path) -> str:
    """A development VAPID key (base64url of the raw P-256 private key), made once and kept
    beside the JWT secret: browsers' subscriptions are bound to it."""
    path = data_dir / "vapid_private_key"
    if path.exists():
        return path.read_text().strip()
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return _keep(path, base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


@dataclass(frozen=True)
class PasswordHashing:
    """Argon2id's parameters for new password hashes (a stored hash keeps its own, so a change
    applies to hashes made from then on). The defaults are argon2-cffi's (RFC 9106's second
    recommendation); production refuses less than OWASP's minimum (19 MiB, two passes)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    #: OWASP's Password Storage Cheat Sheet: at least m=19 MiB, t=2, p=1 for Argon2id.
    PRODUCTION_MIN_MEMORY_KIB = 19 * 1024
    PRODUCTION_MIN_TIME_COST = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str], production: bool) -> PasswordHashing:
        """Read ``ARGON2_TIME_COST``, ``ARGON2_MEMORY_KIB`` and ``ARGON2_PARALLELISM``."""
        hashing = cls(time_cost=_int(env, "ARGON2_TIME_COST", cls.time_cost),
                      memory_kib=_int(env, "ARGON2_MEMORY_KIB", cls.memory_kib),
                      parallelism=_int(env, "ARGON2_PARALLELISM", cls.parallelism))
        if hashing.time_cost < 1 or hashing.parallelism < 1 or (
                hashing.memory_kib < 8 * hashing.parallelism):
            raise ConfigurationError(
                "ARGON2_TIME_COST and ARGON2_PARALLELISM must be at least 1, and "
                "ARGON2_MEMORY_KIB at least 8 per unit of parallelism")
        if production and (hashing.memory_kib < cls.PRODUCTION_MIN_MEMORY_KIB
                           or hashing.time_cost < cls.PRODUCTION_MIN_TIME_COST):
            raise ConfigurationError(
                "Argon2id below OWASP's minimum (ARGON2_MEMORY_KIB >= "
                f"{cls.PRODUCTION_MIN_MEMORY_KIB}, ARGON2_TIME_COST >= "
                f"{cls.PRODUCTION_MIN_TIME_COST}) is refused in production")
        return hashing


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one node."""

    production: bool
    data_dir: Path
    database_url: str
    db_pool_size: int
    redis_url: str | None
    #: Prefix of every Redis key and of the pub/sub channel: nodes sharing it form one cluster.
    redis_prefix: str
    #: A node that has not renewed its heartbeat for this long is dead: its sockets stop
    #: counting and its users go offline for the others (heartbeats run every third of it).
    node_ttl_seconds: float
    #: In a cluster, how long a node believes a login session live without asking again, and
    #: how often it checks the sessions of its sockets: the bound of a logout whose control a
    #: node missed (Redis away).
    session_recheck_seconds: float
    jwt_secret: str
    jwt_issuer: str | None
    jwt_audience: str | None
    access_token_seconds: int
    refresh_token_seconds: int
    allowed_origins: tuple[str, ...]
    limits: Limits
    integrations: Integrations
    api_title: str
    delivery: Delivery = Delivery()
    #: Browser pages served from this machine (``localhost``, ``127.0.0.0/8``, ``[::1]``,
    #: any port) may use the API beside the same origin: development with
    #: ``ALLOWED_ORIGINS`` unset (a front end's dev server on its own port, a seed's
    #: example page). Never in production.
    local_origins: bool = False
    #: When set, ``GET /metrics`` requires ``Authorization: Bearer <token>``.
    metrics_token: str | None = None
    #: The longest one database statement (and one connect) may take before it fails; a client
    #: then gets ``unavailable`` (503) instead of waiting on a hung database. On SQLite it is
    #: the busy timeout (how long to wait for another process's lock).
    db_timeout_seconds: float = 5.0
    #: On SIGTERM, how long the node waits for its clients to be told and closed (and its
    #: background publishes to finish) before it stops regardless.
    shutdown_goodbye_seconds: float = 5.0
    #: After the goodbye, how long the server (uvicorn) waits for the connections still open
    #: and the requests under way before it cancels them and the node exits: a client that
    #: stopped reading never lets its connection close.
    shutdown_timeout_seconds: float = 5.0
    uploads: Uploads = Uploads()
    password_hashing: PasswordHashing = PasswordHashing()
    #: The heartbeat of every WebSocket, on both doors: the server pings each connection
    #: this often (Engine.IO's ``pingInterval``; a raw route's WebSocket ping) ...
    ping_interval_seconds: float = 25.0
    #: ... and drops one whose answer has not come this long after (``pingTimeout``; a raw
    #: route's connection is failed with 1011).
    ping_timeout_seconds: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raises ConfigurationError."""
        env = os.environ if env is None else env
        environment = env.get("ENVIRONMENT", "development").strip().lower()
        if environment not in ("development", "production"):
            raise ConfigurationError(
                f"ENVIRONMENT must be 'development' or 'production', got {environment!r}"
            )
        production = environment == "production"
        data_dir = Path(env.get("DATA_DIR", "data")).resolve()
        database_url = _database_url(env, data_dir)
        secret = env.get("JWT_SECRET", "")
        if not secret:
            if production:
                raise ConfigurationError("JWT_SECRET must be set when ENVIRONMENT=production")
            secret = _persistent_dev_secret(data_dir)
        elif len(secret) < 32 and production:
            raise ConfigurationError("JWT_SECRET must be at least 32 characters in production")
        limits = Limits(
            max_content_chars=_int(env, "MAX_CONTENT_CHARS", Limits.max_content_chars),
            max_frame_bytes=_int(env, "MAX_FRAME_BYTES", Limits.max_frame_bytes),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", Limits.max_body_bytes),
            send_rate_per_second=_float(env, "SEND_RATE_PER_SECOND", Limits.send_rate_per_second),
            send_burst=_int(env, "SEND_BURST", Limits.send_burst),
            history_page_max=_int(env, "HISTORY_PAGE_MAX", Limits.history_page_max),
            search_rank_window=_int(env, "SEARCH_RANK_WINDOW", Limits.search_rank_window),
            login_attempts_per_minute=_int(
                env, "LOGIN_ATTEMPTS_PER_MINUTE",
                Limits.login_attempts_per_minute * (1 if production else DEVELOPMENT_FACTOR)),
            registrations_per_hour=_int(
                env, "REGISTRATIONS_PER_HOUR",
                Limits.registrations_per_hour * (1 if production else DEVELOPMENT_FACTOR)),
            typing_interval_seconds=_float(env, "TYPING_INTERVAL_SECONDS",
                                           Limits.typing_interval_seconds),
            max_sockets_per_user=_int(env, "MAX_SOCKETS_PER_USER", Limits.max_sockets_per_user),
            max_sockets_per_device=_int(env, "MAX_SOCKETS_PER_DEVICE",
                                        Limits.max_sockets_per_device),
            max_joined_per_socket=_int(env, "MAX_JOINED_PER_SOCKET",
                                       Limits.max_joined_per_socket),
            max_backlog_bytes=_int(env, "MAX_BACKLOG_BYTES", Limits.max_backlog_bytes),
            event_log_max_events=_int(env, "EVENT_LOG_MAX_EVENTS", Limits.event_log_max_events),
            event_log_max_age_seconds=_float(env, "EVENT_LOG_MAX_AGE_SECONDS",
                                             Limits.event_log_max_age_seconds),
            event_log_trim_seconds=_interval(env, "EVENT_LOG_TRIM_SECONDS",
                                             Limits.event_log_trim_seconds),
            presence_detail_max_members=_int(env, "PRESENCE_DETAIL_MAX_MEMBERS",
                                             Limits.presence_detail_max_members),
            presence_window_seconds=_int(env, "PRESENCE_WINDOW_MS", 1000) / 1000,
            max_group_members=_int(env, "MAX_GROUP_MEMBERS", Limits.max_group_members),
            latest_page_keep_seconds=_at_least(env, "LATEST_PAGE_KEEP_SECONDS",
                                               Limits.latest_page_keep_seconds, 0),
        )
        return cls(
            production=production,
            data_dir=data_dir,
            database_url=database_url,
            db_pool_size=_at_least_one_int(env, "DB_POOL_SIZE", 10),
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("REDIS_PREFIX", "confab"),
            node_ttl_seconds=_node_ttl(env),
            session_recheck_seconds=_at_least(env, "SESSION_RECHECK_SECONDS", 30.0, 1),
            jwt_secret=secret,
            jwt_issuer=env.get("JWT_ISSUER") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            access_token_seconds=_int(env, "ACCESS_TOKEN_SECONDS", 3600),
            refresh_token_seconds=_int(env, "REFRESH_TOKEN_SECONDS", 30 * 24 * 3600),
            allowed_origins=_list(env, "ALLOWED_ORIGINS"),
            local_origins=not production and not _list(env, "ALLOWED_ORIGINS"),
            limits=limits,
            integrations=Integrations.from_env(env),
            delivery=Delivery.from_env(env, data_dir, production),
            # Seed 003's quick start reads this title to tell the server is up.
            api_title=env.get("API_TITLE", "SwipeSavvy Backend API"),
            metrics_token=env.get("METRICS_TOKEN") or None,
            db_timeout_seconds=_db_timeout(env),
            shutdown_goodbye_seconds=_at_least(env, "SHUTDOWN_GOODBYE_SECONDS",
                                               Settings.shutdown_goodbye_seconds, 0),
            shutdown_timeout_seconds=_at_least(env, "SHUTDOWN_TIMEOUT_SECONDS",
                                               Settings.shutdown_timeout_seconds, 0),
            uploads=Uploads.from_env(env),
            password_hashing=PasswordHashing.from_env(env, production),
            ping_interval_seconds=_at_least(env, "PING_INTERVAL_SECONDS",
                                            Settings.ping_interval_seconds, 1),
            ping_timeout_seconds=_at_least(env, "PING_TIMEOUT_SECONDS",
                                           Settings.ping_timeout_seconds, 1),
        )


def _db_timeout(env: Mapping[str, str]) -> float:
    timeout = _float(env, "DB_TIMEOUT_SECONDS", Settings.db_timeout_seconds)
    if not timeout > 0:
        raise ConfigurationError(f"DB_TIMEOUT_SECONDS must be above 0, got {timeout}")
    return timeout


def _at_least(env: Mapping[str, str], name: str, default: float, floor: float) -> float:
    """A number of ``name`` not below ``floor`` (NaN refused too)."""
    value = _float(env, name, default)
    if not value >= floor:
        raise ConfigurationError(f"{name} must not be negative, got {value}" if floor == 0
                                 else f"{name} must be at least {floor}, got {value}")
    return value


#: The shortest pause of a chore that repeats (a poll, a sweep, a trim): below it a node
#: would spin on it.
MIN_INTERVAL_SECONDS = 0.05

#: What ``DATABASE_URL`` may name: an SQLite file, or PostgreSQL.
DATABASE_SCHEMES = ("sqlite://", "postgres://", "postgresql://", "asyncpg://")


def _interval(env: Mapping[str, str], name: str, default: float) -> float:
    """The pause of a chore that repeats (``MIN_INTERVAL_SECONDS`` at least)."""
    return _at_least(env, name, default, MIN_INTERVAL_SECONDS)


def _at_least_one_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigurationError(f"{name} must be at least 1, got {value}")
    return value


def _database_url(env: Mapping[str, str], data_dir: Path) -> str:
    """``DATABASE_URL``, or the SQLite file in ``DATA_DIR``. Another scheme is refused (a typo
    would hang the start or make a stray file); the message names the scheme only, never the
    credentials."""
    url = env.get("DATABASE_URL") or f"sqlite://{data_dir / 'chat.sqlite3'}"
    if not url.startswith(DATABASE_SCHEMES):
        scheme = url.split("://", 1)[0] if "://" in url else "(none)"
        raise ConfigurationError(
            "DATABASE_URL must be sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB, "
            f"got the scheme {scheme}")
    return url




def _node_ttl(env: Mapping[str, str]) -> float:
    ttl = _float(env, "NODE_TTL_SECONDS", 15.0)
    if ttl < 1:
        raise ConfigurationError(f"NODE_TTL_SECONDS must be at least 1, got {ttl}")
    return ttl


def _persistent_dev_secret(data_dir: Path) -> str:
    """A random secret made once and kept in the data folder, so restarts keep tokens valid."""
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    return _keep(path, secrets.token_urlsafe(48))


def _keep(path: Path, value: str) -> str:
    """Write ``value`` to ``path`` once, atomically and owner-only; another process may race
    us, so the file is read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
