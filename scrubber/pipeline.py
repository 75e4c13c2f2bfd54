"""One scrub run end to end, shared by the command line and the Airflow DAG.

Stages (each idempotent, so a retried task after a crash leaves no partial report and no duplicate
history; the run id is derived from the run date and the input contents, never from Airflow's
logical date):

1. ``plan_run``          run id + where the report goes
2. ``stage_intake``      read and validate claim files; quarantine bad rows; shard lines by patient
3. ``stage_scrub_shard`` price and check one shard (a patient's lines are always in one shard)
4. ``stage_publish``     merge shards, write the report (summary.json last), append history

``run_scrub`` runs all stages in one process. A big input is never in memory whole: intake validates
it in chunks of rows, the chunks are split by patient into shards spilled to local Arrow files
(scrubber.shards), and each shard's results are streamed out (lines.parquet, history, summary totals)
before the next is read; only the flags of the run are kept to the end (the report sorts them).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scrubber.report.summary import LineTotals
from scrubber.runtime import batch_process, release_freed_memory
from scrubber.settings import Settings
from scrubber.shards import (
    SHARD_LINES,
    ParquetSink,
    ShardSpill,
    SideJob,
    concat_parts,
    estimate_rows,
    parquet_table,
    shard_count,
    stringify,
    take_rows,
)
from scrubber.store import LocalStore, Store

WORK_PREFIX = "work"
#: lines.parquet columns with min/max statistics (what readers filter a night's lines on)
LINES_STATISTICS = ("line_uid", "claim_id", "line_number", "patient_id", "service_date", "hcpcs", "rendering_npi",
                    "payer")
#: every code's history is read this far back (global periods reach 90 days; same-day edits need the day)
HISTORY_ALL_CODES_DAYS = 120

_T = TypeVar("_T")
Source = str | Path | tuple[str, bytes]
Progress = Callable[[str], None]


@dataclass
class RunSpec:
    """Identity and destinations of one run."""

    run_id: str
    run_date: date
    sources: list[str]
    report_prefix: str

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "run_date": self.run_date.isoformat(), "sources": self.sources,
                "report_prefix": self.report_prefix}

    @classmethod
    def from_json(cls, d: dict) -> RunSpec:
        return cls(d["run_id"], date.fromisoformat(d["run_date"]), list(d["sources"]), d["report_prefix"])


@dataclass
class RunResult:
    """What a run produced, for the command line and tests. A run of one shard keeps its priced lines;
    a bigger one reads them back from the report's lines.parquet when asked."""

    spec: RunSpec
    summary: dict
    #: the flags in report order as the report's writers had them: the rule texts may be categoricals
    report_flags: pd.DataFrame
    quarantine: pd.DataFrame
    report_location: str
    files: list[str] = field(default_factory=list)
    held_lines: pd.DataFrame | None = None
    report_store: Store | None = None

    @property
    def flags(self) -> pd.DataFrame:
        """The flags in report order, text as text (spelled out on first use)."""
        self.report_flags = stringify(self.report_flags)
        return self.report_flags

    @property
    def lines(self) -> pd.DataFrame:
        """The priced lines with the types lines.parquet gives (text, not categoricals)."""
        if self.held_lines is None and self.report_store is not None:
            key = next(f for f in self.files if f.rsplit("/", 1)[-1] == "lines.parquet")
            self.held_lines = self.report_store.read_parquet(key)
        elif self.held_lines is not None:
            self.held_lines = stringify(self.held_lines)  # done on first use: a run's writers do not need it
        return self.held_lines if self.held_lines is not None else pd.DataFrame()


# --- identity ---------------------------------------------------------------------------------------

def make_run_id(run_date: date, named_contents: Sequence[tuple[str, bytes]]) -> str:
    """Deterministic: the same files on the same run date give the same run id (so reruns replace)."""
    h = hashlib.sha256(run_date.isoformat().encode())
    for name, digest in sorted((Path(n).name, hashlib.sha256(b).hexdigest()) for n, b in named_contents):
        h.update(name.encode() + b"\0" + digest.encode())
    return f"{run_date:%Y%m%d}-{h.hexdigest()[:12]}"


