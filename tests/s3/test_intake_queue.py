"""The incoming/ queue on both stores: what is claimable, exclusive claims under a race, archive/quarantine."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from scrubber import intake_queue
from scrubber.intake_queue import claim_incoming, finish_claimed, pending_files, requeue
from scrubber.s3store import S3Store
from scrubber.store import LocalStore, Store

RUN_DATE = date(2026, 3, 2)


@pytest.fixture(params=["local", "s3"])
def store_factory(request: pytest.FixtureRequest, tmp_path):
    """Returns a function making independent handles on ONE store (like two workers would have)."""
    if request.param == "local":
        root = tmp_path / "store"
        return lambda: LocalStore(root)
    bucket = request.getfixturevalue("s3_bucket")
    return lambda: S3Store.from_url(f"s3://{bucket}/q")


def _drop(store: Store, names: list[str]) -> None:
    for name in names:
        store.write_text(f"incoming/{name}", f"claim_id,line_number\n{name},1\n")


def test_claim_moves_files_and_is_idempotent_per_claimer(store_factory) -> None:
    store = store_factory()
    _drop(store, ["a.csv", "team1/b.csv"])
    held = claim_incoming(store, RUN_DATE, claimer="scheduled__2026-03-02T02:00:00+00:00")
    prefix = "processing/2026-03-02/scheduled__2026-03-02T02_00_00_00_00/"
    assert held == [prefix + "a.csv", prefix + "team1/b.csv"]
    assert store.list("incoming/") == []
    assert store.read_text(prefix + "a.csv").startswith("claim_id")
    # a retry of the same run sees what it holds plus what arrived since; another run gets only new files
    _drop(store, ["c.csv"])
    assert claim_incoming(store, RUN_DATE, claimer="scheduled__2026-03-02T02:00:00+00:00") == [
        prefix + "a.csv", prefix + "c.csv", prefix + "team1/b.csv"]
    assert claim_incoming(store, RUN_DATE, claimer="manual__other") == []


def test_unfinished_and_empty_files_are_not_claimed(store_factory) -> None:
    store = store_factory()
    _drop(store, ["ok.csv", "upload.csv.part", "x.filepart", ".hidden.csv"])
    store.write_bytes("incoming/empty.csv", b"")
    assert [p.key for p in pending_files(store)] == ["incoming/ok.csv"]
    assert claim_incoming(store, RUN_DATE, claimer="r1") == ["processing/2026-03-02/r1/ok.csv"]
    assert "incoming/empty.csv" in store.list("incoming/")


def test_s3_in_progress_multipart_upload_and_folder_marker_are_not_taken(s3_bucket: str) -> None:
    store = S3Store.from_url(f"s3://{s3_bucket}")
    client, key = store.client, "incoming/big.csv"
    client.put_object(Bucket=s3_bucket, Key="incoming/", Body=b"")  # "folder" created in a console
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    part = client.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                              Body=b"claim_id,line_number\n" + b"C1,1\n" * 1000)
    assert pending_files(store) == []
    assert claim_incoming(store, RUN_DATE, claimer="r1") == []

    client.complete_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert claim_incoming(store, RUN_DATE, claimer="r1") == ["processing/2026-03-02/r1/big.csv"]


@pytest.mark.parametrize("round_", range(2))
def test_two_concurrent_claimers_never_share_a_file(store_factory, round_: int) -> None:
    names = [f"f{i:02d}.csv" for i in range(24)]
    _drop(store_factory(), names)
    barrier = threading.Barrier(2)
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def run(claimer: str) -> None:
        store = store_factory()  # own client / handle, as two workers would have
        try:
            barrier.wait()
            results[claimer] = claim_incoming(store, RUN_DATE, claimer=claimer)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got_a = {k.rsplit("/", 1)[-1] for k in results["run-a"]}
    got_b = {k.rsplit("/", 1)[-1] for k in results["run-b"]}
    assert got_a.isdisjoint(got_b)
    assert got_a | got_b == set(names)
    store = store_factory()
    assert store.list("incoming/") == []
    assert len(store.list("processing/2026-03-02/")) == len(names)  # no copies, no leftover claim markers


def test_finish_archives_quarantines_and_is_idempotent(store_factory) -> None:
    store = store_factory()
    _drop(store, ["good.csv", "bad.csv"])
    held = claim_incoming(store, RUN_DATE, claimer="r1")
    bad = "processing/2026-03-02/r1/bad.csv"
    moved = finish_claimed(store, held, run_date=RUN_DATE, run_id="RUN1", quarantined={bad: "not a CSV"})
    assert moved == {"processing/2026-03-02/r1/good.csv": "archive/2026-03-02/good.csv",
                     bad: "quarantine/2026-03-02/RUN1/bad.csv"}
    assert store.read_text("quarantine/2026-03-02/RUN1/bad.csv.reason.txt") == "bad.csv: not a CSV\n"
    assert store.list("processing/") == []
    # a retried finish finds everything already in place
    assert finish_claimed(store, held, run_date=RUN_DATE, run_id="RUN1", quarantined={bad: "not a CSV"}) == moved


def test_same_name_later_the_same_day_is_not_overwritten(store_factory) -> None:
    store = store_factory()
    store.write_text("incoming/daily.csv", "first")
    finish_claimed(store, claim_incoming(store, RUN_DATE, claimer="r1"), run_date=RUN_DATE, run_id="RUN1")
    store.write_text("incoming/daily.csv", "second, different")
    moved = finish_claimed(store, claim_incoming(store, RUN_DATE, claimer="r2"), run_date=RUN_DATE, run_id="RUN2")
    assert list(moved.values()) == ["archive/2026-03-02/RUN2/daily.csv"]
    assert store.read_text("archive/2026-03-02/daily.csv") == "first"


def test_finish_fails_loudly_when_a_claimed_file_vanished(store_factory) -> None:
    with pytest.raises(FileNotFoundError, match="vanished"):
        finish_claimed(store_factory(), ["processing/2026-03-02/r1/ghost.csv"], run_date=RUN_DATE, run_id="R")


def test_requeue_gives_files_back(store_factory) -> None:
    store = store_factory()
    _drop(store, ["a.csv"])
    held = claim_incoming(store, RUN_DATE, claimer="r1")
    assert requeue(store, held) == ["incoming/a.csv"]
    assert store.list("processing/") == []


def test_safe_token() -> None:
    assert intake_queue.safe_token("manual__2026-03-02T10:00:00.123+00:00") == "manual__2026-03-02T10_00_00.123_00_00"
    with pytest.raises(ValueError):
        intake_queue.safe_token("::")
