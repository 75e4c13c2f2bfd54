"""Splitting a big run by patient, and streaming frames to Parquet files piece by piece.

Every check looks at one patient's lines at a time (same-day pairs, unit sums, frequency windows,
duplicates), so a run can be cut by patient into shards that are scrubbed one after the other: memory
follows the shard size, not the input size. Intake hands out lines in chunks of rows; each chunk is
split by patient and appended to one local Arrow file per shard (:class:`ShardSpill`); the shards are
read back one at a time. A patient's lines always land in the same shard (a stable hash), whatever the
chunk they came in.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from scrubber.claims.readers import PARQUET_ERRORS, read_ahead, sniff_format
from scrubber.schemas import is_arrow_text, parquet_dictionary_columns

#: lines per shard: a 1M-line night is one shard (scrubbed in memory), a 10M-line one eight
SHARD_LINES = 1_250_000


def shard_of(patient_ids: pd.Series, shards: int) -> np.ndarray:
    """Stable shard number per patient (same patient -> same shard across runs and chunks)."""
    if shards <= 1:
        return np.zeros(len(patient_ids), dtype=np.int64)
    # hashed once per patient, not per line (a patient has about ten lines a night)
    rows, patients = pd.factorize(patient_ids.astype(str), use_na_sentinel=False)
    hashed = pd.util.hash_pandas_object(pd.Series(patients), index=False).to_numpy()
    return (hashed % np.uint64(shards)).astype(np.int64)[rows]


def estimate_rows(named: Sequence[tuple[str, bytes]]) -> int:
    """Rows in the claim files, cheaply, to choose the shard count before reading them: Parquet from
    its footer, text files by their line breaks (X12: segment terminators / 5, about one line per 5
    segments). An estimate: a wrong one only makes shards uneven."""
    total = 0
    for _name, data in named:
        fmt = sniff_format(data)
        if fmt == "parquet":
            try:
                total += pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
                continue
            except PARQUET_ERRORS:
                pass
        total += data.count(b"~") // 5 if fmt == "x12" else data.count(b"\n")
    return total


def shard_count(rows: int, shard_lines: int = SHARD_LINES) -> int:
    return max(1, -(-rows // shard_lines))


def stringify(frame: pd.DataFrame, *, keep_text_categoricals: bool = False) -> pd.DataFrame:
    """Parquet needs one stable type per column: categoricals become plain values (text categories the
    text dtype, written as large_string like the other text columns) and mixed object columns strings
    (missing stays missing), so merged shards and single runs write the same schema.

    ``keep_text_categoricals``: text categoricals stay as they are (:func:`concat_parts` joins them), for
    frames that are gathered and reordered before they are written: a row take of codes is cheap, of
    long texts (a flag's message) it is a random read of hundreds of megabytes."""
    out = frame
    for col in frame.columns:
        s = frame[col]
        if keep_text_categoricals and _is_text_categorical(s):
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):  # one Parquet type whatever the shard count
            if out is frame:
                out = frame.copy(deep=False)  # copy-on-write: replacing columns leaves ``frame`` as is
            if _is_text_categorical(s):
                # text categories -> the Arrow-backed text dtype: decoded in Arrow, written without a
                # per-value conversion (the object route cost ~0.1 s per column per million lines)
                out[col] = _text_from_categorical(s)
                continue
            out[col] = s.astype(object).where(s.notna(), None)
            s = out[col]
        if s.dtype == object:
            non_null = s.iloc[:4096].dropna()  # the first 1000 non-null values decide
            if len(non_null) < 1000 and len(s) > 4096:
                non_null = s.dropna()
            if len(non_null) and not all(isinstance(v, str) for v in non_null.iloc[:1000]):
                if out is frame:
                    out = frame.copy(deep=False)
                out[col] = _as_text(s)
    return out


