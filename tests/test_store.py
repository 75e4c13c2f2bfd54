"""The local store: keys stay inside the root, and scratch files are published by rename when possible."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from scrubber.store import LocalStore


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ValueError, match="escapes the store root"):
        store.write_text("../outside.txt", "x")


def test_publish_file_moves_a_scratch_file_into_place(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    scratch = tmp_path / "scratch" / "flags.csv"
    scratch.parent.mkdir()
    scratch.write_text("a,b\n1,2\n")
    store.write_text("reports/flags.csv", "an earlier attempt\n")

    store.publish_file(scratch, "reports/flags.csv")

    assert store.read_text("reports/flags.csv") == "a,b\n1,2\n"   # replaced, not appended
    assert not scratch.exists()                                   # renamed, not copied
    assert store.list("reports/") == ["reports/flags.csv"]        # no temporary file left behind


def test_upload_file_leaves_the_source_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "mine.parquet"
    source.write_bytes(b"PAR1 data")
    store.upload_file(source, "lines/mine.parquet")
    assert source.read_bytes() == store.read_bytes("lines/mine.parquet") == b"PAR1 data"


def test_publish_file_copies_across_filesystems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a writable /dev/shm on another filesystem than the test's folder")
    store = LocalStore(tmp_path / "store")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        scratch = Path(other) / "lines.parquet"
        scratch.write_bytes(b"x" * 100_000)
        store.publish_file(scratch, "reports/lines.parquet")   # os.replace raises EXDEV: copied instead
        assert store.read_bytes("reports/lines.parquet") == b"x" * 100_000
    assert store.list("reports/") == ["reports/lines.parquet"]
