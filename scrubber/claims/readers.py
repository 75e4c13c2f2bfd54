"""Read claim files (CSV and Parquet; X12 lives in x12.py) into raw string tables.

Readers do not judge values: every column comes back as text exactly as found, with a
``source_row`` that points a person at the row in the original file. Validation and
normalisation happen once, for every format, in validate.py.

Decisions worth knowing:
- Format is detected from content, never from the file name: Parquet starts with ``PAR1``,
  X12 with ``ISA`` (or a bare ``GS*``/``ST*`` envelope, which is then rejected with a reason),
  anything else is delimited text.
- Text is UTF-8 (a BOM is fine). A billing export in Windows-1252 (a stray accented name) is
  decoded as such and the file carries a warning, instead of losing the whole batch. UTF-16
  with a BOM is decoded too. NUL bytes or many control characters mean binary: the file is
  rejected whole.
- CSV source_row is the physical line (header = 1), also when blank lines or quoted newlines
  are present.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scrubber.claims.validate import claim_line_counts
from scrubber.errors import InputFileError
from scrubber.schemas import MOSTLY_DISTINCT_COLUMNS, is_arrow_text

_T = TypeVar("_T")

PARQUET_MAGIC = b"PAR1"
_X12_BARE_ENVELOPE = re.compile(rb"^\s*(GS|ST)\*")
_DELIMITERS = (",", "\t", "|", ";")


@dataclass
class RawTable:
    """One input file as text columns, before validation.

    frame: one row per input row; columns are the normalised header names (lower-case, trimmed)
        holding the text as found, plus ``source_row`` (int64, strictly increasing).
    columns: normalised name -> header as written in the file (for the quarantine ``raw`` JSON).
    rejected: rows that could not even be split into columns (wrong field count), already in
        quarantine shape except source_file.
    row_errors: failures found while reading rows that are in ``frame`` (X12 structure errors),
        as validate.ERROR_COLUMNS records.
    raw_column: a frame column that already holds each row's original text (X12 segments).
    line_counts: for a chunk of a bigger file, how many rows of the *whole file* carry each row's
        (claim_id, line_number) pair, so a line number repeated across chunks is still caught; None
        when the frame is the whole file (validation counts within it). A big Parquet file's are
        still being counted when its first chunk is handed out (:class:`LaterLineCounts`; see
        :meth:`file_line_counts`).
    codes: see the field.
    """

    name: str
    format: str
    frame: pd.DataFrame
    columns: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    encoding: str | None = None
    rejected: pd.DataFrame | None = None
    row_errors: pd.DataFrame | None = None
    raw_column: str | None = None
    line_counts: np.ndarray | LaterLineCounts | None = None
    #: columns the reader already had as distinct values (Parquet dictionaries): name -> (distinct text,
    #: per row the index of its value, -1 missing), so validation does not hash them again
    codes: dict[str, tuple[pa.Array, np.ndarray]] = field(default_factory=dict)

    def file_line_counts(self) -> np.ndarray | None:
        """:attr:`line_counts`, waiting for them where they are still being counted."""
        counts = self.line_counts
        return counts.wait() if isinstance(counts, LaterLineCounts) else counts

    def line_counts_ready(self) -> bool:
        """Whether :meth:`file_line_counts` would answer without waiting."""
        counts = self.line_counts
        return not isinstance(counts, LaterLineCounts) or counts.counting.done()


@dataclass(frozen=True)
class LaterLineCounts:
    """A chunk's share (``rows`` rows from ``first``) of a file's line counts, still being counted on a
    side thread (``counting``)."""

    name: str
    counting: Future
    first: int
    rows: int

    def wait(self) -> np.ndarray | None:
        try:
            counts = self.counting.result()
        except PARQUET_ERRORS as exc:  # raised where the chunk's validation asks for them
            raise InputFileError(self.name, f"cannot read Parquet: {exc}") from None
        return None if counts is None else counts[self.first:self.first + self.rows]


def read_ahead(items: Iterator[_T], name: str) -> Iterator[_T]:
    """``items``, the next one made on a side thread (``name``) while the caller works on this one: for
    producers that mostly leave Python's lock (reading, decompressing). Errors surface in order, where
    the caller takes the item that raised; ``None`` items end the iteration."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as producer:
        ahead = producer.submit(next, items, None)
        while True:
            item = ahead.result()
            if item is None:
                return
            ahead = producer.submit(next, items, None)
            yield item


def sniff_format(data: bytes) -> str:
    """'parquet', 'x12' or 'csv' from the first bytes."""
    if data[:4] == PARQUET_MAGIC:
        return "parquet"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:3] == b"ISA" or _X12_BARE_ENVELOPE.match(head):
        return "x12"
    return "csv"