def concat_parts(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(parts, ignore_index=True)``, but a column that is a text categorical in every part stays
    one, its categories the sorted union of the parts' (pandas would fall back to objects when the
    parts' categories differ). Sorted categories keep sorting by the column alphabetical."""
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    joined = {name: pd.Series(union_categoricals([p[name] for p in parts], sort_categories=True), name=name)
              for name in parts[0].columns
              if all(name in p.columns and _is_text_categorical(p[name]) for p in parts)}
    if not joined:
        return pd.concat(parts, ignore_index=True)
    rest = pd.concat([p.drop(columns=list(joined)) for p in parts], ignore_index=True)
    columns = list(parts[0].columns) + [c for c in rest.columns if c not in parts[0].columns]
    return pd.DataFrame({name: joined[name] if name in joined else rest[name] for name in columns},
                        columns=columns)


def take_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame.take(rows)`` with a fresh index, the columns taken two at a time (Arrow's take releases
    the GIL; gathering a 10M-line night's 1.6M flags in report order is a second of random reads).
    Categoricals stay categoricals: their codes are taken, not long texts (a flag's message)."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="take") as pool:
        arrays = list(pool.map(lambda name: frame[name].array.take(rows), frame.columns))
    return pd.DataFrame(dict(zip(frame.columns, arrays, strict=True)), columns=frame.columns)


#: one dictionary type for every text categorical, whatever its number of categories (pandas picks int8 or
#: int16 codes by size: shards of one file must agree)
_TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.large_string())


def _dictionary(s: pd.Series) -> pa.DictionaryArray:
    """A text categorical as an Arrow dictionary array (its codes and categories, nothing decoded)."""
    return pa.array(s).cast(_TEXT_DICTIONARY)


def _text_metadata(name: str) -> dict:
    """The pandas metadata of a text column (what a reader needs to give it back as text)."""
    return {"name": name, "field_name": name, "pandas_type": "object", "numpy_type": "str", "metadata": None}


def _is_text_dictionary(typ: pa.DataType) -> bool:
    return pa.types.is_dictionary(typ) and is_arrow_text(typ.value_type)


def decode_text_dictionaries(table: pa.Table, only: set[str] | None = None) -> pa.Table:
    """``table`` with its text dictionary columns (all, or ``only`` those) decoded to text, one take each;
    the pandas metadata calls them text, so they read back as text columns (not categoricals)."""
    names = [name for name, column in zip(table.column_names, table.columns, strict=True)
             if _is_text_dictionary(column.type) and (only is None or name in only)]
    if not names:
        return table
    for name in names:
        table = table.set_column(table.column_names.index(name), name, table[name].cast(pa.large_string()))
    meta = table.schema.pandas_metadata
    if meta is not None:
        meta["columns"] = [_text_metadata(c["name"]) if c["name"] in names else c for c in meta["columns"]]
        table = table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode()})
    return table


def _text_from_categorical(s: pd.Series) -> pd.Series:
    """``s.astype("str")`` for text categories, done as one Arrow take (pandas goes through objects)."""
    coded = _dictionary(s)
    decoded = coded.dictionary.take(coded.indices)
    return pd.Series(pd.array(decoded, dtype="str"), index=s.index, name=s.name)


def _as_text(s: pd.Series) -> pd.Series:
    """str(v) per value, None for missing; computed once per distinct value when the column holds one
    hashable kind (bool flags: 2 values for a million rows), per value otherwise."""
    def text(v: object) -> str | None:
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

    kinds = set(map(type, s.to_numpy()))
    if len(kinds) <= 2 and kinds <= {bool, np.bool_, str, int, type(None)} and len(kinds - {type(None)}) == 1:
        codes, uniq = pd.factorize(s, use_na_sentinel=True)
        texts = pd.Series(np.array([None, *uniq], dtype=object), dtype=object).map(text)  # same dtype inference
        return pd.Series(texts.array.take(codes + 1), index=s.index, name=s.name)
    return s.map(text)


def _is_text_categorical(s: pd.Series) -> bool:
    return (isinstance(s.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(s.cat.categories.dtype)
            and all(isinstance(v, str) for v in s.cat.categories))


def _is_boolean_object(s: pd.Series) -> bool:
    """True/False with gaps in an object column (pricing's NA indicators): text "True"/"False" in files."""
    return s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) == "boolean"


def _boolean_dictionary(s: pd.Series) -> pa.DictionaryArray:
    """A True/False/missing object column as the dictionary ["False", "True"] (what :func:`stringify`
    writes for it), without a text value per row."""
    flags = pa.array(s.to_numpy(), type=pa.bool_(), from_pandas=True)   # None / NaN -> null
    return pa.DictionaryArray.from_arrays(flags.cast(pa.int32()), pa.array(["False", "True"], type=pa.large_string()))


