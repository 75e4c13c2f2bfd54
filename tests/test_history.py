"""Claim history in the store: month partitions, replace-on-rerun, window reads (local folder and S3 API)."""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scrubber.history import HISTORY_COLUMNS, append_history, history_files, read_history
from scrubber.store import LocalStore, Store


def lines(rows: list[dict], start_uid: int = 0) -> pd.DataFrame:
    """Canonical lines (only what history stores, plus raw columns it must drop)."""
    base = {"claim_id": "C1", "line_number": 1, "patient_id": "P1", "rendering_npi": "1234567893",
            "billing_npi": None, "payer": "medicare", "service_date": "2025-03-14", "hcpcs": "99213",
            "modifiers": "", "units": 1.0, "place_of_service": "11", "rvu_release": "RVU25A", "status_code": "A",
            "global_days": "XXX", "source_file": "claims.csv", "source_row": 2, "charge_amount": 120.0,
            "diagnosis_codes": "M79.1"}
    frame = pd.DataFrame([{**base, "line_uid": start_uid + i, **r} for i, r in enumerate(rows)])
    frame["service_date"] = pd.to_datetime(frame["service_date"])
    return frame


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_layout_one_file_per_run_and_service_month(store: Store) -> None:
    batch = lines([{"service_date": "2025-01-31"}, {"service_date": "2025-03-01"}, {"service_date": "2025-01-02"}])
    assert append_history(store, batch, run_id="20250310-a1") == 3
    assert store.list("history/") == ["history/service_month=2025-01/run_id=20250310-a1.parquet",
                                      "history/service_month=2025-03/run_id=20250310-a1.parquet"]
    jan = store.read_parquet("history/service_month=2025-01/run_id=20250310-a1.parquet")
    assert list(jan.columns) == HISTORY_COLUMNS                     # no source_file, charge, diagnoses
    assert sorted(jan["line_uid"]) == [0, 2] and set(jan["run_id"]) == {"20250310-a1"}


def test_round_trip_types(store: Store) -> None:
    batch = lines([{"modifiers": "25,59", "units": 2.5, "billing_npi": "1111111112", "global_days": "000"}])
    append_history(store, batch, run_id="r1")
    got = read_history(store, patient_ids=["P1"], start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31))
    row = got.iloc[0]
    assert got["service_date"].dtype == "datetime64[ns]" and row["service_date"] == pd.Timestamp("2025-03-14")
    assert (row["modifiers"], row["units"], row["billing_npi"], row["global_days"], row["run_id"]) == \
        ("25,59", 2.5, "1111111112", "000", "r1")
    assert row["line_uid"] == 0 and row["line_number"] == 1 and row["claim_id"] == "C1"


def test_lines_given_as_the_report_table_store_the_same_history(tmp_path: Path) -> None:
    """A run hands history the Arrow table it writes to lines.parquet (text categoricals as dictionaries);
    the files read back the same as from the frame."""
    from scrubber.history import HistoryWriter
    from scrubber.shards import parquet_table

    batch = lines([{"service_date": "2025-01-31", "billing_npi": "1111111112"}, {"service_date": "2025-03-01"},
                   {"service_date": "2025-01-02", "payer": None, "units": 3.0}])
    batch["status_code"] = pd.Categorical(["A", None, "T"])
    batch["global_days"] = pd.Categorical(["000", "XXX", "090"])
    batch["line_number"] = pd.array([1, 2, None], dtype="Int64")
    window = {"patient_ids": None, "start": dt.date(2025, 1, 1), "end": dt.date(2025, 12, 31)}
    from_frame, from_table = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    append_history(from_frame, batch, run_id="r1")
    with HistoryWriter(from_table, "r1") as writer:
        writer.add(parquet_table(batch))
    assert from_table.list("history/") == from_frame.list("history/")
    pd.testing.assert_frame_equal(read_history(from_table, **window), read_history(from_frame, **window))
    no_date = parquet_table(batch.assign(service_date=pd.to_datetime([None, "2025-01-02", "2025-01-03"])))
    with pytest.raises(ValueError, match="line 0 has no service_date"):
        HistoryWriter(LocalStore(tmp_path / "c"), "r2").add(no_date)