def _binary_reason(data: bytes) -> str | None:
    """Why these bytes are not a text file, or None when they look like text."""
    sample = data[:65536]
    if sample[:4] == b"PK\x03\x04":
        return "binary file (a ZIP archive or Excel workbook); export the claims as CSV, Parquet or X12"
    if sample[:2] == b"\x1f\x8b":
        return "binary file (gzip-compressed); decompress it first"
    if b"\x00" in data:
        return "binary content (NUL bytes); not a CSV, Parquet or X12 file"
    control = sum(sample.count(bytes([c])) for c in (*range(1, 9), 11, *range(14, 27), *range(28, 32)))
    if sample and control / len(sample) > 0.01:
        return "binary content (control characters); not a CSV, Parquet or X12 file"
    return None


def decode_text(name: str, data: bytes) -> tuple[str, str, list[str]]:
    """(text, encoding, warnings). UTF-8 first; Windows-1252 with a warning; binary is rejected."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16"), "utf-16", [f"{name}: decoded as UTF-16 (byte-order mark found)"]
        except UnicodeDecodeError as exc:
            raise InputFileError(name, f"UTF-16 byte-order mark but undecodable content: {exc.reason}") from None
    reason = _binary_reason(data)
    if reason:
        raise InputFileError(name, reason)
    try:
        return data.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise InputFileError(name, f"not UTF-8 (byte 0x{data[first_bad]:02x} at offset {first_bad}) and not "
                                   f"Windows-1252 either (byte 0x{data[exc.start]:02x}); re-export as UTF-8") from None
    line = data.count(b"\n", 0, first_bad) + 1
    return text, "cp1252", [f"{name}: not valid UTF-8 (first bad byte 0x{data[first_bad]:02x} on line {line}); "
                            "decoded as Windows-1252 — check accented names"]


def normalise_header(names: list[str]) -> list[str]:
    """Header names are case-insensitive and trimmed ('  Claim_ID ' -> 'claim_id')."""
    return [str(n).strip().strip("\ufeff").strip().lower() for n in names]


def _dedupe_names(name: str, header: list[str], known: set[str]) -> list[str]:
    """Reject a duplicated known column (which one would win?); suffix unknown duplicates."""
    seen: dict[str, int] = {}
    out = []
    for col in header:
        if col in seen:
            if col in known:
                raise InputFileError(name, f"column {col!r} appears more than once in the header", field=col)
            seen[col] += 1
            col = f"{col}_{seen[col]}"
        seen.setdefault(col, 1)
        out.append(col)
    return out


# --- CSV ----------------------------------------------------------------------------------------------

def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _physical_lines(raw: bytes) -> np.ndarray:
    """1-based physical line numbers of the non-empty lines (what pyarrow counts as rows)."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    if len(arr) and arr[-1] != 10:
        ends = np.append(ends, len(arr))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.array([], dtype=np.int64)
    length = ends - starts
    cr_only = (length == 1) & (arr[np.minimum(starts, max(len(arr) - 1, 0))] == 13) if len(arr) else length == 1
    return np.flatnonzero((length > 0) & ~cr_only) + 1


def _record_lines_slow(text: str, delimiter: str) -> np.ndarray:
    """Start line of every record when quoted values span lines (rare): the csv module tracks lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts = []
    previous_end = 0
    for record in reader:
        if record:
            starts.append(previous_end + 1)
        previous_end = reader.line_num
    return np.asarray(starts, dtype=np.int64)


def _is_utf8(data: bytes) -> bool:
    """UTF-8 check in pyarrow (no 100 MB Python string is built for the common, valid case)."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64).tobytes())
    blob = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        blob.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _text_bytes(name: str, data: bytes) -> tuple[bytes, str, list[str]]:
    """(UTF-8 bytes without BOM, source encoding, warnings) for the CSV parser."""
    if data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        reason = _binary_reason(data)
        if reason:
            raise InputFileError(name, reason)
        body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
        if _is_utf8(body):
            return body, "utf-8", []
    text, encoding, warnings = decode_text(name, data)
    return text.encode("utf-8"), encoding, warnings


