"""Every REST family, gathered on one Api."""

from __future__ import annotations

from backend.rest import auth, connections, health, mobile, sessions
from backend.rest.api import Api


def build_api() -> Api:
    api = Api()
    for family in (health, auth, sessions, connections, mobile):
        family.register(api)
    return api
