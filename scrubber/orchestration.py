"""What the Airflow DAGs call: one function per task, so the DAG files stay wiring only.

Everything here is plain Python over a :class:`~scrubber.store.Store` and JSON-able values (task
results travel through XCom), and importable without Airflow: Airflow is imported lazily, only by the
helpers that read a Variable or a Connection or raise a skip. The functions take an explicit ``store``
so tests and scripts can drive the same steps without a scheduler.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrubber.store import Store

log = logging.getLogger(__name__)

#: The Airflow Asset the reference refresh updates ("a new CMS release is in force").
REFERENCE_ASSET_URI = "scrubber://reference"
#: Airflow Variables read by the DAGs (both optional).
STORE_VARIABLE = "scrubber_store"
REFERENCE_SOURCES_VARIABLE = "scrubber_reference_sources"
AWS_CONN_ID = "aws_default"
DEFAULT_SHARDS = 4
#: Seconds to wait for one reference download before giving up (the task then retries).
HTTP_TIMEOUT = 300


# --- Airflow glue (lazy imports) -----------------------------------------------------------------------

def _skip(message: str) -> None:
    """Mark the current task skipped (downstream tasks skip too): there is nothing to do."""
    try:
        from airflow.sdk.exceptions import AirflowSkipException
    except ImportError:  # Airflow < 3.1
        from airflow.exceptions import AirflowSkipException
    raise AirflowSkipException(message)


def _variable(key: str) -> Any:
    """An Airflow Variable, or None when unset or when not running inside Airflow."""
    try:
        from airflow.sdk import Variable
    except ImportError:
        return None
    try:
        return Variable.get(key, default=None)
    except Exception as exc:  # no Airflow context (plain script): fall back to the environment
        log.debug("Variable %s not readable here: %s", key, exc)
        return None


def _aws_session_and_endpoint(conn_id: str = AWS_CONN_ID) -> tuple[Any, str | None]:
    """(boto3 session, endpoint_url) from the Airflow AWS connection when it exists, else (None, None).

    With no such connection the S3 client uses the standard AWS chain (env, profile, instance role)
    and the endpoint from SCRUBBER_S3_ENDPOINT_URL / AWS_ENDPOINT_URL.
    """
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk import BaseHook
    except ImportError:
        return None, None
    try:
        BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no Airflow context at all
        log.debug("no Airflow connection %s (%s); using the standard AWS chain", conn_id, exc)
        return None, None
    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    return hook.get_session(), hook.conn_config.endpoint_url


def dag_store(url: str | None = None) -> Store:
    """The store the DAGs work on: ``url``, else Variable ``scrubber_store``, else SCRUBBER_STORE.

    For ``s3://`` the Airflow connection ``aws_default`` supplies credentials and endpoint when it exists.
    """
    from scrubber.settings import Settings
    from scrubber.store import LocalStore

    url = url or _variable(STORE_VARIABLE) or Settings.from_env().store
    if not str(url).startswith("s3://"):
        return LocalStore(url)
    from scrubber.s3store import S3Store

    session, endpoint = _aws_session_and_endpoint()
    return S3Store.from_url(str(url), session=session, endpoint_url=endpoint)


def run_date_from_context(context: Mapping[str, Any]) -> date:
    """The business date of a nightly run.

    The ``run_date`` param wins (re-running a past night by hand). Otherwise the date the run was due
    (``dag_run.run_after``; then ``data_interval_end``), never ``logical_date``, which Airflow 3 leaves
    empty for manually triggered runs. Last resort: today (UTC).
    """
    params = context.get("params") or {}
    if params.get("run_date"):
        return date.fromisoformat(str(params["run_date"]))
    dag_run = context.get("dag_run")
    for candidate in (getattr(dag_run, "run_after", None), context.get("data_interval_end")):
        if isinstance(candidate, datetime):
            return candidate.date()
    return datetime.now(UTC).date()


def claimer_from_context(context: Mapping[str, Any]) -> str:
    """One claimer per dag run: a retry of any task of the run sees the files the run already holds."""
    dag_run = context.get("dag_run")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id")
    if not run_id:
        raise ValueError("no dag run id in the task context")
    from scrubber.intake_queue import safe_token

    return safe_token(f"{context['dag'].dag_id}__{run_id}" if context.get("dag") else str(run_id))


# --- nightly scrub ------------------------------------------------------------------------------------

def claim_incoming_files(context: Mapping[str, Any], *, store: Store | None = None) -> dict:
    """Task 1: claim the finished files in incoming/ for this dag run; skip the run when there are none."""
    from scrubber import intake_queue

    store = store or dag_store()
    run_date = run_date_from_context(context)
    claimer = claimer_from_context(context)
    claimed = intake_queue.claim_incoming(store, run_date, claimer=claimer)
    if not claimed:
        _skip(f"no claim files in {store.url}/incoming/ for {run_date}")
    log.info("claimed %d file(s) for %s: %s", len(claimed), claimer, claimed)
    return {"run_date": run_date.isoformat(), "claimer": claimer, "claimed": claimed}


def plan(claim: Mapping[str, Any], *, store: Store | None = None) -> dict:
    """Task 2: the run's identity (run id from run date + file contents), as JSON for XCom."""
    from scrubber.pipeline import plan_run

    store = store or dag_store()
    spec = plan_run(store, list(claim["claimed"]), date.fromisoformat(claim["run_date"]))
    return spec.to_json()