def read_csv(name: str, data: bytes, known_columns: set[str]) -> RawTable:
    """Delimited text -> RawTable (all columns as text, source_row = physical line)."""
    raw, encoding, warnings = _text_bytes(name, data)
    first = re.search(rb"[^\r\n]", raw)
    if first is None or re.search(rb"\S", raw) is None:
        raise InputFileError(name, "empty file (no header, no rows)")
    lines = _physical_lines(raw)                    # lines[0] is the header's physical line
    end = raw.find(b"\n", first.start())
    first_line = raw[first.start():end if end >= 0 else len(raw)].decode("utf-8").rstrip("\r")
    body = pa.py_buffer(raw).slice(first.start())   # pyarrow starts at the header line
    delimiter = _sniff_delimiter(first_line)
    header = next(csv.reader([first_line], delimiter=delimiter))
    norm = _dedupe_names(name, normalise_header(header), known_columns)
    internal = [f"c{i}" for i in range(len(norm))]

    def parse(use_threads: bool, invalid: list) -> pa.Table:
        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append((row.number, row.actual_columns, row.text))
            return "skip"

        # large_string: what pandas' text columns hold, so to_pandas below is zero-copy
        return pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(column_names=internal, skip_rows=1,
                                           use_threads=use_threads, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=b'"' in raw,
                                              invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.large_string() for c in internal},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))

    invalid: list = []
    try:
        table = parse(True, invalid)
        if invalid:  # the row numbers of bad rows are only reported by the single-threaded reader
            invalid = []
            table = parse(False, invalid)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise InputFileError(name, f"cannot parse as delimited text: {exc}") from None

    n_records = 1 + table.num_rows + len(invalid)      # header + good rows + rows with a wrong field count
    if len(lines) != n_records:                       # quoted values span lines: count lines exactly
        lines = _record_lines_slow(raw.decode("utf-8"), delimiter)
        if len(lines) != n_records:
            raise InputFileError(name, f"cannot line up rows: {len(lines)} records by line scan, "
                                       f"{n_records} parsed (unbalanced quotes?)")
    bad_numbers = np.asarray([n for n, _, _ in invalid], dtype=np.int64)  # record numbers, header = 1
    all_numbers = np.arange(2, n_records + 1)
    good_numbers = np.setdiff1d(all_numbers, bad_numbers, assume_unique=True)
    frame = table.rename_columns(norm).to_pandas()
    frame["source_row"] = lines[good_numbers - 1].astype(np.int64)
    rejected = None
    if invalid:
        claim_pos = norm.index("claim_id") if "claim_id" in norm else None
        records = []
        for number, actual, row_text in invalid:
            fields = next(csv.reader([row_text], delimiter=delimiter), [])
            records.append({
                "source_row": int(lines[number - 1]),
                "claim_id": fields[claim_pos] if claim_pos is not None and claim_pos < len(fields) else "",
                "line_number": "", "field": "row", "value": "",
                "reason": f"row has {actual} fields, the header has {len(norm)}",
                "raw": row_text,
            })
        rejected = pd.DataFrame(records)
    return RawTable(name=name, format="csv", frame=frame, columns=dict(zip(norm, header, strict=True)),
                    warnings=warnings, encoding=encoding, rejected=rejected)


# --- Parquet ------------------------------------------------------------------------------------------

#: integer columns whose text form needs leading zeros back (a POS of 1 is "01", ZIP 2705 is "02705")
_ZERO_PAD = {"place_of_service": 2, "service_zip": 5}


def _column_as_text(col_name: str, arr: pa.ChunkedArray, *, per_distinct: bool = True) -> pd.Series:
    """A typed Parquet column -> its text form, so Parquet and CSV share one validation path.

    Numbers, dates and dictionary columns repeat a few values over many rows: with ``per_distinct``
    each distinct value is turned into text once and taken to the rows (formatting a million floats
    costs far more); without it, every value is converted as it is.
    """
    return _column_text_and_codes(col_name, arr, per_distinct=per_distinct)[0]


