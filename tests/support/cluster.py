"""Several real server processes sharing one PostgreSQL database and one Redis."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import ServerProcess, start_server

#: Short, so that a killed node is noticed within seconds (heartbeats every TTL / 3).
NODE_TTL_SECONDS = 3.0


@dataclass
class Cluster:
    """Nodes started with the same ``DATABASE_URL``, ``REDIS_URL`` and key prefix."""

    root: Path
    database_url: str
    redis_url: str
    prefix: str = field(default_factory=lambda: f"confab-test-{uuid.uuid4().hex[:10]}")
    nodes: list[ServerProcess] = field(default_factory=list)

    def start_node(self, **overrides: str) -> ServerProcess:
        """Another node; ``overrides`` are settings (``REDIS_URL`` too: a proxy's)."""
        settings = {"REDIS_URL": self.redis_url, "REDIS_PREFIX": self.prefix,
                    "NODE_TTL_SECONDS": str(NODE_TTL_SECONDS), **overrides}
        node = start_server(self.root / f"node{len(self.nodes)}", self.database_url,
                            **settings)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