def report_prefix_for(run_date: date, run_id: str) -> str:
    return f"reports/{run_date.isoformat()}/{run_id}/"


def _read_sources(store: Store, sources: Sequence[Source]) -> list[tuple[str, bytes]]:
    out = []
    for s in sources:
        if isinstance(s, tuple):
            out.append(s)
        elif isinstance(s, Path) or Path(str(s)).exists():
            out.append((Path(s).name, Path(s).read_bytes()))
        else:
            out.append((str(s).rsplit("/", 1)[-1], store.read_bytes(str(s))))
    return out


def plan_run(store: Store, sources: Sequence[Source], run_date: date, run_id: str | None = None, *,
             named: Sequence[tuple[str, bytes]] | None = None) -> RunSpec:
    """Run id and report location; ``named`` passes contents already read, so nothing is read twice."""
    named = _read_sources(store, sources) if named is None else named
    rid = run_id or make_run_id(run_date, named)
    keys = [s[0] if isinstance(s, tuple) else str(s) for s in sources]
    return RunSpec(run_id=rid, run_date=run_date, sources=keys, report_prefix=report_prefix_for(run_date, rid))


# --- the pure core -----------------------------------------------------------------------------------

@dataclass
class Engine:
    """Reference data and rules for a run, loaded once."""

    store: Store
    settings: Settings

    def __post_init__(self) -> None:
        from scrubber.reference.catalog import ReferenceSet
        from scrubber.rules import RuleBook

        self.ref = ReferenceSet(self.store)
        self.rules = RuleBook.load(self.settings.rules_dir)


