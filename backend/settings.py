"""Settings, read once from the environment.

Every knob an operator may turn is here, with its environment variable and default. The embedded
default (no variables at all) is one node on an SQLite file under ``DATA_DIR``; production mode
(``ENVIRONMENT=production``) refuses to start without an explicit ``JWT_SECRET``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


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
    jwt_secret: str
    jwt_issuer: str | None
    jwt_audience: str | None
    access_token_seconds: int
    refresh_token_seconds: int
    allowed_origins: tuple[str, ...]
    limits: Limits
    integrations: Integrations
    api_title: str
    #: When set, ``GET /metrics`` requires ``Authorization: Bearer <token>``.
    metrics_token: str | None = None
    #: The longest one database statement (and one connect) may take before it fails; a client
    #: then gets ``unavailable`` (503) instead of waiting on a hung database. On SQLite it is
    #: the busy timeout (how long to wait for another process's lock).
    db_timeout_seconds: float = 5.0

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
        database_url = env.get("DATABASE_URL") or f"sqlite://{data_dir / 'chat.sqlite3'}"
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
            event_log_trim_seconds=_float(env, "EVENT_LOG_TRIM_SECONDS",
                                          Limits.event_log_trim_seconds),
            presence_detail_max_members=_int(env, "PRESENCE_DETAIL_MAX_MEMBERS",
                                             Limits.presence_detail_max_members),
            presence_window_seconds=_int(env, "PRESENCE_WINDOW_MS", 1000) / 1000,
        )
        return cls(
            production=production,
            data_dir=data_dir,
            database_url=database_url,
            db_pool_size=_int(env, "DB_POOL_SIZE", 10),
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("REDIS_PREFIX", "confab"),
            node_ttl_seconds=_node_ttl(env),
            jwt_secret=secret,
            jwt_issuer=env.get("JWT_ISSUER") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            access_token_seconds=_int(env, "ACCESS_TOKEN_SECONDS", 3600),
            refresh_token_seconds=_int(env, "REFRESH_TOKEN_SECONDS", 30 * 24 * 3600),
            allowed_origins=_list(env, "ALLOWED_ORIGINS"),
            limits=limits,
            integrations=Integrations.from_env(env),
            api_title=env.get("API_TITLE", "Confab Chat API"),
            metrics_token=env.get("METRICS_TOKEN") or None,
            db_timeout_seconds=_db_timeout(env),
        )


def _db_timeout(env: Mapping[str, str]) -> float:
    timeout = _float(env, "DB_TIMEOUT_SECONDS", Settings.db_timeout_seconds)
    if not timeout > 0:
        raise ConfigurationError(f"DB_TIMEOUT_SECONDS must be above 0, got {timeout}")
    return timeout


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
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Write atomically with owner-only permissions; another process may race us, so re-read.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
