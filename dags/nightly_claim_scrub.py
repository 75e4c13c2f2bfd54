"""Nightly claim scrub: whatever billing teams dropped into incoming/ becomes an exception report by morning.

Wiring only; each task calls one function of scrubber.orchestration (logic and tests live there).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from scrubber import orchestration

DOC_MD = """
### Nightly claim scrub

**What it does.** Claims every finished file in the store's `incoming/` (CSV, Parquet, X12 837P),
scrubs it against the CMS release in force on each line's date of service, and publishes the
exception report under `reports/<run_date>/<run_id>/` (flags, lines, quarantine, summary.json last,
Excel, HTML). Inputs then move to `archive/<run_date>/`; a file rejected as a whole goes to
`quarantine/<run_date>/<run_id>/` with a `.reason.txt`.

**Schedule: a cron at 02:00 that takes whatever is there.** Claim files are a daily batch, so a
sensor (even a deferrable `S3KeySensor`) would only add moving parts: the cron run claims all
finished files at once and skips itself when `incoming/` is empty. It is deliberately *not* also
triggered by the `scrubber://reference` Asset: a new CMS release applies by date of service from
its effective date, it does not call for re-scrubbing nights already reported. Change the cron with
`SCRUBBER_NIGHTLY_CRON`.

**Tasks.** `claim` (move files to `processing/<run_date>/<dag run>/`; two overlapping runs never get
the same file) -> `plan` (run id = hash of run date + file names and contents) -> `intake` (validate,
quarantine bad rows, shard lines by patient) -> `scrub_shard` (mapped, one per shard) -> `publish`
-> `finish` (archive inputs, drop work files).

**Run date.** The `run_date` param if given, else the date the run was due (`run_after`), never
`logical_date` (empty for manual runs in Airflow 3).

**Retries are safe.** Every step is idempotent: the run id depends only on the date and the files,
so a retried or cleared task rewrites the same keys, the report is replaced whole and history is
replaced by run id, never appended twice. A failed run keeps its files in `processing/`; clear it
to retry with the same files.

**Configuration.** Store: Airflow Variable `scrubber_store`, else env `SCRUBBER_STORE`
(`s3://bucket/prefix` or a folder). S3 credentials and endpoint: connection `aws_default` when it
exists, else the standard AWS chain and `AWS_ENDPOINT_URL`. Shards: param `shards` or
`SCRUBBER_SHARDS` (default 4).
"""

REFERENCE = Asset(orchestration.REFERENCE_ASSET_URI)


@dag(
    dag_id="nightly_claim_scrub",
    schedule=os.environ.get("SCRUBBER_NIGHTLY_CRON", "0 2 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["scrubber", "claims", "nightly"],
    default_args={"owner": "billing-ops", "retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "run_date": Param(None, type=["null", "string"], format="date",
                          description="Business date to file the run under (YYYY-MM-DD); default: run_after"),
        "shards": Param(None, type=["null", "integer"], minimum=1, description="Parallel scrub shards"),
    },
)
def nightly_claim_scrub() -> None:
    @task
    def claim(**context) -> dict:
        return orchestration.claim_incoming_files(context)

    @task
    def plan(claimed: dict) -> dict:
        return orchestration.plan(claimed)

    @task
    def intake(spec: dict, **context) -> list[str]:
        return orchestration.intake(spec, orchestration.shard_count(context["params"]))

    @task(inlets=[REFERENCE])
    def scrub_shard(spec: dict, shard_key: str) -> str:
        return orchestration.scrub_shard(spec, shard_key)

    @task
    def publish(spec: dict, shard_results: list[str]) -> dict:
        return orchestration.publish(spec, shard_results)

    @task
    def finish(spec: dict, summary: dict) -> dict:
        return orchestration.finish(spec, summary)

    spec = plan(claim())
    results = scrub_shard.partial(spec=spec).expand(shard_key=intake(spec))
    finish(spec, publish(spec, results))


nightly_claim_scrub()
