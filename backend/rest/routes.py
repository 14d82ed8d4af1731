"""Every REST family, gathered on one Api."""

from __future__ import annotations

from backend.rest import auth, health
from backend.rest.api import Api


def build_api() -> Api:
    api = Api()
    for family in (health, auth):
        family.register(api)
    return api
