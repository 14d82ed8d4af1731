"""JWT handling: HS256 pinned, expiry checked, access and refresh told apart."""

import time
from dataclasses import replace
from pathlib import Path

import jwt
import pytest

from backend.auth.tokens import InvalidToken, decode_token, issue_pair, issue_token
from backend.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"DATA_DIR": str(tmp_path), "JWT_SECRET": "s" * 40})


def test_access_token_round_trip_and_claims(settings: Settings) -> None:
    token = issue_token(settings, 42, "access")
    assert decode_token(settings, token, "access") == 42
    claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == "42" and claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == settings.access_token_seconds


def test_refresh_token_is_not_an_access_token(settings: Settings) -> None:
    pair = issue_pair(settings, 7)
    with pytest.raises(InvalidToken, match="access"):
        decode_token(settings, pair.refresh_token, "access")
    assert decode_token(settings, pair.refresh_token, "refresh") == 7


def test_unsigned_and_other_algorithms_are_refused(settings: Settings) -> None:
    now = int(time.time())
    claims = {"sub": "1", "type": "access", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(InvalidToken):
        decode_token(settings, unsigned, "access")
    hs512 = jwt.encode(claims, settings.jwt_secret, algorithm="HS512")
    with pytest.raises(InvalidToken):
        decode_token(settings, hs512, "access")


def test_expired_and_foreign_tokens_are_refused(settings: Settings) -> None:
    now = int(time.time())
    expired = jwt.encode({"sub": "1", "type": "access", "iat": now - 100, "exp": now - 60},
                         settings.jwt_secret, algorithm="HS256")
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(settings, expired, "access")
    foreign = jwt.encode({"sub": "1", "type": "access", "iat": now, "exp": now + 60},
                         "another-secret-" * 3, algorithm="HS256")
    with pytest.raises(InvalidToken):
        decode_token(settings, foreign, "access")
    with pytest.raises(InvalidToken):
        decode_token(settings, "not.a.jwt", "access")


def test_issuer_and_audience_are_checked_when_configured(settings: Settings) -> None:
    strict = replace(settings, jwt_issuer="confab", jwt_audience="chat")
    token = issue_token(strict, 3, "access")
    assert decode_token(strict, token, "access") == 3
    with pytest.raises(InvalidToken):
        decode_token(strict, issue_token(settings, 3, "access"), "access")
