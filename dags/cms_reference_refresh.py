"""CMS reference refresh: fetch the quarter's release files, validate and publish them as a new release.

Wiring only; each task calls one function of scrubber.orchestration (logic and tests live there).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from scrubber import orchestration

DOC_MD = """
### CMS reference refresh

**What it does.** Downloads the configured CMS release files (PFS RVU zip / PPRRVU, GPCI, LOCCO,
ZIP5 locality file, NCCI PTP, MUE), parses them, validates every table with Great Expectations and
publishes them as a versioned release in the store's `reference/` (catalog last, so a release is
visible all at once or not at all). A file that fails validation is not published.

**Schedule.** Quarterly (`0 6 1 1,4,7,10 *`: NCCI PTP and MUE change every quarter; the PFS RVU file
has its yearly January release and quarterly corrections A-D on the same rhythm). Override with
`SCRUBBER_REFERENCE_CRON`, or trigger by hand with the `sources` param when CMS publishes a
correction between quarters.

**Sources.** The `sources` param, else the Airflow Variable `scrubber_reference_sources` (JSON list),
else env `SCRUBBER_REFERENCE_SOURCES`. Each entry is an `http(s)://` URL, an `s3://bucket/key`
(or `s3://bucket/prefix/`), or a local path / folder / zip.

**Asset.** `announce` has the Asset `scrubber://reference` as outlet and runs only when a release was
actually published (re-loading identical files changes nothing and the task is skipped), so
consumers hear of new releases only. The event's `extra` lists the releases.

**Retries are safe.** Loading is idempotent on identical content; a changed re-issue of a release
becomes a new revision.
"""

REFERENCE = Asset(orchestration.REFERENCE_ASSET_URI)


@dag(
    dag_id="cms_reference_refresh",
    schedule=os.environ.get("SCRUBBER_REFERENCE_CRON", "0 6 1 1,4,7,10 *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["scrubber", "reference", "cms"],
    default_args={"owner": "billing-ops", "retries": 3, "retry_delay": timedelta(minutes=15)},
    params={
        "sources": Param(None, type=["null", "array"],
                         description="Release files to load: http(s) URLs, s3:// keys or local paths"),
        "release": Param(None, type=["null", "string"], description="Force a release id (default: detected)"),
        "partial": Param(False, type="boolean",
                         description="Accept a deliberate subset of a release (a sample): skips row-count checks"),
    },
)
def cms_reference_refresh() -> None:
    @task
    def resolve_sources(**context) -> list[str]:
        return orchestration.reference_sources(context["params"])

    @task
    def load(sources: list[str], **context) -> dict:
        return orchestration.refresh_reference(sources, release=context["params"].get("release"),
                                               partial=bool(context["params"].get("partial")))

    @task(outlets=[REFERENCE])
    def announce(report: dict, **context) -> list[str]:
        return orchestration.announce_release(report, context["outlet_events"], REFERENCE)

    announce(load(resolve_sources()))


cms_reference_refresh()