def scrub_frame(engine: Engine, lines: pd.DataFrame, *, run_id: str, history: pd.DataFrame | None = None,
                timings: dict | None = None, pool: ThreadPoolExecutor | None = None,
                on_priced: Callable[[pd.DataFrame], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Price and check canonical lines; returns (priced lines, flags with amount at risk).

    Unless ``history`` is given, the checks start on a side thread (``pool``: one worker; a private
    one when None) while the lines are priced (:class:`CheckPlan`). ``on_priced`` gets the priced lines
    before the remaining checks run (a run starts writing them out).
    """
    timings = timings if timings is not None else {}
    own_pool = history is None and pool is None
    if own_pool:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="check-inputs")
    try:
        plan = None
        if history is None:  # given history: nothing to load beside the pricing, the checks run after it
            lines = with_ncci_releases(engine, lines)
            plan = CheckPlan(engine, lines, run_id=run_id, pool=pool)
        priced = price_frame(engine, lines, timings=timings)
        del lines
        if on_priced is not None:
            on_priced(priced)
        return priced, check_frame(engine, priced, run_id=run_id, history=history, timings=timings, plan=plan)
    finally:
        if own_pool:
            pool.shutdown(wait=True, cancel_futures=True)


#: the line annotations naming the NCCI releases in force on the date of service
NCCI_RELEASE_COLUMNS: tuple[str, str] = ("ptp_release", "mue_release")


def with_ncci_releases(engine: Engine, lines: pd.DataFrame) -> pd.DataFrame:
    """``lines`` plus ``ptp_release`` and ``mue_release``: the PTP and MUE release in force on each line's
    date of service (a lookup per date, no pricing), all the families of
    :func:`scrubber.checks.engine.families_before_pricing` read of the reference annotations."""
    dates = lines["service_date"]
    return lines.assign(ptp_release=engine.ref.assign(dates, "ptp"), mue_release=engine.ref.assign(dates, "mue"))


def price_frame(engine: Engine, lines: pd.DataFrame, *, timings: dict | None = None) -> pd.DataFrame:
    """Canonical lines with their reference annotations, expected amounts and NCCI releases."""
    from scrubber.pricing import annotate_and_price

    t0 = time.perf_counter()
    priced = annotate_and_price(lines, engine.ref, engine.rules.pos, engine.settings)
    if not set(NCCI_RELEASE_COLUMNS) <= set(priced.columns):  # kept when the lines came with them
        priced = with_ncci_releases(engine, priced)
    if timings is not None:
        timings["pricing"] = timings.get("pricing", 0.0) + time.perf_counter() - t0
    return priced


def fee_schedules(engine: Engine, lines: pd.DataFrame) -> pd.DataFrame:
    """The PPRRVU rows of the RVU releases in force on the lines' dates of service, the releases pricing
    gives the lines (decided per distinct date); the reference set caches them, so the checks of priced
    lines get the tables pricing read."""
    dates = pd.Series(lines["service_date"].unique())
    return engine.ref.tables("pprrvu", engine.ref.assign(dates, "rvu").dropna().unique())


@dataclass
class CheckInputs:
    """What the checks read besides the priced lines: the patients' history and the NCCI tables of the
    lines' dates (PTP cut down to the codes billed)."""

    history: pd.DataFrame
    ptp: pd.DataFrame
    mue: pd.DataFrame
    seconds: float = 0.0


def load_check_inputs(engine: Engine, lines: pd.DataFrame, *, run_id: str,
                      history: pd.DataFrame | None = None) -> CheckInputs:
    """:class:`CheckInputs` for ``lines``. Only patient, date of service and code are read, so canonical
    lines will do: a run loads these on a side thread while it prices the same lines (the reads are
    Parquet decoding, which leaves Python's lock to the pricing)."""
    t0 = time.perf_counter()
    if history is None:
        history = _read_history_for(engine, lines, run_id) if len(lines) else pd.DataFrame()
    codes = set(lines["hcpcs"].unique())
    if len(history):
        codes |= set(history["hcpcs"].unique())
    dates = pd.Series(lines["service_date"].unique())
    ptp = engine.ref.tables("ptp", engine.ref.assign(dates, "ptp").unique(),
                            codes_in=(("column_1", "column_2"), codes))
    mue = engine.ref.tables("mue", engine.ref.assign(dates, "mue").unique())
    return CheckInputs(history=history, ptp=ptp, mue=mue, seconds=time.perf_counter() - t0)


class CheckPlan:
    """The checks of one batch of lines, started before its pricing is done.

    On ``pool`` (one side thread) the check inputs are loaded, then the families that read nothing
    pricing adds (:func:`~scrubber.checks.engine.families_before_pricing`) are checked on the canonical
    lines (with their NCCI releases, :func:`with_ncci_releases`) while the calling thread prices the same
    lines. Once priced, :func:`check_frame` checks the other families and takes each early family not
    started yet itself, so neither thread waits for the other: which thread checks a family changes
    nothing in its hits, since the priced lines are the same lines plus columns those families never read.
    """

    def __init__(self, engine: Engine, lines: pd.DataFrame, *, run_id: str, pool: ThreadPoolExecutor) -> None:
        from scrubber.checks.engine import families_before_pricing

        self.engine = engine
        self.found: list[pd.DataFrame] = []          # hits of the early families, from either thread
        self.seconds: dict[str, float] = {}
        self.context: Any = None                      # the side thread's CheckContext (canonical lines)
        #: the families this plan checks, on either thread (the rest only on the priced lines)
        self.families: tuple[str, ...] = families_before_pricing() if len(lines) else ()
        self._waiting = deque(self.families)
        self._lock = threading.Lock()
        self.inputs = pool.submit(load_check_inputs, engine, lines, run_id=run_id)
        self._early = pool.submit(self._check_early, lines)

    def _check_early(self, lines: pd.DataFrame) -> None:
        from scrubber.checks.context import CheckContext

        if not self._waiting:
            return
        inputs = self.inputs.result()
        self.context = CheckContext(lines=lines, history=inputs.history, pprrvu=fee_schedules(self.engine, lines),
                                    ptp=inputs.ptp, mue=inputs.mue, rules=self.engine.rules,
                                    settings=self.engine.settings)
        self.check_waiting(self.context)

    def check_waiting(self, ctx: Any) -> None:
        """Check early families nobody has taken yet, one at a time, on ``ctx``."""
        from scrubber.checks.engine import check_families

        while True:
            with self._lock:
                if not self._waiting:
                    return
                name = self._waiting.popleft()
            self.found.extend(check_families(ctx, [name], timings=self.seconds))

    def finish(self) -> None:
        """Wait for the family the side thread is checking (re-raising what it raised)."""
        self._early.result()


def check_frame(engine: Engine, priced: pd.DataFrame, *, run_id: str, history: pd.DataFrame | None = None,
                timings: dict | None = None, plan: CheckPlan | None = None) -> pd.DataFrame:
    """Flags (with amount at risk) for priced lines; reads ``priced``, never changes it (the run writes
    it out on another thread meanwhile). ``plan``: the :class:`CheckPlan` started for these lines before
    they were priced (its inputs and early families are used), else inputs are loaded and every family
    is checked here."""
    from scrubber.checks.context import CheckContext
    from scrubber.checks.engine import FAMILY_MODULES, build_flags, check_families, share_derived
    from scrubber.pricing import amount_at_risk

    timings = timings if timings is not None else {}
    inputs = plan.inputs.result() if plan is not None else load_check_inputs(engine, priced, run_id=run_id,
                                                                              history=history)
    t0 = time.perf_counter()
    pprrvu = fee_schedules(engine, priced)  # read by pricing already: cached
    timings["reference_and_history"] = (timings.get("reference_and_history", 0.0) + inputs.seconds
                                        + time.perf_counter() - t0)

    ctx = CheckContext(lines=priced, history=inputs.history, pprrvu=pprrvu, ptp=inputs.ptp, mue=inputs.mue,
                       rules=engine.rules, settings=engine.settings)
    check_timings: dict = {}
    early = plan.families if plan is not None else ()
    if plan is not None and plan.context is not None:  # factorisations etc. the early families made already
        share_derived(plan.context, ctx)
    parts = check_families(ctx, [name for name in FAMILY_MODULES if name not in early], timings=check_timings)
    if plan is not None:
        plan.check_waiting(ctx)
        plan.finish()
        parts += plan.found
        for k, v in plan.seconds.items():
            check_timings[k] = check_timings.get(k, 0.0) + v
    t0 = time.perf_counter()
    flags = build_flags(ctx, parts, run_id=run_id)
    check_timings["flags"] = time.perf_counter() - t0
    for k, v in check_timings.items():
        timings[f"check.{k}"] = timings.get(f"check.{k}", 0.0) + v
    t0 = time.perf_counter()
    flags["amount_at_risk"] = amount_at_risk(flags, priced).to_numpy() if len(flags) else []
    timings["amount_at_risk"] = timings.get("amount_at_risk", 0.0) + time.perf_counter() - t0
    return flags


def _read_history_for(engine: Engine, lines: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """History the checks can use: all codes over the recent window, and further back (up to a lifetime)
    only the codes a frequency rule reads, of the patients with a line a frequency rule judges, so long
    windows stay cheap."""
    from scrubber.checks.frequency import code_in, frequency_codes, lookback_start, target_codes
    from scrubber.history import read_history

    patients = lines["patient_id"].unique()
    first = lines["service_date"].min().date()
    last = lines["service_date"].max().date()
    recent_start = first - timedelta(days=HISTORY_ALL_CODES_DAYS)
    recent = read_history(engine.store, patient_ids=patients, start=recent_start, end=last, exclude_run_id=run_id)
    rules = engine.rules.frequency
    older_start = lookback_start(rules, first)
    if older_start >= recent_start:
        return recent
    code_of, code_values = pd.factorize(lines["hcpcs"])
    # only frequency reads further back, and only for patients with a line some limit judges
    patients = lines["patient_id"][code_in(code_of, code_values, target_codes(rules))].unique()
    if not len(patients):
        return recent
    older = read_history(engine.store, patient_ids=patients, start=older_start,
                         end=recent_start - timedelta(days=1), exclude_run_id=run_id, hcpcs=frequency_codes(rules))
    if not len(older):
        return recent
    return pd.concat([older, recent], ignore_index=True) if len(recent) else older


# --- stages (used by the DAG; run_scrub chains them in-process) ---------------------------------------

def _work(spec: RunSpec, name: str) -> str:
    return f"{WORK_PREFIX}/{spec.run_id}/{name}"


def _tuned(stage: Callable[..., _T]) -> Callable[..., _T]:
    """Run a stage with the process tuned for a batch run (:mod:`scrubber.runtime`), as its ``settings``
    keyword (default: from the environment) says."""
    @functools.wraps(stage)
    def run(*args: Any, settings: Settings | None = None, **kwargs: Any) -> _T:
        settings = settings or Settings.from_env()
        with batch_process(settings.tune_process):
            return stage(*args, settings=settings, **kwargs)
    return run


@_tuned
def stage_intake(store: Store, spec: RunSpec, *, shards: int = 1, settings: Settings | None = None) -> list[str]:
    """Read, validate and shard the run's inputs (chunk by chunk). Rewrites the same keys on retry."""
    from scrubber.claims.intake import IntakeStream

    t0 = time.perf_counter()
    stream = IntakeStream(_read_sources(store, spec.sources), dictionary_text=True)  # the spill decodes
    keys = []
    with ShardSpill(max(shards, 1)) as spill:
        for chunk in stream:
            spill.add(chunk)
        store.write_parquet(_work(spec, "quarantine.parquet"), stringify(stream.quarantine))
        for k, table in enumerate(spill.tables()):  # shards cross process boundaries: Parquet in the store
            keys.append(_work(spec, f"lines/shard-{k:04d}.parquet"))
            store.write_parquet(keys[-1], table)
        if not keys:  # every row quarantined: one empty shard, so the report still gets its columns
            from scrubber.claims.intake import empty_lines

            keys.append(_work(spec, "lines/shard-0000.parquet"))
            store.write_parquet(keys[0], empty_lines())
    store.write_text(_work(spec, "intake.json"), json.dumps({
        "spec": spec.to_json(), "input_rows": stream.input_rows, "files": stream.files, "shards": keys,
        "seconds": time.perf_counter() - t0}, default=str))
    return keys


@_tuned
def stage_scrub_shard(store: Store, spec: RunSpec, shard_key: str, *, settings: Settings | None = None) -> str:
    """Price and check one shard; results under work/<run_id>/results/. Idempotent."""
    engine = Engine(store, settings or Settings.from_env())
    lines = store.read_parquet(shard_key)
    timings: dict = {}
    priced, flags = scrub_frame(engine, lines, run_id=spec.run_id, timings=timings)
    name = shard_key.rsplit("/", 1)[-1].removesuffix(".parquet")
    prefix = _work(spec, f"results/{name}")
    store.write_parquet(f"{prefix}.lines.parquet", stringify(priced))
    store.write_parquet(f"{prefix}.flags.parquet", stringify(flags))
    store.write_text(f"{prefix}.timings.json", json.dumps(timings))
    return prefix


@_tuned
def stage_publish(store: Store, spec: RunSpec, shard_results: Sequence[str], *, out_store: Store | None = None,
                  out_prefix: str | None = None, timings: dict | None = None, settings: Settings | None = None) -> dict:
    """Merge shard results (one at a time), write the report (summary.json last) and the run's history
    (replacing an earlier attempt's)."""
    intake_doc = json.loads(store.read_text(_work(spec, "intake.json")))
    quarantine = store.read_parquet(_work(spec, "quarantine.parquet"))
    merged_timings: dict = dict(timings or {})
    merged_timings.setdefault("intake", intake_doc.get("seconds", 0.0))
    with RunOutput(store, spec) as output:
        for p in shard_results:
            output.add(store.read_parquet(f"{p}.lines.parquet"), store.read_parquet(f"{p}.flags.parquet"))
            for k, v in json.loads(store.read_text(f"{p}.timings.json")).items():
                merged_timings[k] = merged_timings.get(k, 0.0) + v
        return _publish(store, spec, output, quarantine=quarantine, input_rows=intake_doc["input_rows"],
                        files=intake_doc["files"], timings=merged_timings, out_store=out_store,
                        out_prefix=out_prefix, settings=settings or Settings.from_env())


class RunOutput:
    """Where a run's scrubbed shards go: lines.parquet of the report, the run's history, the line totals
    of the summary, and the flags (kept: the report sorts them all).

    A shard's priced lines are written out on a side thread (:meth:`add_lines`) while the main thread
    checks them: Parquet encoding releases the GIL, so lines.parquet and history cost the run little
    wall time on a second core. History is encoded on a thread of its own after lines.parquet, so the
    report waits only for the lines (:meth:`lines`) while the last shard's history is still being
    encoded. Memory holds one shard at a time: a shard's lines wait for the previous one's history.
    ``hold_lines`` (a run of one shard) also keeps the priced lines for the caller (:attr:`held`).
    """

    def __init__(self, store: Store, spec: RunSpec, *, hold_lines: bool = False) -> None:
        from scrubber.history import HistoryWriter

        self._tmp = tempfile.TemporaryDirectory(prefix="run-output-")
        self.lines_sink = ParquetSink(Path(self._tmp.name) / "lines.parquet", statistics=LINES_STATISTICS)
        # one thread: this writer already runs beside the checks, more would only take their core
        self.history = HistoryWriter(store, spec.run_id, self._tmp.name, threads=1)
        self.totals = LineTotals()
        self.flag_parts: list[pd.DataFrame] = []
        self.hold_lines = hold_lines
        self.held: list[pd.DataFrame] = []
        self.seconds = 0.0  # side-thread time spent writing lines.parquet (not on the run's critical path)
        self._side = SideJob("run-output")
        self._history_side = SideJob("history-output")

    def add(self, priced: pd.DataFrame, flags: pd.DataFrame) -> None:
        self.add_lines(priced)
        self.add_flags(flags)

    def add_lines(self, priced: pd.DataFrame) -> None:
        """Start writing a shard's priced lines (lines.parquet, history, totals) once the previous shard's
        are written; returns as soon as they are handed over."""
        if self.hold_lines:
            self.held.append(priced)
        # a shallow copy: a column the caller adds later does not reach the writer half-way
        self._side.submit(self._write_lines, priced.copy(deep=False))

    def _write_lines(self, priced: pd.DataFrame) -> None:
        self._history_side.wait()  # the previous shard's history: one shard in memory at a time
        t0 = time.perf_counter()
        self.totals.add(LineTotals.of(priced))
        table = parquet_table(priced)  # converted once, for lines.parquet and history
        self.lines_sink.write(table)
        self.seconds += time.perf_counter() - t0
        self._history_side.submit(self.history.add, table)

    def add_flags(self, flags: pd.DataFrame) -> None:
        # the rule's texts (message, fix, ...) stay categorical until the report order is taken
        self.flag_parts.append(stringify(flags, keep_text_categoricals=True))

    def wait(self) -> None:
        """Until the lines given so far are written to lines.parquet (raises what the writer raised)."""
        self._side.wait()

    def flags(self) -> pd.DataFrame:
        """All flags as one frame (the parts are let go as they are joined: a 10M-line night has ~1.6M)."""
        parts, self.flag_parts = [f for f in self.flag_parts if len(f)] or self.flag_parts[:1], []
        flags = concat_parts(parts)
        self.flag_parts = [flags]
        return flags

    def lines(self) -> Path:
        """The finished lines.parquet file."""
        self.wait()
        return self.lines_sink.close() or Path(self._tmp.name) / "lines.parquet"

    def wait_history(self) -> None:
        """Until the lines given so far are encoded in the run's history files (raises what that raised)."""
        self.wait()
        self._history_side.wait()

    def close_history(self) -> None:
        """Publish the run's history files (the lines are in them once written)."""
        self.wait_history()
        self.history.close()

    def cleanup(self, *, raise_errors: bool = True) -> None:
        """Stop the side threads and drop the temporary files (see :meth:`SideJob.close`)."""
        try:
            try:
                self._side.close(raise_errors=raise_errors)
            finally:
                self._history_side.close(raise_errors=raise_errors)
        finally:
            self.lines_sink.close()
            self.history.abort()
            self._tmp.cleanup()

    def __enter__(self) -> RunOutput:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.cleanup(raise_errors=exc_type is None)


def _publish(store: Store, spec: RunSpec, output: RunOutput, *, quarantine: pd.DataFrame, input_rows: int,
             files: list, timings: dict, out_store: Store | None, out_prefix: str | None, settings: Settings) -> dict:
    from scrubber.report.summary import build_summary
    from scrubber.report.writers import ReportWriter

    t0 = time.perf_counter()
    flags = output.flags()
    output.flag_parts = []
    if len(flags):
        # report order (most money, then severity), ties by claim, line and rule whatever the shard order;
        # one permutation, taken once (the rule texts are categoricals: their codes are taken), so the
        # report's writers take the frame as it is
        flags = take_rows(flags, _report_order(flags))
    output.flag_parts = [flags]
    target, prefix = (out_store, out_prefix or "") if out_store is not None else (store, spec.report_prefix)
    # the flag files start now, while the last shard's lines may still be being written on the side thread
    with ReportWriter(target, prefix, flags=flags, quarantine=quarantine,
                      xlsx_info_rows=settings.xlsx_info_rows) as report:
        lines = output.lines()
        timings["lines_output"] = output.seconds
        summary = build_summary(run_id=spec.run_id, run_date=spec.run_date, lines=output.totals, flags=flags,
                                quarantine=quarantine, input_rows=input_rows, files=files, timings=timings)
        summary["report_location"] = _location(target, prefix)
        written = report.finish(lines=lines, summary=summary, take_lines=True,
                                before_summary=output.wait_history)
    if len(quarantine):
        qbuf = io.StringIO()
        quarantine.to_csv(qbuf, index=False)
        store.write_text(f"quarantine/{spec.run_date.isoformat()}/{spec.run_id}/quarantine.csv", qbuf.getvalue())
    output.close_history()  # already encoded shard by shard: publishing is a copy per month
    timings["publish"] = time.perf_counter() - t0
    summary["files_written"] = written
    return summary


def _report_order(flags: pd.DataFrame) -> np.ndarray:
    """Row positions in report order (:func:`scrubber.report.xlsx.flag_order`), ties broken by claim,
    line and rule: the same order whatever order the shards came in."""
    from scrubber.report.xlsx import flag_order

    def ranks(column: str) -> np.ndarray:  # sorted codes, missing last (as sort_values puts them)
        values = flags[column]
        if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
            # claim ids: Arrow ranks 1.5M strings in half the time of a sorted factorize (code point order
            # either way)
            text = pa.array(values.array)
            return pc.rank(text, sort_keys="ascending", tiebreaker="dense").to_numpy()   # nulls rank last
        codes, uniques = pd.factorize(values, sort=True)
        return np.where(codes < 0, len(uniques), codes)

    by_line = np.lexsort((ranks("rule_id"), ranks("line_number"), ranks("claim_id")))
    keys = flags[[c for c in ("severity", "amount_at_risk") if c in flags.columns]].take(by_line)
    return by_line[flag_order(keys.reset_index(drop=True))]


def _location(store: Store, prefix: str) -> str:
    base = store.url.rstrip("/")
    return f"{base}/{prefix}".rstrip("/")


@_tuned
def run_scrub(store: Store, sources: Sequence[Source], *, run_date: date, run_id: str | None = None,
              out_dir: str | Path | None = None, settings: Settings | None = None,
              progress: Progress | None = None, shard_lines: int = SHARD_LINES) -> RunResult:
    """The whole run in one process (command line, demo, tests).

    Up to ``shard_lines`` lines are scrubbed in memory as one shard; more are validated in chunks,
    spilled by patient into shards on local disk and scrubbed shard by shard. The process is tuned for
    the run (:mod:`scrubber.runtime`) unless ``settings.tune_process`` is off.
    """
    from scrubber.claims.intake import CHUNK_ROWS, IntakeStream, empty_lines

    settings = settings or Settings.from_env()
    say = progress or (lambda _msg: None)
    timings: dict = {}
    t0 = time.perf_counter()
    say("reading claim files")
    named = _read_sources(store, sources)
    spec = plan_run(store, sources, run_date, run_id, named=named)
    n_shards = shard_count(estimate_rows(named), shard_lines)
    # lines spilled into shards are only moved until read back: their text columns stay codes till then
    stream = IntakeStream(named, chunk_rows=min(CHUNK_ROWS, shard_lines), dictionary_text=n_shards > 1)
    with RunOutput(store, spec, hold_lines=n_shards == 1) as output:
        if n_shards == 1:
            chunks = list(stream)
            shards: Iterable[pd.DataFrame] = [pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
                                              ] if chunks else []
            spill = None
        else:
            spill = ShardSpill(n_shards)
            for chunk in stream:
                spill.add(chunk)
            shards = spill.shards()
            release_freed_memory()  # intake's buffers are done with; the shards allocate their own
        timings["intake"] = time.perf_counter() - t0
        say(f"loading reference data and rules ({stream.lines_out:,} lines)")
        engine = Engine(store, settings)
        prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="check-inputs")
        try:
            for k, lines in enumerate(shards):
                say(f"scrubbing shard {k + 1}/{n_shards}" if n_shards > 1 else "scrubbing")
                # history and NCCI tables are read, and the families that need no pricing are checked,
                # on a side thread while the lines are priced; the priced lines are written out on
                # another while the other families are checked
                _priced, flags = scrub_frame(engine, lines, run_id=spec.run_id, timings=timings, pool=prefetch,
                                             on_priced=output.add_lines)
                del lines, _priced
                output.add_flags(flags)
                del flags
            if not output.flag_parts:  # every row quarantined: the report still has its columns
                output.add(*scrub_frame(engine, empty_lines(), run_id=spec.run_id, timings=timings))
        finally:
            prefetch.shutdown(wait=True, cancel_futures=True)
            if spill is not None:
                spill.cleanup()
        say("writing the report")
        if n_shards > 1:  # what the shards kept for reuse would add to the report's peak
            release_freed_memory()
        out_store = LocalStore(out_dir) if out_dir is not None else None
        summary = _publish(store, spec, output, quarantine=stream.quarantine, input_rows=stream.input_rows,
                           files=stream.files, timings=timings, out_store=out_store, out_prefix="",
                           settings=settings)
        held = pd.concat(output.held, ignore_index=True) if len(output.held) > 1 else (
            output.held[0] if output.held else None)
        flags = output.flag_parts[0]
    timings["total"] = time.perf_counter() - t0
    return RunResult(spec=spec, summary=summary, report_flags=flags, quarantine=stream.quarantine,
                     report_location=summary["report_location"], files=summary.get("files_written", []),
                     held_lines=held, report_store=out_store if out_store is not None else store)
