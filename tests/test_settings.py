"""Settings from the environment: production refuses a missing secret, development keeps one."""

from pathlib import Path

import pytest

from backend.auth.passwords import Passwords
from backend.settings import ConfigurationError, PasswordHashing, Settings


def test_production_requires_a_jwt_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        Settings.from_env({"ENVIRONMENT": "production", "DATA_DIR": str(tmp_path)})


def test_production_refuses_a_short_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="32 characters"):
        Settings.from_env({"ENVIRONMENT": "production", "JWT_SECRET": "short",
                           "DATA_DIR": str(tmp_path)})


def test_development_secret_is_random_and_kept_across_restarts(tmp_path: Path) -> None:
    first = Settings.from_env({"DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"DATA_DIR": str(tmp_path)})
    other = Settings.from_env({"DATA_DIR": str(tmp_path / "elsewhere")})
    assert len(first.jwt_secret) >= 48
    assert first.jwt_secret == second.jwt_secret
    assert other.jwt_secret != first.jwt_secret
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0


def test_defaults_are_the_embedded_single_node(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite://{tmp_path.resolve() / 'chat.sqlite3'}"
    assert settings.redis_url is None
    assert settings.limits.max_content_chars == 4000
    assert settings.limits.max_frame_bytes == 64 * 1024


def test_malformed_numbers_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAX_CONTENT_CHARS"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "MAX_CONTENT_CHARS": "lots"})
    with pytest.raises(ConfigurationError, match="ENVIRONMENT"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "ENVIRONMENT": "staging"})


def test_lists_and_limits_are_read(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "DATA_DIR": str(tmp_path), "ALLOWED_ORIGINS": "https://a.example, https://b.example",
        "MAX_CONTENT_CHARS": "100", "SEND_RATE_PER_SECOND": "2.5",
    })
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.limits.max_content_chars == 100
    assert settings.limits.send_rate_per_second == 2.5


def test_cluster_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "REDIS_URL": "redis://r:6379/0",
                                  "REDIS_PREFIX": "blue", "NODE_TTL_SECONDS": "6"})
    assert (settings.redis_url, settings.redis_prefix, settings.node_ttl_seconds) == (
        "redis://r:6379/0", "blue", 6.0)
    with pytest.raises(ConfigurationError, match="NODE_TTL_SECONDS"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "NODE_TTL_SECONDS": "0.2"})


