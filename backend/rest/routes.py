"""Every REST family, gathered on one Api."""

from __future__ import annotations

from backend.rest import (
    auth,
    connections,
    desk,
    health,
    integrations,
    metrics,
    mobile,
    push,
    sessions,
    uploads,
    webhooks,
)
from backend.rest.api import Api


def build_api() -> Api:
    api = Api()
    for family in (health, metrics, auth, sessions, desk, uploads, connections, mobile,
                   integrations, webhooks, push):
        family.register(api)
    return api
