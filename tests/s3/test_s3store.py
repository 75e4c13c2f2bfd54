"""S3Store against a real S3 API (moto_server on 127.0.0.1): round trips, listing, atomicity, claims."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import pytest

from scrubber.s3store import CLAIMS_PREFIX, S3Store, parse_s3_url
from scrubber.store import open_store

pytestmark = pytest.mark.s3


@pytest.fixture
def store(s3_bucket: str) -> S3Store:
    return S3Store.from_url(f"s3://{s3_bucket}/tenant-a")


def test_parse_url() -> None:
    assert parse_s3_url("s3://bkt") == ("bkt", "")
    assert parse_s3_url("s3://bkt/a/b/") == ("bkt", "a/b/")
    with pytest.raises(ValueError, match="not an s3"):
        parse_s3_url("/tmp/x")
    with pytest.raises(ValueError, match="no bucket"):
        parse_s3_url("s3:///x")


def test_open_store_selects_s3_with_endpoint_from_env(s3_bucket: str, s3_endpoint: str) -> None:
    store = open_store(f"s3://{s3_bucket}/p")
    assert isinstance(store, S3Store)
    assert store.url == f"s3://{s3_bucket}/p"
    assert store.endpoint_url == s3_endpoint
    # path-style addressing: the bucket is in the path, not a hostname the local server cannot resolve
    assert store.client.meta.config.s3["addressing_style"] == "path"


def test_scrubber_endpoint_setting_wins(s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("SCRUBBER_S3_ENDPOINT_URL", s3_endpoint)
    store = S3Store.from_url(f"s3://{s3_bucket}")
    store.write_text("hello.txt", "hi")
    assert store.read_text("hello.txt") == "hi"


def test_round_trips(store: S3Store, s3_bucket: str) -> None:
    store.write_bytes("a/b/c.bin", b"\x00\x01payload")
    store.write_text("a/note.txt", "héllo")
    frame = pd.DataFrame({"claim_id": ["C1", "C2"], "units": [1, 3]})
    store.write_parquet("a/t.parquet", frame)

    assert store.read_bytes("a/b/c.bin") == b"\x00\x01payload"
    assert store.read_text("a/note.txt") == "héllo"
    pd.testing.assert_frame_equal(store.read_parquet("a/t.parquet"), frame)
    assert store.read_parquet("a/t.parquet", columns=["units"])["units"].tolist() == [1, 3]
    assert store.exists("a/note.txt") and not store.exists("a/none.txt")
    assert store.list("a/") == ["a/b/c.bin", "a/note.txt", "a/t.parquet"]
    assert store.list("a/b") == ["a/b/c.bin"]
    assert store.local_path("a/note.txt") is None
    # keys live under the store prefix in the bucket, and another prefix does not see them
    raw = boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert {o["Key"] for o in raw} == {"tenant-a/a/b/c.bin", "tenant-a/a/note.txt", "tenant-a/a/t.parquet"}
    assert S3Store.from_url(f"s3://{s3_bucket}/tenant-b").list("") == []

    store.move("a/note.txt", "z/moved.txt")
    assert not store.exists("a/note.txt") and store.read_text("z/moved.txt") == "héllo"
    store.delete("z/moved.txt")
    store.delete("z/moved.txt")  # deleting a missing key is not an error (as locally)
    assert not store.exists("z/moved.txt")
    with pytest.raises(FileNotFoundError, match="no such object"):
        store.read_bytes("z/moved.txt")
    with pytest.raises(FileNotFoundError):
        store.move("z/moved.txt", "elsewhere")
    with pytest.raises(ValueError, match="escapes"):
        store.read_bytes("../other-tenant/x")

    store.delete_prefix("a/")
    assert store.list("") == []


def test_list_paginates_and_skips_folder_markers(store: S3Store) -> None:
    store.page_size = 7
    keys = [f"incoming/f{i:03d}.csv" for i in range(25)]
    for key in keys:
        store.write_bytes(key, b"x")
    store.client.put_object(Bucket=store.bucket, Key=store.prefix + "incoming/sub/", Body=b"")  # console "folder"
    calls = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))

    assert store.list("incoming/") == keys
    assert len(calls) == 4  # 26 objects at 7 per page: the listing followed the continuation tokens
    assert [o.key for o in store.list_info("incoming/")][-1] == "incoming/sub/"
    store.delete_prefix("incoming/")
    assert store.list_info("incoming/") == []


def test_overwrite_is_atomic_for_readers(store: S3Store) -> None:
    """A reader racing a writer sees one complete version or the other, never a mix or a partial object."""
    versions = [bytes([65 + i]) * 300_000 for i in range(6)]
    store.write_bytes("reports/summary.json", versions[0])
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        reader_store = S3Store(store.bucket, store.prefix, endpoint_url=store.endpoint_url)
        while not stop.is_set():
            seen.append(reader_store.read_bytes("reports/summary.json"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            for v in versions:
                store.write_bytes("reports/summary.json", v)
    finally:
        stop.set()
        thread.join()
    assert seen
    assert all(s in versions for s in seen)
    assert store.read_bytes("reports/summary.json") == versions[-1]


def test_put_if_absent(store: S3Store) -> None:
    assert store.put_if_absent("locks/x", b"first")
    assert not store.put_if_absent("locks/x", b"second")
    assert store.read_bytes("locks/x") == b"first"


def test_claim_move_takes_the_file_once(store: S3Store) -> None:
    store.write_text("incoming/a.csv", "claim_id\n1\n")
    info = store.head("incoming/a.csv")
    assert store.claim_move("incoming/a.csv", "processing/r1/a.csv", owner="r1", etag=info.etag)
    assert not store.claim_move("incoming/a.csv", "processing/r2/a.csv", owner="r2", etag=info.etag)
    assert store.list("") == ["processing/r1/a.csv"]  # no marker left behind


def test_claim_move_respects_a_live_claim_and_takes_over_a_stale_one(store: S3Store) -> None:
    store.write_text("incoming/a.csv", "x")

    def marker(owner: str, age: timedelta) -> None:
        body = {"owner": owner, "claimed_at": (datetime.now(UTC) - age).isoformat()}
        store.write_text(CLAIMS_PREFIX + "incoming/a.csv", json.dumps(body))

    marker("other-run", timedelta(minutes=5))
    assert not store.claim_move("incoming/a.csv", "processing/me/a.csv", owner="me")
    assert store.exists("incoming/a.csv")
    marker("crashed-run", timedelta(hours=7))
    assert store.claim_move("incoming/a.csv", "processing/me/a.csv", owner="me")
    assert store.list("") == ["processing/me/a.csv"]


def test_claim_move_finishes_own_interrupted_claim(store: S3Store) -> None:
    """A worker crashed after copying but before deleting: the retry of the same owner completes the move."""
    store.write_text("incoming/a.csv", "x")
    etag = store.head("incoming/a.csv").etag
    store.write_text(CLAIMS_PREFIX + "incoming/a.csv",
                     json.dumps({"owner": "me", "claimed_at": datetime.now(UTC).isoformat()}))
    store.copy("incoming/a.csv", "processing/me/a.csv")
    assert store.claim_move("incoming/a.csv", "processing/me/a.csv", owner="me", etag=etag)
    assert store.list("") == ["processing/me/a.csv"]


def test_claim_move_leaves_a_replaced_file(store: S3Store) -> None:
    """Listed at one version, replaced before the claim: the new upload stays for the next run."""
    store.write_text("incoming/a.csv", "old")
    old_etag = store.head("incoming/a.csv").etag
    store.write_text("incoming/a.csv", "new content")
    assert not store.claim_move("incoming/a.csv", "processing/me/a.csv", owner="me", etag=old_etag)
    assert store.read_text("incoming/a.csv") == "new content"
    assert store.list("processing/") == []


def test_download_and_upload_file(store: S3Store, tmp_path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"z" * 9_000_000)  # above the 8 MB multipart threshold
    store.upload_file(src, "reference/raw/big.bin")
    out = store.download_file("reference/raw/big.bin", tmp_path / "out" / "big.bin")
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(FileNotFoundError):
        store.download_file("reference/raw/none.bin", tmp_path / "none.bin")