def parquet_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as Arrow for a Parquet file people read: the values of :func:`stringify`, but text
    categoricals (and True/False object columns) are handed over as dictionary arrays instead of
    being turned into a million strings first, and Parquet writes them dictionary-encoded as it would
    anyway. The pandas metadata calls them text, so with ``store_schema=False`` (:class:`ParquetSink`)
    a reader gets plain text columns, the same as from a stringified frame.
    """
    coded = [c for c in frame.columns if _is_text_categorical(frame[c]) or _is_boolean_object(frame[c])]
    rest = stringify(frame.drop(columns=coded)) if coded else stringify(frame)
    table = pa.Table.from_pandas(rest, preserve_index=False)
    if not coded:
        return table
    meta = json.loads(table.schema.metadata[b"pandas"])
    described = {c["name"]: c for c in meta["columns"]}
    arrays = []
    for name in frame.columns:
        if name not in coded:
            arrays.append(table[name])
            continue
        column = frame[name]
        categorical = isinstance(column.dtype, pd.CategoricalDtype)
        arrays.append(_dictionary(column) if categorical else _boolean_dictionary(column))
        described[name] = _text_metadata(name)
    meta["columns"] = [described[name] for name in frame.columns]
    return pa.table(arrays, names=list(frame.columns)).replace_schema_metadata(
        {b"pandas": json.dumps(meta).encode()})


class SideJob:
    """One job at a time on a side thread: :meth:`submit` first waits for the previous job, so at most one
    piece of work (one chunk, one shard) is in flight and memory stays bounded. :meth:`wait` raises
    what the job raised."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future | None = None

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for the last job and stop the thread; ``raise_errors=False`` when another error is already
        on its way (that one says what went wrong first)."""
        try:
            self.wait()
        except Exception:
            if raise_errors:
                raise
        finally:
            self._pool.shutdown()


class TableFileSink:
    """Frames appended to one local file, so a result never has to be in memory whole.

    The schema is the first frame's (with its pandas metadata, so the file reads back with the same
    dtypes), columns that were all missing (Arrow type null) taken as text; later frames are cast to
    it, and a frame that cannot be raises naming the column.
    Subclasses say which file format (:meth:`_open`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows = 0
        self._writer: pq.ParquetWriter | pa.ipc.RecordBatchStreamWriter | None = None
        self._schema: pa.Schema | None = None
        self._done = False

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter | pa.ipc.RecordBatchStreamWriter:
        raise NotImplementedError

    def write(self, frame: pd.DataFrame | pa.Table) -> None:
        table = frame if isinstance(frame, pa.Table) else self._to_arrow(frame)
        if self._writer is None:
            fields = [pa.field(f.name, pa.large_string()) if pa.types.is_null(f.type) else f.remove_metadata()
                      for f in table.schema]
            self._schema = pa.schema(fields, metadata=table.schema.metadata)  # pandas metadata: dtypes
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._open(self._schema)
        self._writer.write_table(self._conform(table))
        self.rows += table.num_rows

    def _to_arrow(self, frame: pd.DataFrame) -> pa.Table:
        return pa.Table.from_pandas(frame, preserve_index=False)

    def _conform(self, table: pa.Table) -> pa.Table:
        schema = self._schema
        if table.schema.names != schema.names:
            missing = set(schema.names) - set(table.schema.names)
            extra = set(table.schema.names) - set(schema.names)
            raise ValueError(f"{self.path.name}: columns differ from the first part (missing {sorted(missing)}, "
                             f"extra {sorted(extra)})")
        if table.schema.equals(schema, check_metadata=False):
            return table.replace_schema_metadata(schema.metadata)
        columns = []
        for name, column in zip(schema.names, table.columns, strict=True):
            want = schema.field(name).type
            try:
                columns.append(column if column.type == want else column.cast(want))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"{self.path.name}: column {name!r} is {column.type} here but {want} in the "
                                 f"first part: {exc}") from None
        return pa.Table.from_arrays(columns, schema=schema)

    def close(self) -> Path | None:
        """Finish the file (again: no-op); None when nothing was written."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._done = True
        return self.path if self._done else None


class ParquetSink(TableFileSink):
    """A zstd Parquet file people and tools read (the report's lines.parquet): frames go in as
    :func:`parquet_table` makes them, and the file keeps the pandas metadata but not the Arrow schema,
    so its text columns read back as text even where they were written from dictionaries."""

    def __init__(self, path: str | os.PathLike[str], *, statistics: Sequence[str] | None = None) -> None:
        """``statistics``: the columns readers filter on get min/max statistics (None: every column).
        Statistics cost about a quarter of the encoding time of a wide table."""
        super().__init__(path)
        self.statistics = None if statistics is None else list(statistics)

    def _to_arrow(self, frame: pd.DataFrame) -> pa.Table:
        return parquet_table(frame)

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        stats: bool | list[str] = True if self.statistics is None else [
            c for c in self.statistics if c in schema.names]
        writer = pq.ParquetWriter(self.path, schema, compression="zstd", store_schema=False,
                                  write_statistics=stats, use_dictionary=parquet_dictionary_columns(schema.names))
        if schema.metadata and b"pandas" in schema.metadata:  # store_schema=False writes no metadata itself
            writer.add_key_value_metadata({b"pandas": schema.metadata[b"pandas"]})
        return writer


class ArrowStreamSink(TableFileSink):
    """A local file in the Arrow IPC stream format: scratch data read back once, where writing and reading
    fast matters more than size (Parquet encoding cost ~1.5 s per million lines). Buffers are
    LZ4-compressed (about 3.5x smaller): writing fresh page cache costs more system time than compressing
    it saves, and it grows with the run (a 10M-line night spills 2.7 GB raw). The stream format (unlike
    the IPC file format) lets every part bring its own dictionaries, so text dictionary columns go in as
    codes; :meth:`read` decodes them to text."""

    _OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")

    def _open(self, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
        return pa.ipc.new_stream(str(self.path), schema, options=self._OPTIONS)

    def read(self) -> pa.Table:
        with pa.memory_map(str(self.path)) as source:
            return decode_text_dictionaries(pa.ipc.open_stream(source).read_all())


#: a text dictionary column is spilled as codes while its distinct values are under this share of a
#: chunk's rows (a 1M-line chunk: 15,625 values; copied into 8 shard files, an eighth of its rows again)
CODED_TEXT_SHARE = 1 / 64


class ShardSpill:
    """Canonical line chunks split by patient into ``shards`` local Arrow files (a temporary folder,
    removed by :meth:`cleanup`); :meth:`shards` reads them back one at a time.

    :meth:`add` returns at once: a chunk is split and written on a side thread (Arrow takes and file
    writes release the GIL) while intake validates the next one; one chunk at most is in flight.
    """

    def __init__(self, shards: int, workdir: str | os.PathLike[str] | None = None) -> None:
        self.n = shards
        self._tmp = tempfile.TemporaryDirectory(prefix="shards-", dir=workdir)
        self.sinks = [ArrowStreamSink(Path(self._tmp.name) / f"shard-{k:04d}.arrow") for k in range(shards)]
        self._side = SideJob("shard-spill")
        self._decoded: set[str] | None = None  # the dictionary columns spilled as text (see _coded_text)

    def add(self, lines: pd.DataFrame) -> None:
        self._side.submit(self._split, lines)

    def wait(self) -> None:
        """Until every chunk given is written (raises what writing raised)."""
        self._side.wait()

    def _split(self, lines: pd.DataFrame) -> None:
        shard_no = shard_of(lines["patient_id"], self.n)
        table = self._coded_text(pa.Table.from_pandas(lines, preserve_index=False))
        order = np.argsort(shard_no, kind="stable")
        shard_no = shard_no[order]
        idx = pa.array(order)  # column by column: much faster than Table.take on wide text tables
        table = pa.Table.from_arrays([col.take(idx) for col in table.columns], schema=table.schema)
        starts = np.searchsorted(shard_no, np.arange(self.n + 1))
        for k, sink in enumerate(self.sinks):
            if starts[k + 1] > starts[k]:
                sink.write(table.slice(starts[k], starts[k + 1] - starts[k]))

    def _coded_text(self, table: pa.Table) -> pa.Table:
        """A chunk's text dictionary columns (:class:`scrubber.claims.intake.IntakeStream`'s
        ``dictionary_text``) kept as codes where they have few distinct values, decoded to text otherwise:
        every shard's file gets a copy of the chunk's values, worth it only while they are under
        :data:`CODED_TEXT_SHARE` of its rows. The first chunk decides for the run (one schema per file)."""
        if self._decoded is None:
            limit = table.num_rows * CODED_TEXT_SHARE
            self._decoded = {name for name, column in zip(table.column_names, table.columns, strict=True)
                             if _is_text_dictionary(column.type)
                             and sum(len(chunk.dictionary) for chunk in column.chunks) > limit}
        return decode_text_dictionaries(table, only=self._decoded) if self._decoded else table

    def paths(self) -> list[Path]:
        """Close the files; the paths of the shards that received lines."""
        self.wait()
        return [p for p in (sink.close() for sink in self.sinks) if p is not None]

    def tables(self) -> Iterator[pa.Table]:
        self.paths()
        for sink in self.sinks:
            if sink.rows:
                yield sink.read()

    def shards(self) -> Iterator[pd.DataFrame]:
        """The shards as frames, the next one read on a side thread while the caller scrubs this one
        (decompressing and converting a shard releases the GIL; memory holds one shard more)."""
        yield from read_ahead((table.to_pandas() for table in self.tables()), "shard-read")

    def cleanup(self, *, raise_errors: bool = True) -> None:
        """Stop the side thread and drop the temporary files (see :meth:`SideJob.close`)."""
        try:
            self._side.close(raise_errors=raise_errors)
        finally:
            for sink in self.sinks:
                sink.close()
            self._tmp.cleanup()

    def __enter__(self) -> ShardSpill:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.cleanup(raise_errors=exc_type is None)
