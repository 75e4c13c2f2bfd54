"""Claim history in the store: the lines of earlier runs, for cross-day checks (frequency, global periods,
duplicates and NCCI edits across batches).

Layout (architecture 3.4)::

    history/service_month=YYYY-MM/run_id=<run_id>.parquet

one file per run per month of service. Partitioning by *service* month (not run date) lets a check that
looks back 90 days read four months of files instead of every run ever made. One file per run makes a
re-run idempotent: :func:`append_history` replaces that run's files (each write atomic) and removes the
run's files for months it no longer has, so history never holds a line twice.

Only the columns the checks need are stored (:data:`HISTORY_COLUMNS`): no raw file names, charges,
diagnoses or locality, plus the reference annotations that let an old line be judged without reloading
its RVU release (global days, status).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scrubber.schemas import parquet_dictionary_columns
from scrubber.store import Store

HISTORY_PREFIX = "history/"

#: stored columns and their Arrow types (fixed, so files of different runs always concatenate)
HISTORY_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("line_uid", pa.int64()),
    ("claim_id", pa.string()),
    ("line_number", pa.int64()),
    ("patient_id", pa.string()),
    ("rendering_npi", pa.string()),
    ("billing_npi", pa.string()),
    ("payer", pa.string()),
    ("service_date", pa.date32()),
    ("hcpcs", pa.string()),
    ("modifiers", pa.string()),
    ("units", pa.float64()),
    ("place_of_service", pa.string()),
    ("rvu_release", pa.string()),
    ("status_code", pa.string()),
    ("global_days", pa.string()),
])
HISTORY_COLUMNS: list[str] = HISTORY_SCHEMA.names
#: the same columns as the files are written: text as large_string (what pandas' Arrow-backed text
#: already is: nothing is copied to narrow its offsets) and the run id as a one-value dictionary (not
#: a million copies for Parquet to hash again). The files keep no Arrow schema, so a reader gets
#: :data:`HISTORY_SCHEMA`'s plain strings back
_FILE_SCHEMA = pa.schema([
    pa.field(f.name, pa.dictionary(pa.int32(), pa.large_string()) if f.name == "run_id"
             else pa.large_string() if f.type == pa.string() else f.type)
    for f in HISTORY_SCHEMA])

#: Parquet options of history files: statistics only where reads filter (date, patient, code), no
#: dictionary for the one-value-per-line ids; each costs encoding time and buys nothing there
_WRITE_OPTIONS = {
    "write_statistics": ["service_date", "patient_id", "hcpcs"],
    "use_dictionary": parquet_dictionary_columns(HISTORY_COLUMNS),
}

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KEY_RE = re.compile(r"^history/service_month=(\d{4})-(\d{2})/run_id=(.+)\.parquet$")


def history_key(month: str, run_id: str) -> str:
    """Store key of one run's lines for one service month ("2025-03")."""
    return f"{HISTORY_PREFIX}service_month={month}/run_id={run_id}.parquet"


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} cannot name a history file (letters, digits, '.', '_', '-')")


def _string_array(values: pd.Series | None, n: int) -> pa.Array:
    """A text column as the files store it (large_string, what pandas' Arrow-backed text already is)."""
    if values is None:
        return pa.nulls(n, pa.large_string())
    if isinstance(values.dtype, pd.CategoricalDtype) or (
            pd.api.types.is_string_dtype(values.dtype) and values.dtype != object):
        try:  # categoricals and Arrow-backed text: decoded / re-typed in Arrow, not value by value
            return pa.array(values, from_pandas=True).cast(pa.large_string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        values = values.astype("string")
    try:
        return pa.array(values, type=pa.large_string(), from_pandas=True)  # zero-copy for Arrow-backed strings
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects (numbers in an NPI column): text them
        return pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True)