def _column_text_and_codes(col_name: str, arr: pa.ChunkedArray, *, per_distinct: bool = True
                           ) -> tuple[pd.Series, tuple[pa.Array, np.ndarray] | None]:
    """:func:`_column_as_text`, plus (distinct text, per-row index with -1 for missing) when the column
    was turned into text per distinct value and those texts are still distinct (else None)."""
    typ = arr.type
    if per_distinct and (pa.types.is_dictionary(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ)
                         or pa.types.is_timestamp(typ) or pa.types.is_date(typ)):
        # one dictionary for all chunks: unified when read as dictionary, else encoded as one array
        encoded = (arr.unify_dictionaries() if pa.types.is_dictionary(typ)
                   else pa.chunked_array([pa.compute.dictionary_encode(arr.combine_chunks())]))
        if encoded.num_chunks:
            values = _column_as_text(col_name, pa.chunked_array([encoded.chunk(0).dictionary]), per_distinct=False)
            text = pa.array(values.array)
            text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
            taken = pa.chunked_array([text.take(chunk.indices) for chunk in encoded.chunks], type=text.type)
            return pd.Series(pd.array(taken, dtype="str")), _distinct_codes(text, encoded)
    if pa.types.is_dictionary(typ):
        arr = arr.cast(typ.value_type)
        typ = arr.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):   # e.g. modifiers as list<string>
        arr = pa.compute.binary_join(arr.cast(pa.list_(pa.string())), ",")
    elif pa.types.is_timestamp(typ) or pa.types.is_date64(typ):
        arr = arr.cast(pa.date32())
    elif pa.types.is_floating(typ):
        # 1.0 -> "1" so whole-number line numbers / POS / ZIPs stored as floats read like integers
        arr = pa.chunked_array([pa.compute.cast(c, pa.string()) for c in arr.chunks], type=pa.string())
    s = arr.cast(pa.large_string()).to_pandas().astype("str")
    if (pa.types.is_integer(typ) or pa.types.is_floating(typ)) and col_name in _ZERO_PAD:
        width = _ZERO_PAD[col_name]
        digits = s.str.fullmatch(r"[0-9]+").fillna(False)
        s = s.where(~digits, s.str.zfill(width))
    return s, None


def _distinct_codes(text: pa.Array, encoded: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray] | None:
    """(text of each dictionary entry, per-row entry index) when the texts are distinct and present;
    None otherwise (e.g. two floats that print alike), and validation encodes the text column itself."""
    if text.null_count or pa.compute.count_distinct(text).as_py() != len(text):
        return None
    codes = [pa.compute.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
             for chunk in encoded.chunks]
    return text, codes[0] if len(codes) == 1 else np.concatenate(codes)


#: what pyarrow raises on a file that is not (valid) Parquet
PARQUET_ERRORS = (pa.ArrowException, OSError, ValueError)


def _parquet_raw(name: str, columns: list[pa.ChunkedArray], norm: list[str], header: list[str], first_row: int,
                 line_counts: np.ndarray | LaterLineCounts | None = None) -> RawTable:
    """RawTable of Parquet rows ``first_row``.. (1-based source rows) from their typed columns."""
    texts, codes = {}, {}
    # two at a time: Arrow's kernels leave Python's lock, and validation waits for this chunk
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="parquet-text") as pool:
        converted = list(pool.map(_column_text_and_codes, norm, columns))
    for col, (text, coded) in zip(norm, converted, strict=True):
        texts[col] = text
        if coded is not None:
            codes[col] = coded
    frame = pd.DataFrame(texts)
    frame["source_row"] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    return RawTable(name=name, format="parquet", frame=frame, columns=dict(zip(norm, header, strict=True)),
                    line_counts=line_counts, codes=codes)


def _parquet_layout(name: str, schema: pa.Schema, known_columns: set[str]) -> tuple[list[str], list[str], list[str]]:
    """(header, normalised names, text columns to read as dictionaries: those that repeat values, whose
    distinct values validation then checks once each without hashing a million strings; claim and
    patient ids are read as text, a dictionary of hundreds of thousands of entries costs more)."""
    header = list(schema.names)
    norm = _dedupe_names(name, normalise_header(header), known_columns)
    as_dictionary = [raw for raw, col, fld in zip(header, norm, schema, strict=True)
                     if col not in MOSTLY_DISTINCT_COLUMNS
                     and is_arrow_text(fld.type)]
    return header, norm, as_dictionary


def read_parquet(name: str, data: bytes, known_columns: set[str]) -> RawTable:
    """Parquet -> RawTable; source_row is the row index + 1."""
    try:
        header, norm, as_dictionary = _parquet_layout(name, pq.read_schema(pa.BufferReader(data)), known_columns)
        table = pq.read_table(pa.BufferReader(data), read_dictionary=as_dictionary)
    except PARQUET_ERRORS as exc:
        raise InputFileError(name, f"cannot read Parquet: {exc}") from None
    return _parquet_raw(name, table.columns, norm, header, 1)


# --- chunks of big files ----------------------------------------------------------------------------

def _file_line_counts(columns: pd.DataFrame | dict[str, pd.Series]) -> np.ndarray | None:
    """File-wide (claim_id, line_number) counts, or None when the file lacks either column (it is
    quarantined whole for that)."""
    if "claim_id" not in columns or "line_number" not in columns:
        return None
    return claim_line_counts(columns["claim_id"], columns["line_number"])


