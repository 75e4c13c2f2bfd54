"""Start and stop a real S3 API server (moto_server from the venv) on 127.0.0.1 for tests.

Shared by tests/s3/conftest.py and tests/dags/conftest.py (loaded by path: tests/ is not a package).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """Run ``moto_server -H 127.0.0.1 -p <free port>``; yield its endpoint URL; stop it by its pid."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: install moto[server] into this virtualenv")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (log_dir / "moto_server.log").open("wb")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **CREDENTIALS})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {log_dir / 'moto_server.log'}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment for code under test: credentials, endpoint, and no profile/IMDS lookups."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}


def new_bucket(endpoint: str) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name
