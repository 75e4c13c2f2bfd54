"""Fixtures for the S3 store tests: a real moto_server on 127.0.0.1 and a fresh bucket per test."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("scrubber_tests_motoserver", Path(__file__).with_name("_motoserver.py"))
motoserver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(motoserver)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with motoserver.moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket; the environment points boto3 (and Settings) at moto_server."""
    for key, value in motoserver.s3_env(s3_endpoint).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SCRUBBER_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return motoserver.new_bucket(s3_endpoint)
