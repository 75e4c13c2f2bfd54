"""The nightly DAG end to end with real Airflow (dag.test()) on a real S3 API (moto_server).

A CSV dropped into incoming/ becomes a report; inputs are archived; history grows once; a run with no
new file changes nothing; a failed scrub re-run gives the same report; from the command line
(`airflow dags test`), a malformed file is quarantined whole while its neighbour is scrubbed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from scrubber.s3store import S3Store

pytestmark = [pytest.mark.airflow, pytest.mark.s3]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RELEASE = ROOT / "data" / "reference" / "sample-rvu25d"
RUN_DATE = "2025-11-04"

# Lines in the public input format (architecture 3.2), four patients. NPI 1234567893 passes the NPI check
# digit. 99243 is an office consult, status I (not payable by Medicare): flagged by code_status.
CLAIMS_CSV = (Path(__file__).parent / "fixtures" / "nightly_claims.csv").read_text()
N_LINES = 5


def _reference_files() -> list[Path]:
    if not SAMPLE_RELEASE.is_dir():
        pytest.skip("data/reference/sample-rvu25d (the bundled sample release) is not in this checkout")
    return sorted(p for p in SAMPLE_RELEASE.iterdir() if p.suffix.lower() in (".csv", ".txt"))


@pytest.fixture(scope="module")
def reference_bucket(s3_endpoint: str) -> str:
    """The sample CMS release loaded once per module; each test copies it server-side into its own bucket."""
    import boto3

    from scrubber.reference.loader import load_paths

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    bucket = f"ref-{uuid.uuid4().hex[:12]}"
    template = S3Store(bucket, endpoint_url=s3_endpoint, session=session)
    template.client.create_bucket(Bucket=bucket)
    load_paths(template, _reference_files(), partial=True)  # the sample is a deliberate subset of RVU25D
    return bucket


@pytest.fixture
def store(s3_bucket: str, reference_bucket: str, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    """The bucket the DAG works on (via SCRUBBER_STORE), with the sample CMS release in it."""
    url = f"s3://{s3_bucket}/scrubber"
    monkeypatch.setenv("SCRUBBER_STORE", url)
    monkeypatch.setenv("SCRUBBER_RULES_DIR", str(ROOT / "rules"))
    s = S3Store.from_url(url)
    for obj in s.client.list_objects_v2(Bucket=reference_bucket)["Contents"]:
        s.client.copy_object(Bucket=s3_bucket, Key=s.prefix + obj["Key"],
                             CopySource={"Bucket": reference_bucket, "Key": obj["Key"]})
    assert s.exists("reference/catalog.json")
    return s


@pytest.fixture(scope="module")
def nightly(dag_without_retries):
    """The nightly DAG with retries off, so a failing task fails the run at once instead of waiting 5 min."""
    return dag_without_retries("nightly_claim_scrub")


def _run(dag, logical_date: datetime | None = None, **conf):
    """One dag run via dag.test(); returns (state, {task_id: state})."""
    # a fixed run_after gives a fixed dag run id: calling again clears and re-runs that same dag run
    kwargs = {"logical_date": logical_date, "run_after": logical_date} if logical_date else {}
    dr = dag.test(run_conf={"run_date": RUN_DATE, "shards": 1, **conf}, **kwargs)
    states = {}
    for ti in dr.get_task_instances():
        states[ti.task_id] = str(ti.state) if ti.map_index < 0 else states.get(ti.task_id, str(ti.state))
    return str(dr.state), states


def _snapshot(store: S3Store) -> dict[str, str]:
    return {o.key: o.etag for o in store.list_info("")}


def _report(store: S3Store) -> tuple[str, dict]:
    runs = sorted({k.split("/")[2] for k in store.list(f"reports/{RUN_DATE}/")})
    assert len(runs) == 1, runs
    summary = json.loads(store.read_text(f"reports/{RUN_DATE}/{runs[0]}/summary.json"))
    return runs[0], summary


def _history_rows(store: S3Store, run_id: str) -> int:
    keys = [k for k in store.list("history/") if f"run_id={run_id}" in k]
    return sum(len(store.read_parquet(k)) for k in keys)


def test_dropped_csv_becomes_a_report_and_a_second_run_changes_nothing(store: S3Store, nightly) -> None:
    store.write_text("incoming/claims.csv", CLAIMS_CSV)

    state, tasks = _run(nightly, shards=2)  # patients spread over two mapped scrub tasks
    assert state == "success", tasks
    run_id, summary = _report(store)
    assert summary["run_id"] == run_id
    report = store.list(f"reports/{RUN_DATE}/{run_id}/")
    for name in ("summary.json", "flags.parquet", "flags.csv", "lines.parquet"):
        assert f"reports/{RUN_DATE}/{run_id}/{name}" in report
    lines = store.read_parquet(f"reports/{RUN_DATE}/{run_id}/lines.parquet")
    assert len(lines) == N_LINES
    flags = store.read_parquet(f"reports/{RUN_DATE}/{run_id}/flags.parquet")
    assert set(flags["run_id"]) == {run_id}
    assert "C101" in set(flags.loc[flags["rule_family"] == "code_status", "claim_id"])
    # the input moved to the archive unchanged; nothing left in flight
    assert store.read_text(f"archive/{RUN_DATE}/claims.csv") == CLAIMS_CSV
    assert store.list("incoming/") == [] and store.list("processing/") == [] and store.list("work/") == []
    assert _history_rows(store, run_id) == N_LINES

    before = _snapshot(store)
    state, tasks = _run(nightly)  # the next night: nothing new in incoming/
    assert state == "success"
    assert tasks["claim"] == "skipped" and tasks["publish"] == "skipped"
    assert _snapshot(store) == before


def test_a_failed_scrub_rerun_gives_the_same_report_and_history_once(store: S3Store, nightly, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash in scrub_shard (a broken rules file), then clear and re-run the same dag run."""
    from scrubber.pipeline import run_scrub

    broken = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", broken)
    (broken / "frequency.yaml").write_text("limits: [this is not: valid yaml\n")
    monkeypatch.setenv("SCRUBBER_RULES_DIR", str(broken))
    store.write_text("incoming/claims.csv", CLAIMS_CSV)
    logical = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # after the DAG's start_date, else no task runs

    state, tasks = _run(nightly, logical)
    assert state == "failed"
    assert tasks["scrub_shard"] == "failed" and tasks["publish"] == "upstream_failed"
    assert store.list("reports/") == [] and store.list("history/") == []  # no partial report
    assert len(store.list("processing/")) == 1 and store.list("incoming/") == []  # held for the retry

    monkeypatch.setenv("SCRUBBER_RULES_DIR", str(ROOT / "rules"))
    state, tasks = _run(nightly, logical)  # same logical date = the same dag run, cleared and re-run
    assert state == "success", tasks
    run_id, summary = _report(store)
    assert summary["run_id"] == run_id
    dag_flags = store.read_parquet(f"reports/{RUN_DATE}/{run_id}/flags.parquet")
    assert _history_rows(store, run_id) == N_LINES
    assert store.read_text(f"archive/{RUN_DATE}/claims.csv") == CLAIMS_CSV

    # the same files on the same date, all in one process: same run id, same flags, history still once
    direct = run_scrub(store, [("claims.csv", CLAIMS_CSV.encode())], run_date=date.fromisoformat(RUN_DATE),
                       out_dir=tmp_path / "direct")
    assert direct.spec.run_id == run_id
    local_flags = pd.read_parquet(tmp_path / "direct" / "flags.parquet")
    key = ["claim_id", "line_number", "rule_id"]
    pd.testing.assert_frame_equal(
        dag_flags.sort_values(key).reset_index(drop=True)[sorted(dag_flags.columns)],
        local_flags.sort_values(key).reset_index(drop=True)[sorted(dag_flags.columns)], check_dtype=False)
    assert _history_rows(store, run_id) == N_LINES