def shard_count(params: Mapping[str, Any] | None = None) -> int:
    """Shards for dynamic mapping: the ``shards`` param, else SCRUBBER_SHARDS, else 4."""
    value = (params or {}).get("shards") or os.environ.get("SCRUBBER_SHARDS") or DEFAULT_SHARDS
    return max(1, int(value))


def intake(spec: Mapping[str, Any], shards: int, *, store: Store | None = None) -> list[str]:
    """Task 3: read and validate the claimed files; canonical lines sharded by patient."""
    from scrubber.pipeline import RunSpec, stage_intake

    return stage_intake(store or dag_store(), RunSpec.from_json(dict(spec)), shards=shards)


def scrub_shard(spec: Mapping[str, Any], shard_key: str, *, store: Store | None = None) -> str:
    """Task 4 (mapped, one per shard): price and check one shard."""
    from scrubber.pipeline import RunSpec, stage_scrub_shard

    return stage_scrub_shard(store or dag_store(), RunSpec.from_json(dict(spec)), shard_key)


def publish(spec: Mapping[str, Any], shard_results: Iterable[str], *, store: Store | None = None) -> dict:
    """Task 5: merge the shards, write the report atomically (summary.json last), append history once."""
    from scrubber.pipeline import RunSpec, stage_publish

    summary = stage_publish(store or dag_store(), RunSpec.from_json(dict(spec)), list(shard_results))
    return json.loads(json.dumps(summary, default=str))  # XCom-safe


def quarantined_files(files: Iterable[Mapping[str, Any]], sources: Sequence[str]) -> dict[str, str]:
    """{source key: reason} for the input files intake rejected as a whole (unreadable, wrong format,
    required columns missing): those with an ``error`` and no accepted line. ``files`` is intake's
    per-file list (``name``, ``accepted``, ``error``, ...), matched to the sources by file name."""
    rejected = {str(f.get("name")): str(f["error"]) for f in files
                if isinstance(f, Mapping) and f.get("error") and not f.get("accepted")}
    return {key: rejected[key.rsplit("/", 1)[-1]] for key in sources if key.rsplit("/", 1)[-1] in rejected}