def _to_arrow(lines: pd.DataFrame, run_id: str) -> pa.Table:
    """The history columns of ``lines`` with the fixed schema; absent optional columns become nulls."""
    n = len(lines)
    get = lines.get
    dates = pd.to_datetime(lines["service_date"])
    if dates.isna().any():
        first = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise ValueError(f"history: line {first} has no service_date; canonical lines always carry one")
    uid = get("line_uid")
    line_number = get("line_number")
    arrays = {
        "run_id": _run_id_column(run_id, n),
        "line_uid": pa.array(pd.to_numeric(uid).to_numpy(dtype="int64") if uid is not None
                             else np.arange(n, dtype="int64"), type=pa.int64()),
        "line_number": (pa.array(pd.to_numeric(line_number, errors="coerce").astype("Int64").array, type=pa.int64())
                        if line_number is not None else pa.nulls(n, pa.int64())),
        "service_date": pa.array(dates.to_numpy(dtype="datetime64[D]"), type=pa.date32()),
        "units": pa.array(pd.to_numeric(get("units", pd.Series(np.nan, index=lines.index)), errors="coerce")
                          .to_numpy(dtype="float64"), type=pa.float64()),
    }
    for name in HISTORY_COLUMNS:
        if name not in arrays:
            arrays[name] = _string_array(get(name), n)
    return pa.Table.from_arrays([arrays[c] for c in HISTORY_COLUMNS], schema=_FILE_SCHEMA)


def _run_id_column(run_id: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)),
                                          pa.array([run_id], type=pa.large_string()))


def _from_arrow(lines: pa.Table, run_id: str) -> pa.Table:
    """The history columns of an Arrow table of lines (the report's lines.parquet table: text may be
    dictionary-encoded), cast to the fixed schema without going back through pandas."""
    n = lines.num_rows
    arrays = []
    for field in _FILE_SCHEMA:
        name, want = field.name, field.type
        if name == "run_id":
            arrays.append(_run_id_column(run_id, n))
            continue
        if name not in lines.column_names:
            arrays.append(pa.array(np.arange(n, dtype="int64")) if name == "line_uid" else pa.nulls(n, want))
            continue
        column = lines.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if name == "service_date" and column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(f"history: line {first} has no service_date; canonical lines always carry one")
        arrays.append(column if column.type == want else column.cast(want, safe=name != "service_date"))
    return pa.Table.from_arrays(arrays, schema=_FILE_SCHEMA)


def _run_keys(store: Store, run_id: str) -> list[str]:
    suffix = f"/run_id={run_id}.parquet"
    return [k for k in store.list(HISTORY_PREFIX) if k.endswith(suffix) and _KEY_RE.match(k)]


class HistoryWriter:
    """A run's history written shard by shard: one Parquet file per service month, streamed to local
    files and published when the run is done (:meth:`close`), so a run too big for memory still leaves
    one file per month and a re-run still replaces instead of duplicating.

    Use as a context manager or call :meth:`close`; :meth:`abort` drops what was written.
    """

    def __init__(self, store: Store, run_id: str, workdir: str | os.PathLike[str] | None = None, *,
                 threads: int = 4) -> None:
        _check_run_id(run_id)
        self.store, self.run_id = store, run_id
        self.threads = max(1, threads)  # months encoded side by side (1: the caller is a side thread already)
        self._tmp = tempfile.TemporaryDirectory(prefix="history-", dir=workdir)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows = 0

    def add(self, lines: pd.DataFrame | pa.Table) -> None:
        """Append scrubbed lines (any service months): a frame, or the Arrow table written to the report."""
        if not (lines.num_rows if isinstance(lines, pa.Table) else len(lines)):
            return
        table = _from_arrow(lines, self.run_id) if isinstance(lines, pa.Table) else _to_arrow(lines, self.run_id)
        # month index since 1970 (fits int16 until year 4700); a night spans a few months: one filter each
        days = table.column("service_date").to_numpy()  # date32 -> datetime64[D]
        months = days.astype("datetime64[M]").astype("int64").astype("int16")
        uniq = np.unique(months)
        if len(uniq) > 1:  # rows put in month order (one take per column), each month a slice of it
            order = np.argsort(months, kind="stable")
            months = months[order]
            take = pa.array(order)
            table = pa.Table.from_arrays([column.take(take) for column in table.columns], schema=table.schema)
        starts = [*np.searchsorted(months, uniq, side="left").tolist(), len(months)]
        parts = {f"{1970 + month // 12:04d}-{month % 12 + 1:02d}": table.slice(starts[i], starts[i + 1] - starts[i])
                 for i, month in enumerate(uniq.tolist())}
        # Parquet encoding releases the GIL: the months of a shard are encoded side by side
        if self.threads == 1 or len(parts) == 1:
            for month, part in parts.items():
                self._writer(month).write_table(part)
        else:
            with ThreadPoolExecutor(max_workers=min(self.threads, len(parts))) as pool:
                list(pool.map(lambda item: self._writer(item[0]).write_table(item[1]), parts.items()))
        self.rows += len(lines)

    def _writer(self, month: str) -> pq.ParquetWriter:
        if month not in self._writers:
            path = os.path.join(self._tmp.name, f"{month}.parquet")
            self._writers[month] = pq.ParquetWriter(path, _FILE_SCHEMA, compression="zstd", store_schema=False,
                                                    **_WRITE_OPTIONS)
        return self._writers[month]

    def close(self) -> int:
        """Publish one file per month (each atomic), then delete this run's files for months it no longer
        has; returns the rows written."""
        try:
            old = set(_run_keys(self.store, self.run_id))
            written = set()
            for month, writer in sorted(self._writers.items()):
                writer.close()
                key = history_key(month, self.run_id)
                self.store.publish_file(os.path.join(self._tmp.name, f"{month}.parquet"), key)
                written.add(key)
            for key in sorted(old - written):
                self.store.delete(key)
        finally:
            self._writers.clear()
            self._tmp.cleanup()
        return self.rows

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self._tmp.cleanup()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def append_history(store: Store, lines: pd.DataFrame, *, run_id: str) -> int:
    """Record a run's scrubbed lines; re-running the same ``run_id`` replaces its files. Returns rows written.

    One Parquet file per service month (atomic per file); files of this run for months it no longer has
    are deleted afterwards, so a reader sees either the old or the new version of each month.
    """
    with HistoryWriter(store, run_id) as writer:
        writer.add(lines)
    return writer.rows


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