def test_cli_run_quarantines_a_malformed_file_and_scrubs_the_good_one(store: S3Store, tmp_path: Path,
                                                                      airflow_home: Path, s3_endpoint: str) -> None:
    """`airflow dags test nightly_claim_scrub` from the command line, the store named by the Airflow Variable
    and S3 reached through the aws_default connection; one of the two dropped files is not a claim file."""
    store.write_text("incoming/good.csv", CLAIMS_CSV)
    store.write_text("incoming/bad.csv", "member;amount\nX;12\n")
    decoy = tmp_path / "local-store"  # SCRUBBER_STORE points here; the Variable must win
    env = {**os.environ, "SCRUBBER_STORE": str(decoy), "AIRFLOW_VAR_SCRUBBER_STORE": store.url,
           # credentials and endpoint only in the Airflow connection, not in the AWS environment
           "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                   "extra": {"endpoint_url": s3_endpoint,
                                                             "region_name": "us-east-1"}})}
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "nightly_claim_scrub",
         "-c", json.dumps({"run_date": RUN_DATE, "shards": 1})],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert not decoy.exists()

    run_id, _ = _report(store)
    lines = store.read_parquet(f"reports/{RUN_DATE}/{run_id}/lines.parquet")
    assert len(lines) == N_LINES
    assert store.read_text(f"archive/{RUN_DATE}/good.csv") == CLAIMS_CSV
    assert store.read_text(f"quarantine/{RUN_DATE}/{run_id}/bad.csv") == "member;amount\nX;12\n"
    reason = store.read_text(f"quarantine/{RUN_DATE}/{run_id}/bad.csv.reason.txt")
    assert reason.startswith("bad.csv: ") and "missing required column" in reason
    quarantine = pd.read_csv(io.BytesIO(store.read_bytes(f"reports/{RUN_DATE}/{run_id}/quarantine.csv")))
    assert set(quarantine["source_file"]) == {"bad.csv"}
    assert store.list(f"archive/{RUN_DATE}/") == [f"archive/{RUN_DATE}/good.csv"]
    assert store.list("incoming/") == [] and store.list("processing/") == []
