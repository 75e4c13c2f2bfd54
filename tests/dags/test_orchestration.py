"""The functions the DAG tasks call, driven directly (no scheduler) on a local store: run date and claimer
from the task context, configuration, and the whole nightly chain with more shards than patients."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from scrubber import orchestration
from scrubber.s3store import S3Store
from scrubber.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RELEASE = ROOT / "data" / "reference" / "sample-rvu25d"
CLAIMS_CSV = (Path(__file__).parent / "fixtures" / "nightly_claims.csv").read_text()


def test_run_date_prefers_param_then_run_after_never_logical_date() -> None:
    dag_run = SimpleNamespace(run_after=datetime(2026, 3, 4, 2, 0, tzinfo=UTC), run_id="scheduled__x")
    assert orchestration.run_date_from_context({"params": {"run_date": "2025-11-04"}, "dag_run": dag_run}) \
        == date(2025, 11, 4)
    assert orchestration.run_date_from_context({"params": {"run_date": None}, "dag_run": dag_run,
                                                "logical_date": None}) == date(2026, 3, 4)
    assert orchestration.run_date_from_context({"params": {}, "dag_run": SimpleNamespace(run_after=None),
                                                "data_interval_end": datetime(2026, 1, 2, 2, tzinfo=UTC)}) \
        == date(2026, 1, 2)
    assert orchestration.run_date_from_context({}) == datetime.now(UTC).date()


def test_claimer_is_one_per_dag_run() -> None:
    ctx = {"dag": SimpleNamespace(dag_id="nightly_claim_scrub"),
           "dag_run": SimpleNamespace(run_id="manual__2026-03-04T02:00:00+00:00")}
    assert orchestration.claimer_from_context(ctx) == "nightly_claim_scrub__manual__2026-03-04T02_00_00_00_00"
    with pytest.raises(ValueError, match="no dag run id"):
        orchestration.claimer_from_context({"dag_run": SimpleNamespace(run_id=None)})


def test_shard_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRUBBER_SHARDS", raising=False)
    assert orchestration.shard_count({}) == orchestration.DEFAULT_SHARDS
    monkeypatch.setenv("SCRUBBER_SHARDS", "3")
    assert orchestration.shard_count({"shards": None}) == 3
    assert orchestration.shard_count({"shards": 7}) == 7
    assert orchestration.shard_count({"shards": 0}) == 3  # 0/None mean "not set"


def test_quarantined_files_are_the_ones_with_no_accepted_line() -> None:
    files = [{"name": "good.csv", "accepted": 5, "error": None},
             {"name": "bad.csv", "accepted": 0, "error": "missing required column(s): claim_id"},
             {"name": "partly.csv", "accepted": 3, "error": None, "quarantined": 2}]
    sources = ["processing/d/r/good.csv", "processing/d/r/team/bad.csv", "processing/d/r/partly.csv"]
    assert orchestration.quarantined_files(files, sources) == {
        "processing/d/r/team/bad.csv": "missing required column(s): claim_id"}


def test_dag_store_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCRUBBER_STORE", str(tmp_path / "st"))
    store = orchestration.dag_store()
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "st").resolve()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    s3 = orchestration.dag_store("s3://bucket/pre")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix, s3.endpoint_url) == ("bucket", "pre/",
                                                                                   "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAMPLE_RELEASE.is_dir():
        pytest.skip("data/reference/sample-rvu25d (the bundled sample release) is not in this checkout")
    from scrubber.reference.loader import load_paths

    root = tmp_path_factory.mktemp("reference-template")
    load_paths(LocalStore(root), sorted(SAMPLE_RELEASE.glob("*.csv")) + sorted(SAMPLE_RELEASE.glob("*.txt")),
               partial=True)
    return root


def _chain(store: LocalStore, shards: int, claimer: str) -> tuple[dict, dict]:
    """Every task of the nightly DAG, in order, as the DAG calls them."""
    ctx = {"params": {"run_date": "2025-11-04"}, "dag_run": SimpleNamespace(run_id=claimer, run_after=None)}
    claim = orchestration.claim_incoming_files(ctx, store=store)
    spec = orchestration.plan(claim, store=store)
    shard_keys = orchestration.intake(spec, shards, store=store)
    results = [orchestration.scrub_shard(spec, k, store=store) for k in shard_keys]
    summary = orchestration.publish(spec, results, store=store)
    return spec, orchestration.finish(spec, summary, store=store)


def test_more_shards_than_patients_gives_the_same_report(reference_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUBBER_RULES_DIR", str(ROOT / "rules"))
    flags = {}
    for shards in (1, 7):  # 4 patients over 7 shards: at least 3 shards are empty
        store = LocalStore(tmp_path / f"store{shards}")
        shutil.copytree(reference_dir / "reference", store.root / "reference")
        store.write_text("incoming/claims.csv", CLAIMS_CSV)
        spec, done = _chain(store, shards, f"run-{shards}")
        assert done["moved"] == {spec["sources"][0]: "archive/2025-11-04/claims.csv"}
        assert store.list("work/") == [] and store.list("processing/") == []
        report = f"reports/2025-11-04/{spec['run_id']}/"
        assert len(store.read_parquet(report + "lines.parquet")) == 5
        flags[shards] = store.read_parquet(report + "flags.parquet")
        # nothing left to claim: the claim task skips the rest of the run
        from airflow.sdk.exceptions import AirflowSkipException

        with pytest.raises(AirflowSkipException):
            _chain(store, shards, f"next-night-{shards}")
    key = ["claim_id", "line_number", "rule_id"]
    one, seven = (f.sort_values(key).reset_index(drop=True) for f in (flags[1], flags[7]))
    assert len(one) > 0
    # same rows and values; dtypes may differ (a categorical column after merging several shards)
    pd.testing.assert_frame_equal(one, seven, check_dtype=False, check_categorical=False)


def test_a_night_with_only_an_unreadable_file_still_reports_and_quarantines_it(
        reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRUBBER_RULES_DIR", str(ROOT / "rules"))
    store = LocalStore(tmp_path / "store")
    shutil.copytree(reference_dir / "reference", store.root / "reference")
    store.write_bytes("incoming/scan.pdf", b"%PDF-1.7\n\x00\x01binary")
    spec, done = _chain(store, 2, "run-pdf")
    run_id = spec["run_id"]
    assert done["moved"] == {spec["sources"][0]: f"quarantine/2025-11-04/{run_id}/scan.pdf"}
    assert store.read_bytes(f"quarantine/2025-11-04/{run_id}/scan.pdf") == b"%PDF-1.7\n\x00\x01binary"
    assert store.read_text(f"quarantine/2025-11-04/{run_id}/scan.pdf.reason.txt").startswith("scan.pdf: ")
    assert len(store.read_parquet(f"reports/2025-11-04/{run_id}/lines.parquet")) == 0
    assert store.list("archive/") == [] and store.list("incoming/") == []