def test_files_read_as_plain_text_and_older_files_still_mix(tmp_path: Path) -> None:
    """History files carry no Arrow schema: any Parquet reader gets the run id and text columns as plain
    strings. A month file written with the schema (as earlier versions did) reads together with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scrubber.history import HISTORY_SCHEMA

    store = LocalStore(tmp_path / "store")
    append_history(store, lines([{"service_date": "2025-03-01"}, {"service_date": "2025-03-02", "line_number": 2}]),
                   run_id="20250310-new")
    path = tmp_path / "store" / "history" / "service_month=2025-03" / "run_id=20250310-new.parquet"
    assert pq.read_schema(path) == HISTORY_SCHEMA.remove_metadata()
    assert pq.read_table(path).column("run_id").to_pylist() == ["20250310-new"] * 2
    old = lines([{"service_date": "2025-03-05", "patient_id": "P1", "hcpcs": "20610"}], start_uid=7)
    old_table = pa.Table.from_pandas(old.assign(run_id="20250301-old")[HISTORY_COLUMNS], schema=HISTORY_SCHEMA,
                                     preserve_index=False)
    old_path = path.with_name("run_id=20250301-old.parquet")
    pq.write_table(old_table, old_path)                # the Arrow schema stored, as before
    got = read_history(store, patient_ids=["P1"], start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 31))
    assert sorted(got["run_id"]) == ["20250301-old", "20250310-new", "20250310-new"]
    assert sorted(got["hcpcs"]) == ["20610", "99213", "99213"]


def test_rerun_replaces_never_duplicates(store: Store) -> None:
    first = lines([{"service_date": "2025-02-10"}, {"service_date": "2025-03-10"}])
    append_history(store, first, run_id="night")
    append_history(store, lines([{"hcpcs": "99214"}]), run_id="other")
    # the same night re-run with corrected input: March only, two lines
    again = lines([{"hcpcs": "20553"}, {"hcpcs": "20552"}])
    assert append_history(store, again, run_id="night") == 2
    assert append_history(store, again, run_id="night") == 2        # and once more: still no duplicates
    keys = store.list("history/")
    assert "history/service_month=2025-02/run_id=night.parquet" not in keys   # stale month removed
    got = read_history(store, patient_ids=None, start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31))
    assert sorted(got.loc[got["run_id"] == "night", "hcpcs"]) == ["20552", "20553"]
    assert got.loc[got["run_id"] == "other", "hcpcs"].tolist() == ["99214"]
    assert append_history(store, lines([{}]).iloc[0:0], run_id="night") == 0    # an empty re-run clears it
    assert all("run_id=night." not in k for k in store.list("history/"))


def test_window_reads_only_overlapping_months(store: Store) -> None:
    append_history(store, lines([{"service_date": d} for d in ("2024-11-30", "2025-01-01", "2025-02-28",
                                                                 "2025-03-01", "2025-05-05")]), run_id="r1")
    # a file in a month outside the window is never opened: make it unreadable to prove it
    store.write_bytes("history/service_month=2024-06/run_id=broken.parquet", b"not parquet")
    got = read_history(store, patient_ids=["P1"], start=dt.date(2025, 1, 15), end=dt.date(2025, 3, 1))
    assert got["service_date"].dt.strftime("%Y-%m-%d").tolist() == ["2025-02-28", "2025-03-01"]
    files = history_files(store, dt.date(2025, 1, 15), dt.date(2025, 3, 1))
    assert [f.split("/")[1] for f in files] == ["service_month=2025-01", "service_month=2025-02",
                                                "service_month=2025-03"]
    with pytest.raises(Exception, match=r"(?i)parquet"):
        read_history(store, patient_ids=["P1"], start=dt.date(2024, 6, 1), end=dt.date(2024, 6, 30))


def test_patient_code_and_run_filters(store: Store) -> None:
    append_history(store, lines([{"patient_id": "P1"}, {"patient_id": "P2", "hcpcs": "G0439"},
                                 {"patient_id": "P3"}]), run_id="r1")
    append_history(store, lines([{"patient_id": "P2"}]), run_id="r2")
    window = {"start": dt.date(2025, 3, 1), "end": dt.date(2025, 3, 31)}
    got = read_history(store, patient_ids=np.array(["P2", "P9"]), **window)
    assert sorted(zip(got["run_id"], got["hcpcs"], strict=True)) == [("r1", "G0439"), ("r2", "99213")]
    assert read_history(store, patient_ids=["P2"], exclude_run_id="r2", **window)["run_id"].tolist() == ["r1"]
    assert read_history(store, patient_ids=None, hcpcs={"G0439"}, **window)["patient_id"].tolist() == ["P2"]
    assert read_history(store, patient_ids=[], **window).empty
    empty = read_history(store, patient_ids=["P1"], start=dt.date(2030, 1, 1), end=dt.date(2030, 2, 1))
    assert empty.empty and list(empty.columns) == HISTORY_COLUMNS


def test_bad_run_id_and_missing_dates(store: Store) -> None:
    with pytest.raises(ValueError, match="cannot name a history file"):
        append_history(store, lines([{}]), run_id="../escape")
    bad = lines([{}])
    bad.loc[0, "service_date"] = pd.NaT
    with pytest.raises(ValueError, match="no service_date"):
        append_history(store, bad, run_id="r1")


def test_many_lines_one_write_per_month(store: Store) -> None:
    n = 50_000
    rng = np.random.default_rng(7)
    batch = pd.DataFrame({
        "line_uid": np.arange(n), "claim_id": [f"C{i}" for i in range(n)], "line_number": 1,
        "patient_id": [f"P{i % 5000}" for i in range(n)], "rendering_npi": "1234567893", "payer": "medicare",
        "service_date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
        "hcpcs": "99213", "modifiers": "", "units": 1.0, "place_of_service": "11"})
    assert append_history(store, batch, run_id="big") == n
    assert len(store.list("history/")) == 3
    got = read_history(store, patient_ids=[f"P{i}" for i in range(100)], start=dt.date(2025, 1, 1),
                       end=dt.date(2025, 3, 31))
    assert len(got) == n // 50 and got["line_uid"].is_unique


# --- the same through the S3 API (moto_server on 127.0.0.1) ---------------------------------------------------

def _motoserver():
    path = Path(__file__).resolve().parent / "s3" / "_motoserver.py"
    spec = importlib.util.spec_from_file_location("scrubber_tests_motoserver_history", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    pytest.importorskip("moto")
    from scrubber.s3store import S3Store

    moto = _motoserver()
    try:
        server = moto.moto_server(tmp_path_factory.mktemp("moto-history"))
        endpoint = server.__enter__()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"moto_server not available: {exc}")
    try:
        mp = pytest.MonkeyPatch()
        for key, value in moto.s3_env(endpoint).items():
            mp.setenv(key, value)
        bucket = moto.new_bucket(endpoint)
        yield S3Store.from_url(f"s3://{bucket}/practice", endpoint_url=endpoint)
        mp.undo()
    finally:
        server.__exit__(None, None, None)


@pytest.mark.s3
def test_history_on_s3(s3_store: Store) -> None:
    append_history(s3_store, lines([{"service_date": "2025-02-10"}, {"service_date": "2025-03-10"}]), run_id="n1")
    append_history(s3_store, lines([{"service_date": "2025-03-11"}]), run_id="n1")   # re-run: March only
    assert s3_store.list("history/") == ["history/service_month=2025-03/run_id=n1.parquet"]
    got = read_history(s3_store, patient_ids=["P1"], start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 31))
    assert got["service_date"].tolist() == [pd.Timestamp("2025-03-11")]
