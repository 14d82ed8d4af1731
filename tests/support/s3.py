"""An S3-compatible object store of the tests' own: moto's server mode, a real HTTP server
in a process of its own on a free port (not an in-process mock)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.services import free_port, port_open

ACCESS_KEY = "confab-test"
SECRET_KEY = "confab-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running moto server; ``env`` is what a node needs to keep its files in ``bucket``."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def bucket(self, name: str) -> dict[str, str]:
        """Create ``name`` and return the settings of a node storing its files there."""
        self.client().create_bucket(Bucket=name)
        return {"UPLOAD_STORAGE": "s3", "S3_BUCKET": name, "S3_ENDPOINT_URL": self.endpoint,
                "S3_REGION": REGION, "S3_ACCESS_KEY_ID": ACCESS_KEY,
                "S3_SECRET_ACCESS_KEY": SECRET_KEY, "S3_PREFIX": "confab/"}

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_s3(work_dir: Path) -> S3Server:
    """Start moto's server and wait (bounded) until it answers; fail the test naming it if it
    does not."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = work_dir / f"moto-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(port, process, log_path)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port, 0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"S3 (moto server, moto[server] of the test extra) did not start on "
                        f"port {port}:\n{log_path.read_text(errors='replace')[-2000:]}",
                        pytrace=False)
        time.sleep(0.05)
    return server