def iter_chunks(table: RawTable, chunk_rows: int) -> Iterator[RawTable]:
    """An in-memory table as row slices of at most ``chunk_rows`` (one slice when it is small).

    Rejected rows stay with the first slice (they are not in the frame); X12 structure errors go with
    the slice holding their row; each slice carries the file-wide line-number counts of its rows.
    """
    frame = table.frame
    if len(frame) <= chunk_rows:
        yield table
        return
    counts = _file_line_counts(frame)
    rows = frame["source_row"].to_numpy()
    errors = table.row_errors if table.row_errors is not None and len(table.row_errors) else None
    for start in range(0, len(frame), chunk_rows):
        stop = min(start + chunk_rows, len(frame))
        chunk_errors = None
        if errors is not None:
            in_chunk = errors["source_row"].between(rows[start], rows[stop - 1])
            chunk_errors = errors[in_chunk].reset_index(drop=True)
        yield replace(table, frame=frame.iloc[start:stop].reset_index(drop=True),
                      rejected=table.rejected if start == 0 else None, row_errors=chunk_errors,
                      line_counts=None if counts is None else counts[start:stop],
                      codes={col: (values, codes[start:stop]) for col, (values, codes) in table.codes.items()})


def read_parquet_chunks(name: str, data: bytes, known_columns: set[str], chunk_rows: int) -> Iterator[RawTable]:
    """A Parquet file as RawTables of at most ``chunk_rows`` rows, read batch by batch.

    A small file is one :func:`read_parquet` table. A big one is never turned into text whole: only
    its claim_id and line_number columns are read up front (for the file-wide line-number check),
    then one record batch at a time. A file that breaks part-way raises InputFileError naming the
    first row that could not be read (the rows before it have been handed out already).
    """
    try:
        reader = pq.ParquetFile(pa.BufferReader(data))
        n_rows = reader.metadata.num_rows
    except PARQUET_ERRORS as exc:
        raise InputFileError(name, f"cannot read Parquet: {exc}") from None
    if n_rows <= chunk_rows:
        yield read_parquet(name, data, known_columns)
        return
    header, norm, as_dictionary = _parquet_layout(name, reader.schema_arrow, known_columns)
    wanted = [col for col in ("claim_id", "line_number") if col in norm]

    def line_counts() -> np.ndarray | None:
        if len(wanted) < 2:     # the file lacks a key column: it is quarantined whole for that
            return None
        own = pq.ParquetFile(pa.BufferReader(data), read_dictionary=as_dictionary)   # a reader per thread
        read = own.read(columns=[header[norm.index(col)] for col in wanted])          # both columns at once
        return _file_line_counts({col: _line_count_key(col, read.column(i)) for i, col in enumerate(wanted)})

    # the file-wide count (seconds on a 10M-line file) runs on a side thread while the first chunk is read
    # and validated: validation asks for the counts last (RawTable.file_line_counts)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-counts") as side:
        try:
            counting = side.submit(line_counts)
            reader = pq.ParquetFile(pa.BufferReader(data), read_dictionary=as_dictionary)
            start = 0
            for chunk in _whole_chunks(reader.iter_batches(batch_size=chunk_rows), chunk_rows, name):
                yield _parquet_raw(name, chunk.columns, norm, header, start + 1,
                                   LaterLineCounts(name, counting, start, chunk.num_rows))
                start += chunk.num_rows
        except PARQUET_ERRORS as exc:
            raise InputFileError(name, f"cannot read Parquet: {exc}") from None


def _line_count_key(col: str, arr: pa.ChunkedArray) -> pd.Series:
    """A column for the file-wide line-number count: integer line numbers as they are (a 10M-line file's
    would cost seconds as text), everything else as text (:func:`_column_as_text`)."""
    if col == "line_number" and pa.types.is_integer(arr.type):
        return pd.Series(arr.to_numpy() if arr.null_count == 0 else pd.array(arr, dtype=pd.Int64Dtype()))
    return _column_as_text(col, arr)


def _whole_chunks(batches: Iterator[pa.RecordBatch], chunk_rows: int, name: str) -> Iterator[pa.Table]:
    """Record batches regrouped into tables of ``chunk_rows`` rows (the last one shorter). Columns read
    as dictionaries come in shorter batches (one per dictionary page); each chunk costs validation a
    fixed overhead, so they are joined back up."""
    held: list[pa.RecordBatch] = []
    rows = start = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except PARQUET_ERRORS as exc:
            raise InputFileError(name, f"cannot read Parquet from row {start + rows + 1} on: {exc}") from None
        held.append(batch)
        rows += batch.num_rows
        while rows >= chunk_rows:
            table = pa.Table.from_batches(held)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            held, rows, start = rest.to_batches(), rest.num_rows, start + chunk_rows
    if rows:
        yield pa.Table.from_batches(held)