def history_files(store: Store, start: dt.date, end: dt.date, exclude_run_id: str | None = None) -> list[str]:
    """History files whose service month overlaps [start, end], oldest month first."""
    lo, hi = _month_index(start.year, start.month), _month_index(end.year, end.month)
    keys = []
    for key in store.list(HISTORY_PREFIX):
        m = _KEY_RE.match(key)
        if not m:
            continue
        if exclude_run_id is not None and m.group(3) == exclude_run_id:
            continue
        if lo <= _month_index(int(m.group(1)), int(m.group(2))) <= hi:
            keys.append(key)
    return keys


def _as_date(value: dt.date | dt.datetime | pd.Timestamp | str) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return value.date()
    return value


def read_history(store: Store, *, patient_ids: Iterable[str] | None, start: dt.date, end: dt.date,
                 exclude_run_id: str | None = None, hcpcs: Iterable[str] | None = None) -> pd.DataFrame:
    """Lines of earlier runs with service_date in [start, end] (inclusive) for ``patient_ids`` (None = all).

    Reads only the month partitions overlapping the window; patient, date (and optional code) filters are
    pushed into the Parquet reader. ``exclude_run_id`` skips a run's own files (a re-run must not see
    itself as history). Columns: :data:`HISTORY_COLUMNS` (service_date as datetime64[ns]).
    """
    start, end = _as_date(start), _as_date(end)
    keys = history_files(store, start, end, exclude_run_id) if end >= start else []
    if not keys:  # checked first: building the filters below costs more than a first night's empty read
        return empty_history()
    expr = ((pc.field("service_date") >= pa.scalar(start, pa.date32()))
            & (pc.field("service_date") <= pa.scalar(end, pa.date32())))
    if patient_ids is not None:
        ids = pd.unique(pd.Series(list(patient_ids), dtype=object).dropna().astype(str))
        if len(ids) == 0:
            return empty_history()
        expr &= pc.field("patient_id").isin(pa.array(ids, type=pa.string()))
    if hcpcs is not None:
        codes = sorted({str(c) for c in hcpcs})
        if not codes:
            return empty_history()
        expr &= pc.field("hcpcs").isin(pa.array(codes, type=pa.string()))
    tables = []
    for key in keys:
        local = store.local_path(key)
        source = str(local) if local is not None else pa.BufferReader(store.read_bytes(key))
        table = pq.read_table(source, filters=expr, schema=HISTORY_SCHEMA)
        if table.num_rows:
            tables.append(table)
    if not tables:
        return empty_history()
    return _to_pandas(pa.concat_tables(tables))


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas(date_as_object=False)
    df["service_date"] = df["service_date"].astype("datetime64[ns]")
    df["line_number"] = df["line_number"].astype("Int64")
    return df


def empty_history() -> pd.DataFrame:
    """A zero-row history frame with the stored columns and types."""
    return _to_pandas(HISTORY_SCHEMA.empty_table())
