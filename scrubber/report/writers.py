"""Write the exception report of one run under a store prefix (architecture 3.3).

Files: flags.parquet, flags.csv, lines.parquet, quarantine.csv, exceptions.xlsx, report.html and,
written LAST, summary.json: a reader that finds summary.json knows every other file is complete
(each file is itself published atomically by the store).

Parquet files keep the values as they are (typed data for machines). CSV and XLSX are opened by
people in spreadsheets, so text that came from claim files and would be evaluated as a formula
(leading = + - @, tab or CR; e.g. a patient id ``=HYPERLINK("http://x","y")``) gets a leading single
quote; numbers, numeric columns and plain numeric text stay as they are.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from scrubber.report.html import build_html
from scrubber.report.xlsx import build_exceptions_xlsx, formula_mask, neutralise_arrow, sort_flags
from scrubber.schemas import FLAG_COLUMNS, is_arrow_text
from scrubber.shards import ParquetSink
from scrubber.store import Store

ALL_FORMATS = ("parquet", "csv", "xlsx", "html")
#: submission order for the writer threads: the slow files start first
_COST_ORDER = {"exceptions.xlsx": 0, "lines.parquet": 1, "flags.csv": 2, "flags.parquet": 3}


_CSV_OPTIONS = pacsv.WriteOptions(quoting_style="needed")


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(_csv_table(frame), buf, _CSV_OPTIONS)
    return buf.getvalue()


def _csv_table(frame: pd.DataFrame) -> pa.Table:
    """The table Arrow's CSV writer gets (an order of magnitude faster than pandas for 100k+ rows).

    Text is neutralised column-wise in Arrow (only formula-looking values reach Python), dates are
    written as YYYY-MM-DD, text is always quoted, missing values are empty. Text categoricals (a
    flag's message and fix) stay dictionaries: their few texts are neutralised, and the writer spells
    them out batch by batch.
    """
    table = pa.Table.from_pandas(_parquet_safe(frame), preserve_index=False)
    columns = []
    for field, col in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if pa.types.is_dictionary(kind) and is_arrow_text(kind.value_type):
            if any(formula_mask(c.dictionary).any() for c in col.chunks):
                col = pa.chunked_array([pa.DictionaryArray.from_arrays(c.indices, neutralise_arrow(c.dictionary))
                                        for c in col.chunks])
            columns.append(col)
            continue
        if pa.types.is_dictionary(kind):
            col, kind = col.cast(kind.value_type), kind.value_type
        if is_arrow_text(kind):
            if any(formula_mask(c).any() for c in col.chunks):  # most columns have nothing to defuse
                col = pa.chunked_array([neutralise_arrow(c) for c in col.chunks], type=pa.string())
        elif pa.types.is_timestamp(kind):
            dates = col.cast(pa.date32())     # date-only values as YYYY-MM-DD; real timestamps stay
            if pc.all(pc.equal(dates.cast(kind), col)).as_py() is not False:
                col = dates
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def _ordered_flag_columns(flags: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in FLAG_COLUMNS if c in flags.columns]
    rest = [c for c in flags.columns if c not in first]
    return flags[first + rest]


def _json_default(value: Any) -> Any:
    if isinstance(value, date | datetime | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix types (e.g. ints and strings) become text, so Arrow can write them."""
    out = frame
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_object_dtype(col.dtype):
            sample = col.iloc[:4096].dropna()      # the first 1000 values that are there decide
            if len(sample) < 1000 and len(col) > 4096:
                sample = col.dropna()
            kinds = {type(v) for v in sample.head(1000)}
            if len(kinds) > 1:
                if out is frame:
                    out = frame.copy()
                out[name] = col.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return out


def write_report(store: Store, prefix: str, *, flags: pd.DataFrame, lines: pd.DataFrame | Path,
                 quarantine: pd.DataFrame, summary: dict,
                 formats: Sequence[str] = ALL_FORMATS, xlsx_info_rows: int | None = None) -> list[str]:
    """Write the report files under ``prefix``; returns their keys, summary.json last.

    ``summary`` is a dict from ``scrubber.report.summary.build_summary``; its ``files`` entry is set
    to the files written here. ``lines`` may be a Parquet file already written (a big run streams its
    lines there shard by shard); it is published as lines.parquet. Unknown formats raise ValueError.
    ``xlsx_info_rows``: info flags per workbook sheet at most (see ``build_exceptions_xlsx``).
    """
    with ReportWriter(store, prefix, flags=flags, quarantine=quarantine, formats=formats,
                      xlsx_info_rows=xlsx_info_rows) as report:
        return report.finish(lines=lines, summary=summary)


class ReportWriter:
    """The report files of one run, each started as soon as what it needs is there.

    The flag files (flags.parquet, flags.csv), quarantine.csv and the flag sheets of exceptions.xlsx
    start when the writer is made, from the sorted flags alone: a run makes it while its last lines
    are still being encoded on another thread. :meth:`finish` gives the summary (the workbook's
    Summary sheet waits for it), adds lines.parquet and report.html, waits for every file and writes
    summary.json LAST. Files are built two at a time (Arrow, Parquet and deflate release the GIL);
    report.html is built on the caller's thread meanwhile, which would otherwise only wait.
    Use as a context manager, so a run that fails in between stops the writers.
    """

    def __init__(self, store: Store, prefix: str, *, flags: pd.DataFrame, quarantine: pd.DataFrame | None,
                 formats: Sequence[str] = ALL_FORMATS, xlsx_info_rows: int | None = None) -> None:
        unknown = set(formats) - set(ALL_FORMATS)
        if unknown:
            raise ValueError(f"unknown report format(s) {sorted(unknown)}; choose from {ALL_FORMATS}")
        self.store, self.formats = store, tuple(formats)
        self.prefix = prefix if prefix.endswith("/") or prefix == "" else prefix + "/"
        self.flags = _ordered_flag_columns(sort_flags(flags).reset_index(drop=True))
        self.quarantine = quarantine if quarantine is not None else pd.DataFrame()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="report")
        self._futures: list[Future] = []
        self._summary: Future[dict] = Future()  # set by finish(); the workbook's Summary sheet waits on it
        flags, quarantine = self.flags, self.quarantine
        early: list[tuple[str, Callable[[str], None]]] = []
        if "xlsx" in formats:
            early.append(("exceptions.xlsx", self._data(lambda: build_exceptions_xlsx(
                flags, self._summary.result, info_rows=xlsx_info_rows))))
        if "csv" in formats:
            early += [("flags.csv", self._csv_file(flags)),
                      ("quarantine.csv", self._data(lambda: _csv_bytes(quarantine) if len(quarantine.columns)
                                                    else b"source_file,source_row,reason\n"))]
        if "parquet" in formats:
            early.append(("flags.parquet", self._parquet(flags)))
        self._submit(early)

    def _submit(self, jobs: list[tuple[str, Callable[[str], None]]]) -> None:
        for name, job in sorted(jobs, key=lambda j: _COST_ORDER.get(j[0], 9)):  # the slow files start first
            self._futures.append(self._pool.submit(job, self.prefix + name))

    def _parquet(self, frame: pd.DataFrame) -> Callable[[str], None]:
        """Through a local file as lines.parquet is written (:class:`ParquetSink`): text categoricals go in
        as dictionaries, Parquet's own encoding, and read back as text whatever the run's shard count."""
        def job(key: str) -> None:
            with tempfile.TemporaryDirectory(prefix="report-") as tmp:
                sink = ParquetSink(Path(tmp) / "part.parquet")
                sink.write(_parquet_safe(frame))
                self.store.publish_file(sink.close(), key)
        return job

    def _data(self, build: Callable[[], bytes]) -> Callable[[str], None]:
        return lambda key: self.store.write_bytes(key, build())

    def _csv_file(self, frame: pd.DataFrame) -> Callable[[str], None]:
        """Big CSVs go through a local file: a 10M-line night's flags.csv is about a gigabyte."""
        def job(key: str) -> None:
            with tempfile.TemporaryDirectory(prefix="report-") as tmp:
                path = Path(tmp) / "flags.csv"
                pacsv.write_csv(_csv_table(frame), str(path), _CSV_OPTIONS)
                self.store.publish_file(path, key)
        return job

    def names(self) -> list[str]:
        """The report's files in their listed order (summary.json last)."""
        names = []
        if "parquet" in self.formats:
            names += ["flags.parquet", "lines.parquet"]
        if "csv" in self.formats:
            names += ["flags.csv", "quarantine.csv"]
        names += [n for f, n in (("xlsx", "exceptions.xlsx"), ("html", "report.html")) if f in self.formats]
        return [*names, "summary.json"]

    def finish(self, *, lines: pd.DataFrame | Path, summary: dict, take_lines: bool = False,
               before_summary: Callable[[], None] | None = None) -> list[str]:
        """The files that need the lines or the summary, then summary.json once all are in place;
        returns the keys written, summary.json last. ``take_lines``: ``lines`` is a scratch file the
        caller is done with, so the store may move it into place instead of copying it.
        ``before_summary``: what must also succeed before the report counts as written (a run's
        history still being encoded), called once the files are in place; if it raises, no summary."""
        store, flags, quarantine = self.store, self.flags, self.quarantine
        summary = dict(summary)
        summary["files"] = self.names()
        self._summary.set_result(summary)
        late: list[tuple[str, Callable[[str], None]]] = []
        if "parquet" in self.formats:
            publish = store.publish_file if take_lines else store.upload_file
            late.append(("lines.parquet", (lambda key: publish(lines, key)) if isinstance(lines, Path)
                         else self._parquet(lines)))
        self._submit(late)
        if "html" in self.formats:  # built here, beside the writers, instead of after the slowest of them
            self.store.write_bytes(self.prefix + "report.html", build_html(flags, summary, quarantine).encode("utf-8"))
        for future in self._futures:
            future.result()
        if before_summary is not None:
            before_summary()
        store.write_bytes(self.prefix + "summary.json",
                          json.dumps(summary, indent=2, default=_json_default).encode("utf-8"))
        return [self.prefix + name for name in summary["files"]]

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._summary.done():  # the run stopped before its summary: the workbook must not wait
            self._summary.set_exception(RuntimeError("the run stopped before its summary was made"))
        self._pool.shutdown(wait=True, cancel_futures=True)