def _intake_files(store: Store, spec: Mapping[str, Any], summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Intake's per-file list: from the run's work/<run_id>/intake.json, else from the summary."""
    from scrubber.pipeline import WORK_PREFIX

    key = f"{WORK_PREFIX}/{spec['run_id']}/intake.json"
    if store.exists(key):
        return list(json.loads(store.read_text(key)).get("files") or [])
    return list(summary.get("files") or [])


def finish(spec: Mapping[str, Any], summary: Mapping[str, Any], *, store: Store | None = None) -> dict:
    """Task 6: inputs to archive/<run_date>/ (or quarantine/ when rejected whole); drop the run's work files.

    Runs only after publish succeeded, so a failed run keeps its files in processing/ for the retry.
    """
    from scrubber import intake_queue
    from scrubber.pipeline import WORK_PREFIX

    store = store or dag_store()
    sources = list(spec["sources"])
    rejected = quarantined_files(_intake_files(store, spec, summary), sources)
    moved = intake_queue.finish_claimed(store, sources, run_date=spec["run_date"], run_id=spec["run_id"],
                                        quarantined=rejected)
    store.delete_prefix(f"{WORK_PREFIX}/{spec['run_id']}/")
    return {"run_id": spec["run_id"], "moved": moved, "report": summary.get("report_location")}


# --- reference refresh --------------------------------------------------------------------------------

def reference_sources(params: Mapping[str, Any] | None = None) -> list[str]:
    """Where this quarter's CMS files are: the ``sources`` param, else Variable ``scrubber_reference_sources``
    (a JSON list), else SCRUBBER_REFERENCE_SOURCES (JSON list or comma-separated)."""
    value: Any = (params or {}).get("sources") or _variable(REFERENCE_SOURCES_VARIABLE) \
        or os.environ.get("SCRUBBER_REFERENCE_SOURCES")
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [s.strip() for s in text.split(",")]
    sources = [str(s) for s in (value or []) if str(s).strip()]
    if not sources:
        raise ValueError(f"no reference sources configured: set the DAG param 'sources', the Airflow Variable "
                         f"{REFERENCE_SOURCES_VARIABLE!r} (JSON list) or SCRUBBER_REFERENCE_SOURCES")
    return sources


def _download_name(url: str, taken: set[str]) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "download"
    stem, suffix, n = Path(name).stem, Path(name).suffix, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    taken.add(name)
    return name


def fetch_sources(sources: Sequence[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Make every source a local path: download http(s) URLs and s3:// objects into ``dest``.

    Local paths (or file:// URLs) are used where they are. A failed download raises with the URL.
    An s3:// source may be one object or a prefix ending in '/' (every object below it).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    paths: list[Path] = []
    for src in sources:
        scheme = urllib.parse.urlparse(src).scheme.lower()
        if scheme in ("http", "https"):
            target = dest / _download_name(src, taken)
            try:
                with urllib.request.urlopen(src, timeout=HTTP_TIMEOUT) as resp, target.open("wb") as fh:
                    shutil.copyfileobj(resp, fh, length=1 << 20)
            except OSError as exc:
                raise OSError(f"could not download reference file {src}: {exc}") from exc
            paths.append(target)
        elif scheme == "s3":
            paths.extend(_fetch_s3(src, dest, taken))
        elif scheme == "file":
            paths.append(Path(urllib.request.url2pathname(urllib.parse.urlparse(src).path)))
        else:
            path = Path(src).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"reference source {src} does not exist")
            paths.append(path)
    return paths


def _fetch_s3(url: str, dest: Path, taken: set[str]) -> list[Path]:
    """One object -> one file; a prefix ('.../') -> one folder holding its objects (load_paths walks folders)."""
    from scrubber.s3store import S3Store, parse_s3_url

    bucket, key = parse_s3_url(url)
    session, endpoint = _aws_session_and_endpoint()
    bucket_store = S3Store.from_url(f"s3://{bucket}", session=session, endpoint_url=endpoint)
    if not url.endswith("/"):
        key = key.rstrip("/")
        return [bucket_store.download_file(key, dest / _download_name(url, taken))]
    keys = bucket_store.list(key)
    if not keys:
        raise FileNotFoundError(f"reference source {url} lists no objects")
    folder = dest / _download_name(url.rstrip("/"), taken)
    for k in keys:
        bucket_store.download_file(k, folder / k[len(key):])
    return [folder]


def refresh_reference(sources: Sequence[str], *, store: Store | None = None, release: str | None = None,
                      partial: bool = False) -> dict:
    """Download the configured CMS files, then parse, validate and publish them (scrubber.reference.loader).

    ``partial`` accepts a deliberate subset of a release (a sample; skips whole-file row-count checks).
    Returns the load report as JSON; identical files already loaded publish nothing (``published`` empty).
    """
    from scrubber.reference.loader import load_paths

    store = store or dag_store()
    with tempfile.TemporaryDirectory(prefix="scrubber-reference-") as tmp:
        paths = fetch_sources(sources, tmp)
        report = load_paths(store, paths, release=release, partial=partial)
    result = {"store": store.url, "sources": list(sources), "published": report.published,
              "unchanged": report.unchanged, "skipped": report.skipped, "warnings": report.warnings,
              "releases": report.releases}
    return json.loads(json.dumps(result, default=str))


def announce_release(report: Mapping[str, Any], outlet_events: Any = None, asset: Any = None) -> list[str]:
    """The task with the reference Asset as outlet: emits the event only when a release was published.

    When nothing changed the task is skipped, and a skipped task emits no Asset event, so consumers
    are told only about releases actually new in force.
    """
    releases = sorted({str(p.get("release")) for p in report.get("published", [])})
    if not releases:
        _skip("no new reference release (files identical to what is loaded)")
    if outlet_events is not None and asset is not None:
        outlet_events[asset].extra = {"releases": releases, "store": str(report.get("store"))}
    return releases