def test_several_workers_need_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from backend.cli import main

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["serve", "--workers", "2"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


def test_a_development_vapid_key_is_made_once_and_none_in_production(tmp_path: Path) -> None:
    first = Settings.from_env({"DATA_DIR": str(tmp_path)}).delivery
    second = Settings.from_env({"DATA_DIR": str(tmp_path)}).delivery
    assert first.vapid_private_key and first.vapid_private_key == second.vapid_private_key
    assert (tmp_path / "vapid_private_key").stat().st_mode & 0o077 == 0
    production = Settings.from_env({"ENVIRONMENT": "production", "JWT_SECRET": "s" * 40,
                                    "DATA_DIR": str(tmp_path / "prod")}).delivery
    assert production.vapid_private_key is None  # never a made-up key in production
    assert not (tmp_path / "prod" / "vapid_private_key").exists()
    given = Settings.from_env({"DATA_DIR": str(tmp_path), "VAPID_PRIVATE_KEY": "k" * 43})
    assert given.delivery.vapid_private_key == "k" * 43


@pytest.mark.parametrize(("name", "value", "match"), [
    ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "maybe", "true or false"),
    ("OUTBOX_ATTEMPTS", "0", "at least 1"),
    ("OUTBOX_KEEP_DONE_SECONDS", "60", "at least 3600"),
    ("FCM_SERVICE_ACCOUNT_FILE", "/nonexistent/account.json", "cannot be read"),
])
def test_delivery_settings_refuse_bad_values(tmp_path: Path, name: str, value: str,
                                             match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Settings.from_env({"DATA_DIR": str(tmp_path), name: value})


def test_password_hashing_is_configurable_and_production_keeps_owasps_minimum(
        tmp_path: Path) -> None:
    """ARGON2_* set the parameters of new hashes; production refuses less than OWASP's
    minimum, development takes any valid set; a hash made with one set verifies under
    another (each hash names its own)."""
    base = {"DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).password_hashing == PasswordHashing(3, 65536, 4)
    cheap = {**base, "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64",
             "ARGON2_PARALLELISM": "1"}
    assert Settings.from_env(cheap).password_hashing == PasswordHashing(1, 64, 1)
    production = {**cheap, "ENVIRONMENT": "production", "JWT_SECRET": "s" * 40}
    with pytest.raises(ConfigurationError, match="OWASP"):
        Settings.from_env(production)
    with pytest.raises(ConfigurationError, match="ARGON2"):
        Settings.from_env({**base, "ARGON2_TIME_COST": "0"})
    enough = {**production, "ARGON2_TIME_COST": "2", "ARGON2_MEMORY_KIB": str(19 * 1024)}
    assert Settings.from_env(enough).password_hashing.memory_kib == 19 * 1024

    stored = Passwords(PasswordHashing(1, 64, 1)).hash("password123")
    assert "m=64,t=1,p=1" in stored
    strong = Passwords(PasswordHashing())
    assert strong.verify("password123", stored) and not strong.verify("nope", stored)
    assert "m=65536,t=3,p=4" in strong.hash("password123")
    assert not strong.verify("password123", None)


def test_the_shutdown_goodbye_is_a_setting() -> None:
    base = {"JWT_SECRET": "x" * 40}
    assert Settings.from_env(base).shutdown_goodbye_seconds == 5.0
    assert Settings.from_env({**base, "SHUTDOWN_GOODBYE_SECONDS": "12.5"}
                             ).shutdown_goodbye_seconds == 12.5
    with pytest.raises(ConfigurationError, match="SHUTDOWN_GOODBYE_SECONDS"):
        Settings.from_env({**base, "SHUTDOWN_GOODBYE_SECONDS": "-1"})


def test_the_latest_page_keep_time_is_a_setting() -> None:
    base = {"JWT_SECRET": "x" * 40}
    assert Settings.from_env(base).limits.latest_page_keep_seconds == 5.0
    assert Settings.from_env({**base, "LATEST_PAGE_KEEP_SECONDS": "0.5"}
                             ).limits.latest_page_keep_seconds == 0.5
    with pytest.raises(ConfigurationError, match="LATEST_PAGE_KEEP_SECONDS"):
        Settings.from_env({**base, "LATEST_PAGE_KEEP_SECONDS": "-1"})


def test_the_stop_after_the_goodbye_is_bounded_by_a_setting() -> None:
    base = {"JWT_SECRET": "x" * 40}
    assert Settings.from_env(base).shutdown_timeout_seconds == 5.0
    assert Settings.from_env({**base, "SHUTDOWN_TIMEOUT_SECONDS": "2.5"}
                             ).shutdown_timeout_seconds == 2.5
    with pytest.raises(ConfigurationError, match="SHUTDOWN_TIMEOUT_SECONDS"):
        Settings.from_env({**base, "SHUTDOWN_TIMEOUT_SECONDS": "-1"})


def test_the_heartbeat_of_both_doors_is_a_setting() -> None:
    base = {"JWT_SECRET": "x" * 40}
    default = Settings.from_env(base)
    assert (default.ping_interval_seconds, default.ping_timeout_seconds) == (25.0, 20.0)
    tuned = Settings.from_env({**base, "PING_INTERVAL_SECONDS": "50",
                               "PING_TIMEOUT_SECONDS": "30"})
    assert (tuned.ping_interval_seconds, tuned.ping_timeout_seconds) == (50.0, 30.0)
    for name in ("PING_INTERVAL_SECONDS", "PING_TIMEOUT_SECONDS"):
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({**base, name: "0.5"})


def test_pages_of_this_machine_only_in_development_without_a_list(tmp_path: Path) -> None:
    base = {"DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).local_origins is True
    listed = Settings.from_env({**base, "ALLOWED_ORIGINS": "https://app.example"})
    assert listed.local_origins is False and listed.allowed_origins == ("https://app.example",)
    production = Settings.from_env({**base, "ENVIRONMENT": "production", "JWT_SECRET": "s" * 40})
    assert production.local_origins is False


@pytest.mark.parametrize(("name", "value", "says"), [
    ("DATABASE_URL", "postgress://u:secret@db/chat", "got the scheme postgress"),
    ("DATABASE_URL", "mysql://u:secret@db/chat", "got the scheme mysql"),
    ("DATABASE_URL", "bogus", "got the scheme (none)"),
    ("DB_POOL_SIZE", "0", "DB_POOL_SIZE must be at least 1"),
    ("EVENT_LOG_TRIM_SECONDS", "0", "EVENT_LOG_TRIM_SECONDS must be at least 0.05"),
    ("OUTBOX_POLL_SECONDS", "0", "OUTBOX_POLL_SECONDS must be at least 0.05"),
    ("WEBHOOK_CATCH_UP_SECONDS", "-1", "WEBHOOK_CATCH_UP_SECONDS must be at least 0.05"),
    ("UPLOAD_SWEEP_SECONDS", "0.001", "UPLOAD_SWEEP_SECONDS must be at least 0.05"),
    ("WEBHOOK_REFRESH_SECONDS", "nan", "WEBHOOK_REFRESH_SECONDS must be at least 0.05"),
    ("PING_INTERVAL_SECONDS", "nan", "PING_INTERVAL_SECONDS must be at least 1"),
    ("SHUTDOWN_GOODBYE_SECONDS", "nan", "SHUTDOWN_GOODBYE_SECONDS must not be negative"),
])
def test_values_a_node_cannot_run_with_are_refused_by_name(
        tmp_path: Path, name: str, value: str, says: str) -> None:
    """A typo in the database's URL would hang the start or make a stray file; a repeated
    chore without a pause would spin: each is refused, naming the variable (never the
    URL's password)."""
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"DATA_DIR": str(tmp_path), name: value})
    assert says in str(refused.value) and "secret" not in str(refused.value)
    assert name in str(refused.value)
