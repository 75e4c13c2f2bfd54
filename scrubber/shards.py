"""Splitting a big run by patient, and streaming frames to Parquet files piece by piece.

Every check looks at one patient's lines at a time (same-day pairs, unit sums, frequency windows,
duplicates), so a run can be cut by patient into shards that are scrubbed one after the other: memory
follows the shard size, not the input size. Intake hands out lines in chunks of rows; each chunk is
split by patient and appended to one local Parquet file per shard (:class:`ShardSpill`); the shards are
read back one at a time. A patient's lines always land in the same shard (a stable hash), whatever the
chunk they came in.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scrubber.claims.readers import sniff_format

#: lines per shard: a 1M-line night is one shard (scrubbed in memory), a 10M-line one eight
SHARD_LINES = 1_250_000


def shard_of(patient_ids: pd.Series, shards: int) -> np.ndarray:
    """Stable shard number per patient (same patient -> same shard across runs and chunks)."""
    if shards <= 1:
        return np.zeros(len(patient_ids), dtype=np.int64)
    hashed = pd.util.hash_pandas_object(patient_ids.astype(str), index=False).to_numpy()
    return (hashed % np.uint64(shards)).astype(np.int64)


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
            except (pa.ArrowException, OSError, ValueError):
                pass
        total += data.count(b"~") // 5 if fmt == "x12" else data.count(b"\n")
    return total


def shard_count(rows: int, shard_lines: int = SHARD_LINES) -> int:
    return max(1, -(-rows // shard_lines))


class TableFileSink:
    """Frames appended to one local file, so a result never has to be in memory whole.

    The schema is the first frame's, with columns that were all missing (Arrow type null) taken as
    text; later frames are cast to it, and a frame that cannot be raises naming the column.
    Subclasses say which file format (:meth:`_open`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows = 0
        self._writer: pq.ParquetWriter | pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self._done = False

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter | pa.ipc.RecordBatchFileWriter:
        raise NotImplementedError

    def write(self, frame: pd.DataFrame | pa.Table) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            fields = [pa.field(f.name, pa.large_string()) if pa.types.is_null(f.type) else f.remove_metadata()
                      for f in table.schema]
            self._schema = pa.schema(fields)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._open(self._schema)
        self._writer.write_table(self._conform(table))
        self.rows += table.num_rows

    def _conform(self, table: pa.Table) -> pa.Table:
        schema = self._schema
        if table.schema.names != schema.names:
            missing = set(schema.names) - set(table.schema.names)
            extra = set(table.schema.names) - set(schema.names)
            raise ValueError(f"{self.path.name}: columns differ from the first part (missing {sorted(missing)}, "
                             f"extra {sorted(extra)})")
        if table.schema.remove_metadata().equals(schema):
            return table.replace_schema_metadata(None)
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
    """A zstd Parquet file (results people and tools read, e.g. the report's lines.parquet)."""

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        return pq.ParquetWriter(self.path, schema, compression="zstd")


class ArrowFileSink(TableFileSink):
    """An uncompressed Arrow IPC file: scratch data read back once, where writing and reading at memory
    speed matters more than size (Parquet encoding cost ~1.5 s per million lines)."""

    def _open(self, schema: pa.Schema) -> pa.ipc.RecordBatchFileWriter:
        return pa.ipc.new_file(str(self.path), schema)

    def read(self) -> pa.Table:
        with pa.memory_map(str(self.path)) as source:
            return pa.ipc.open_file(source).read_all()


class ShardSpill:
    """Canonical line chunks split by patient into ``shards`` local Arrow files (a temporary folder,
    removed by :meth:`cleanup`); :meth:`shards` reads them back one at a time."""

    def __init__(self, shards: int, workdir: str | os.PathLike[str] | None = None) -> None:
        self.n = shards
        self._tmp = tempfile.TemporaryDirectory(prefix="shards-", dir=workdir)
        self.sinks = [ArrowFileSink(Path(self._tmp.name) / f"shard-{k:04d}.arrow") for k in range(shards)]

    def add(self, lines: pd.DataFrame) -> None:
        shard_no = shard_of(lines["patient_id"], self.n)
        table = pa.Table.from_pandas(lines, preserve_index=False)
        order = np.argsort(shard_no, kind="stable")
        shard_no = shard_no[order]
        idx = pa.array(order)  # column by column: much faster than Table.take on wide text tables
        table = pa.Table.from_arrays([col.take(idx) for col in table.columns], schema=table.schema)
        starts = np.searchsorted(shard_no, np.arange(self.n + 1))
        for k, sink in enumerate(self.sinks):
            if starts[k + 1] > starts[k]:
                sink.write(table.slice(starts[k], starts[k + 1] - starts[k]))

    def paths(self) -> list[Path]:
        """Close the files; the paths of the shards that received lines."""
        return [p for p in (sink.close() for sink in self.sinks) if p is not None]

    def tables(self) -> Iterator[pa.Table]:
        self.paths()
        for sink in self.sinks:
            if sink.rows:
                yield sink.read()

    def shards(self) -> Iterator[pd.DataFrame]:
        for table in self.tables():
            yield table.to_pandas()

    def cleanup(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> ShardSpill:
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()
