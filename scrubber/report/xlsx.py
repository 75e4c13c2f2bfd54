"""exceptions.xlsx: the morning report as a workbook (Summary, Flags, one sheet per rule family).

Why not xlsxwriter: it writes one cell per Python call; measured here at about 100k cells per second,
so 100,000 flags (~20 columns, written on the Flags sheet and again on the family sheets) would take
~40 s. This module writes the same SpreadsheetML (ECMA-376) itself, column-wise: every column becomes
its cell XML in Arrow string kernels, text goes through a shared-string table built from the
*distinct* values only, and the zip is deflated at a fast level. A sheet is laid out and deflated a
slice of rows at a time (``SHEET_CHUNK_ROWS``), so its XML (~0.8 KB a row) is never held whole.

Safety: every text cell is a shared string (``t="s"``); nothing is ever written as a formula. Values
coming from claim files that a spreadsheet would read as a formula (leading = + - @, tab, CR) are
neutralised with a leading single quote, numbers stay numbers (``neutralise_text``).
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import pairwise
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scrubber.schemas import is_arrow_text

try:  # Intel ISA-L's deflate: the same zlib format about 4x faster at the fast levels (the XML is ~1.7 KB a flag)
    from isal import isal_zlib as _deflate
except ImportError:  # a platform without its wheels: the standard library's zlib
    _deflate = zlib

#: Excel's last row (1-based); data rows are capped one row short so the cap note fits
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL_CHARS = 32_767
FORMULA_START = re.compile(r"^[=+\-@\t\r]")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ILLEGAL_XML = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{FFFE}\x{FFFF}]"   # RE2 syntax
_EXCEL_EPOCH = np.datetime64("1899-12-30", "D")
#: data rows laid out per Arrow join and handed to the deflater (~13 MB of XML on the Flags sheet)
SHEET_CHUNK_ROWS = 16_384
#: laid-out pieces of a split sheet waiting for the deflater at most (each up to ~13 MB of XML)
_DEFLATE_QUEUE = 4
#: shared strings escaped and laid out per Arrow pass
SST_BATCH = 65_536

# cell styles (indexes into cellXfs of styles.xml below)
S_DEFAULT, S_HEADER, S_MONEY, S_INT, S_DATE, S_WRAP, S_TITLE, S_BOLD, S_BOLD_MONEY, S_NOTE = range(10)
_KIND_STYLE = {"text": S_DEFAULT, "wrap": S_WRAP, "money": S_MONEY, "int": S_INT, "number": S_DEFAULT,
               "date": S_DATE}


def neutralise_text(values: Iterable[str]) -> list[str]:
    """Prefix a single quote to strings a spreadsheet would evaluate (= + - @ tab CR), except numbers."""
    out = []
    for v in values:
        if isinstance(v, str) and FORMULA_START.match(v) and not PLAIN_NUMBER.match(v):
            out.append("'" + v)
        else:
            out.append(v)
    return out


def col_letter(index: int) -> str:
    """0-based column index -> Excel letters (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


# ------------------------------------------------------------------------------------------------
# Shared strings


class SharedStrings:
    """The workbook's shared-string table, filled with the distinct values of each column."""

    def __init__(self) -> None:
        self._chunks: list[pa.Array] = []
        self.count = 0
        self._small: dict[str, int] = {}

    def add_distinct(self, values: pa.Array | Sequence[str]) -> int:
        """Append strings (an Arrow string array or a list); returns the index of the first one."""
        arr = values if isinstance(values, pa.Array) else pa.array(list(values), type=pa.string())
        base = self.count
        self._chunks.append(arr.cast(pa.string()))
        self.count += len(arr)
        return base

    def index_of(self, text: str) -> int:
        """Index of one string (headers, summary cells), added once."""
        if text not in self._small:
            self._small[text] = self.add_distinct([text])
        return self._small[text]

    def xml(self) -> bytes:
        return b"".join(self.pieces())

    def pieces(self) -> Iterator[bytes | memoryview]:
        """The sharedStrings.xml part as a stream of pieces, a batch of strings at a time."""
        yield (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="{_NS}" '
               f'count="{self.count}" uniqueCount="{self.count}">').encode()
        batch: list[pa.Array] = []
        size = 0
        for chunk in self._chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= SST_BATCH:
                yield _shared_items(batch)
                batch, size = [], 0
        if size:
            yield _shared_items(batch)
        yield b"</sst>"



def _shared_items(chunks: list[pa.Array]) -> memoryview:
    """<si> elements of the strings: illegal XML characters dropped, cut at Excel's cell limit, escaped.

    Each step runs only where some string needs it (most batches need none: each would copy the batch).
    """
    values = pa.concat_arrays(chunks) if len(chunks) > 1 else chunks[0]
    if values.null_count:
        values = pc.fill_null(values, "")
    if pc.any(pc.match_substring_regex(values, _ILLEGAL_XML)).as_py():
        values = pc.replace_substring_regex(values, _ILLEGAL_XML, "")
    if len(values) and pc.max(pc.binary_length(values)).as_py() > EXCEL_MAX_CELL_CHARS:
        values = pc.utf8_slice_codeunits(values, 0, EXCEL_MAX_CELL_CHARS)   # Excel's cell limit
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        if pc.any(pc.match_substring(values, a)).as_py():
            values = pc.replace_substring(values, a, b)
    big = pa.large_string()                     # 64-bit offsets: a batch of long strings may pass 2 GiB
    open_tag, close_tag, sep = (pa.scalar(t, big) for t in ('<si><t xml:space="preserve">', "</t></si>", ""))
    return _buffer(pc.binary_join_element_wise(open_tag, values.cast(big), close_tag, sep))


#: first bytes of text a spreadsheet would evaluate (= + - @ tab CR; all ASCII, so a UTF-8 byte test)
_FORMULA_FIRST_BYTE = np.zeros(256, dtype=bool)
_FORMULA_FIRST_BYTE[[ord(ch) for ch in "=+-@\t\r"]] = True


def formula_mask(values: pa.Array) -> np.ndarray:
    """True where a text value starts with = + - @ tab or CR (False for missing and empty values).

    Read from the first byte of each value in the Arrow buffers: no string is copied or matched.
    """
    n = len(values)
    if not is_arrow_text(values.type):
        values = values.cast(pa.string())
    bufs = values.buffers()
    if n == 0 or bufs[2] is None:
        return np.zeros(n, dtype=bool)
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=offset_type)[values.offset: values.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8)
    starts = offsets[:-1]
    nonempty = offsets[1:] > starts
    first = np.zeros(n, dtype=np.uint8)
    first[nonempty] = data[starts[nonempty]]
    mask = _FORMULA_FIRST_BYTE[first]
    if values.null_count:
        mask &= values.is_valid().to_numpy(zero_copy_only=False)
    return mask


def neutralise_arrow(values: pa.Array) -> pa.Array:
    """``neutralise_text`` for an Arrow string array (only the suspicious values go through Python)."""
    values = values.cast(pa.string())
    mask = formula_mask(values)
    if not mask.any():
        return values
    idx = np.flatnonzero(mask)
    replacement = np.full(len(values), None, dtype=object)
    replacement[idx] = neutralise_text(values.take(pa.array(idx)).to_pylist())
    return pc.if_else(pa.array(mask), pa.array(replacement, type=pa.string()), values)


def _buffer(arr: pa.Array) -> memoryview:
    """All strings of an Arrow string array, concatenated: a view of its data buffer, no copy."""
    if len(arr) == 0:
        return memoryview(b"")
    arr = pc.fill_null(arr, "") if arr.null_count else arr
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bufs = arr.buffers()
    if bufs[2] is None:
        return memoryview(b"")
    offsets = np.frombuffer(bufs[1], dtype=offset_type)[arr.offset: arr.offset + len(arr) + 1]
    return memoryview(bufs[2])[int(offsets[0]): int(offsets[-1])]


# ------------------------------------------------------------------------------------------------
# Columns and sheets


@dataclass
class Column:
    """One column of a table sheet. kind: text | wrap | money | int | number | date."""

    header: str
    values: Any                 # pandas Series / array-like, one value per row (or None with payload)
    kind: str = "text"
    width: float = 12.0
    neutralise: bool = True     # text from input files: defuse formula-looking values
    payload: pa.Array | None = None   # encoded cell values (see encode_column), reusable across sheets

    def __len__(self) -> int:
        return len(self.payload) if self.payload is not None else len(self.values)


@dataclass
class RowCap:
    """Only the first ``rows`` rows of a sheet are laid out; ``note`` (below them) says what was left
    out and where it is."""

    rows: int
    note: str


@dataclass
class SheetSplit:
    """Part sheets of a table sheet: part ``p`` holds the rows whose ``codes`` value is ``p`` (in the
    sheet's order; -1: in no part), without column ``column``. They are laid out in the same pass as
    the whole sheet, from the same cell XML: the Flags sheet's family sheets hold the same rows again,
    and laying them out a second time was a third of the workbook's time. ``caps``: a part's
    :class:`RowCap` (None: every row of the part, up to Excel's limit)."""

    column: int
    codes: np.ndarray
    names: list[str]
    caps: list[RowCap | None] | None = None


@dataclass
class TableSheet:
    """A data sheet: header row, frozen, autofiltered; rows capped at Excel's limit with a note.
    ``split``: part sheets that follow it in the workbook (see :class:`SheetSplit`)."""

    name: str
    columns: list[Column]
    note: str | None = None     # appended below the data when rows were capped
    split: SheetSplit | None = None
    cap: RowCap | None = None   # fewer rows than Excel's limit, said in a note


@dataclass
class GridSheet:
    """A small free-form sheet (Summary): rows of cells; a cell is a value or (value, style)."""

    name: str
    rows: list[list[Any]]
    widths: list[float] = field(default_factory=list)


@dataclass
class LaterSheet:
    """A small sheet made only once the table sheets are laid out: the Summary, whose totals a run
    knows after its last lines are written, while the Flags sheets need only the flags."""

    name: str
    make: Callable[[], GridSheet]


def _text_codes(col: Column) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """A text column's code per row (-1: missing), its distinct texts (neutralised) and which of
    those are empty (one more, True, for code -1). Touches no shared state: columns can run in parallel."""
    values = col.values
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques = pa.array([str(c) for c in series.cat.categories], type=pa.string())
    else:
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = series.dt.strftime("%Y-%m-%d")
        codes, uniq = pd.factorize(series, use_na_sentinel=True)
        pa_values = getattr(getattr(uniq, "array", uniq), "_pa_array", None)
        if pa_values is not None and is_arrow_text(pa_values.type):
            uniques = (pa_values.combine_chunks() if isinstance(pa_values, pa.ChunkedArray) else pa_values
                       ).cast(pa.string())
        else:
            uniques = pa.array([u if isinstance(u, str) else _format_scalar(u) for u in uniq], type=pa.string())
    if col.neutralise and len(uniques):
        uniques = neutralise_arrow(uniques)
    empty = np.append(pc.fill_null(pc.equal(uniques, ""), True).to_numpy(zero_copy_only=False), True) \
        if len(uniques) else np.array([True])
    return codes, uniques, empty


def _shared_indexes(codes: np.ndarray, uniques: pa.Array, empty: np.ndarray, sst: SharedStrings) -> pa.Array:
    """The distinct texts added to the shared strings; each row's index into them (null: empty cell)."""
    base = sst.add_distinct(uniques)
    idx = codes.astype(np.int64) + base
    mask = (codes < 0) | empty[codes]
    return pa.array(idx, mask=mask)


def encode_column(col: Column, sst: SharedStrings) -> pa.Array:
    """The column's cell payloads (shared-string index, number or date serial; null = empty).

    Encoded once, a column can be laid out on several sheets with ``payload.take(rows)``.
    """
    if col.payload is None:
        col.payload = _payload(col, _prepared(col), sst)
    return col.payload


def encode_columns(columns: Sequence[Column], sst: SharedStrings) -> None:
    """:func:`encode_column` of each column, the factorizing and number conversions on two threads
    (Arrow's hashing releases the GIL; ~2 s for a 10M-line night's flags); the shared strings get each
    column's texts in column order, exactly as one column after another would."""
    todo = [c for c in columns if c.payload is None]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="xlsx-encode") as pool:
        prepared = list(pool.map(_prepared, todo))
    for col, done in zip(todo, prepared, strict=True):
        col.payload = _payload(col, done, sst)


def _prepared(col: Column) -> Any:
    """What encoding a column needs that touches no shared state: a text column's codes and distinct
    texts (:func:`_text_codes`), else the payload itself."""
    if col.kind in ("text", "wrap"):
        return _text_codes(col)
    return _encode_date(col) if col.kind == "date" else _encode_number(col)


def _payload(col: Column, prepared: Any, sst: SharedStrings) -> pa.Array:
    """The payload from :func:`_prepared`: a text column's texts go into the shared strings here."""
    return _shared_indexes(*prepared, sst) if col.kind in ("text", "wrap") else prepared


def _format_scalar(v: Any) -> str:
    if isinstance(v, pd.Timestamp | datetime):
        return v.date().isoformat() if isinstance(v, pd.Timestamp) or v.time() == datetime.min.time() \
            else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _encode_number(col: Column) -> pa.Array:
    series = col.values if isinstance(col.values, pd.Series) else pd.Series(col.values)
    if col.kind == "int" and pd.api.types.is_integer_dtype(series.dtype):
        # whole numbers already (line numbers, source rows; nullable ones keep their gaps): as they are
        return pa.array(series.array, type=pa.int64(), from_pandas=True)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if col.kind == "int":
        ints = np.where(bad, 0, np.rint(np.nan_to_num(values))).astype(np.int64)
        return pa.array(ints, mask=bad)
    return pa.array(values, mask=bad)


def _encode_date(col: Column) -> pa.Array:
    d = pd.to_datetime(pd.Series(col.values), errors="coerce").to_numpy(dtype="datetime64[D]")
    bad = np.isnat(d)
    serial = np.where(bad, 0, (d - _EXCEL_EPOCH).astype(np.int64))
    return pa.array(serial, mask=bad)


_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


@dataclass
class _TablePlan:
    """A table sheet ready to be laid out: payloads encoded, strings registered (thread-safe to build)."""

    columns: list[Column]
    nrows: int
    header_idx: list[int]
    note_idx: int | None


def _plan_table(sheet: TableSheet, sst: SharedStrings) -> _TablePlan:
    """Cap rows at Excel's limit, encode payloads and register header/note strings (not thread-safe).
    The payloads are left whole (part sheets may need rows past the cap); ``nrows`` is what is laid out."""
    for c in sheet.columns:
        encode_column(c, sst)
    return _capped(sheet.columns, len(sheet.columns[0]) if sheet.columns else 0, sheet.note, sst, sheet.cap)


def _capped(columns: list[Column], nrows: int, note: str | None, sst: SharedStrings,
            cap: RowCap | None = None) -> _TablePlan:
    if cap is not None and cap.rows <= nrows:
        note, nrows = f"{note or ''} {cap.note}", cap.rows
    limit = EXCEL_MAX_ROWS - 2                         # header + one row for the cap note
    if nrows > limit:
        note = (note or "") + f" Showing the first {limit:,} of {nrows:,} rows (Excel's row limit); " \
                              "the full list is in flags.csv / flags.parquet."
        nrows = limit
    return _TablePlan(columns=columns, nrows=nrows, header_idx=[sst.index_of(c.header) for c in columns],
                      note_idx=sst.index_of(note.strip()) if note else None)


def _plan_parts(sheet: TableSheet, sst: SharedStrings) -> list[_TablePlan]:
    """The plans of a split sheet's parts (after :func:`_plan_table` of the sheet itself)."""
    split = sheet.split
    assert split is not None
    columns = [c for j, c in enumerate(sheet.columns) if j != split.column]
    counts = np.bincount(split.codes[split.codes >= 0], minlength=len(split.names))
    caps = split.caps or [None] * len(counts)
    return [_capped(columns, int(n), None, sst, cap) for n, cap in zip(counts, caps, strict=True)]


def _sheet_frame(plan: _TablePlan) -> tuple[bytes, bytes, str]:
    """A table sheet's XML before its data rows and after them, and its autofilter range."""
    columns, nrows = plan.columns, plan.nrows
    last = col_letter(max(len(columns) - 1, 0))
    header = "".join(f'<c r="{col_letter(i)}1" s="{S_HEADER}" t="s"><v>{idx}</v></c>'
                     for i, idx in enumerate(plan.header_idx))
    cols = "".join(f'<col min="{i + 1}" max="{i + 1}" width="{c.width:.1f}" customWidth="1"/>'
                   for i, c in enumerate(columns))
    ref = f"A1:{last}{nrows + 1}"
    head = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_NS}" '
            f'xmlns:r="{_NS_R}"><dimension ref="{ref}"/><sheetViews><sheetView workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{cols}</cols><sheetData>'
            f'<row r="1">{header}</row>').encode()
    tail = ""
    if plan.note_idx is not None:
        r = nrows + 2
        tail = f'<row r="{r}"><c r="A{r}" s="{S_NOTE}" t="s"><v>{plan.note_idx}</v></c></row>'
    end = f'{tail}</sheetData><autoFilter ref="{ref}"/></worksheet>'.encode()
    return head, end, ref


def _table_sheet_xml(plan: _TablePlan) -> tuple[Iterator[bytes | memoryview], str]:
    """Sheet XML as a stream of pieces (head, row slices, tail) and its autofilter range.

    Each slice of rows is laid out by one Arrow join, and the pieces are deflated as they come, so a
    100k-row sheet never sits in memory whole (it is ~140 MB of XML).
    """
    head, end, ref = _sheet_frame(plan)

    def pieces() -> Iterator[bytes | memoryview]:
        yield head
        for start in range(0, plan.nrows, SHEET_CHUNK_ROWS):
            yield _rows_xml(plan.columns, start, min(plan.nrows, start + SHEET_CHUNK_ROWS))
        yield end

    return pieces(), ref


def _split_sheet_xml(plan: _TablePlan, parts: list[_TablePlan], split: SheetSplit
                     ) -> tuple[Iterator[tuple[int, bytes | memoryview]], list[str]]:
    """The XML of a split sheet (slot 0) and of its parts (slot p + 1) as a stream of (slot, piece), in
    one pass, and their autofilter ranges.

    Per slice of rows, the cells of the columns after the split column are joined once; the sheet's
    rows and each part's rows (a take of those cells) are then one more join of a few pieces each.
    Slices are laid out two at a time (Arrow releases the GIL) and handed on in order.
    """
    frames = [_sheet_frame(p) for p in (plan, *parts)]
    k = split.column
    left, key, right = plan.columns[:k], plan.columns[k], plan.columns[k + 1:]
    wanted = np.array([p.nrows for p in parts], dtype=np.int64)
    last = [int(np.flatnonzero(split.codes == p)[n - 1]) if n else -1 for p, n in enumerate(wanted)]
    end = max(plan.nrows, max(last, default=-1) + 1)
    # slices end at the sheet's own cap, so each slice is either all in the sheet or all past it
    bounds = [*range(0, plan.nrows, SHEET_CHUNK_ROWS), *range(plan.nrows, end, SHEET_CHUNK_ROWS), end]
    slices = [(start, stop) for start, stop in pairwise(bounds) if start < stop]
    # each part's rows in the slices before each slice: where its row numbers start there
    per_slice = np.array([np.bincount(split.codes[a:b][split.codes[a:b] >= 0], minlength=len(parts))
                          for a, b in slices], dtype=np.int64).reshape(len(slices), len(parts))
    before = np.cumsum(per_slice, axis=0) - per_slice

    def lay_out(i: int) -> list[tuple[int, memoryview]]:
        start, stop = slices[i]
        left_cells = _cell_parts(left, start, stop)
        right_cells = _join(_cell_parts(right, start, stop))
        out = []
        if start < plan.nrows:
            out.append((0, _row_join(start, [*left_cells, *_cell_parts([key], start, stop), right_cells])))
        codes = split.codes[start:stop]
        order = np.argsort(codes, kind="stable")
        firsts = np.searchsorted(codes[order], np.arange(len(parts) + 1))
        for p in range(len(parts)):
            take = min(int(firsts[p + 1] - firsts[p]), int(wanted[p] - before[i, p]))
            if take > 0:
                rows = pa.array(order[firsts[p]: firsts[p] + take])
                cells = [c if isinstance(c, str) else c.take(rows) for c in (*left_cells, right_cells)]
                out.append((p + 1, _row_join(int(before[i, p]), cells)))
        return out

    def pieces() -> Iterator[tuple[int, bytes | memoryview]]:
        for slot, (head, _, _) in enumerate(frames):
            yield slot, head
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="xlsx-layout") as pool:
            ahead: deque[Future[list[tuple[int, memoryview]]]] = deque()
            for i in range(len(slices)):
                ahead.append(pool.submit(lay_out, i))
                if len(ahead) > 2:
                    yield from ahead.popleft().result()
            while ahead:
                yield from ahead.popleft().result()
        for slot, (_, tail, _) in enumerate(frames):
            yield slot, tail

    return pieces(), [ref for _, _, ref in frames]


def _cell_parts(columns: list[Column], start: int, stop: int) -> list[Any]:
    """The cells of rows [start, stop) of ``columns``: constant pieces (str) and one string per row
    (Arrow arrays), to be joined row-wise."""
    parts: list[Any] = []
    for c in columns:
        style = _KIND_STYLE.get(c.kind, S_DEFAULT)
        s_attr = f' s="{style}"' if style else ""
        t_attr = ' t="s"' if c.kind in ("text", "wrap") else ""
        payload = pc.cast(c.payload.slice(start, stop - start), pa.string())
        cell = [f"<c{s_attr}{t_attr}><v>", payload, "</v></c>"]
        if payload.null_count:        # an empty cell holds its place: laid out on its own, "<c/>" where empty
            parts.append(pc.fill_null(pc.binary_join_element_wise(*cell, ""), "<c/>"))
        else:
            parts.extend(cell)
    return parts


def _join(parts: list[Any]) -> pa.Array:
    """Row-wise concatenation of the pieces; adjacent constant pieces are merged first (the join's cost
    is per piece and row)."""
    merged: list[Any] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return pc.binary_join_element_wise(*merged, "")


def _row_join(first: int, cells: list[Any]) -> memoryview:
    """<row> elements around each row's cells, numbered from data row ``first`` (0-based; sheet row
    ``first + 2``), as one buffer. The row count is that of the first array among ``cells``."""
    n = len(next(c for c in cells if not isinstance(c, str)))
    row_numbers = pc.cast(pa.array(np.arange(first + 2, first + 2 + n, dtype=np.int64)), pa.string())
    return _buffer(_join(['<row r="', row_numbers, '">', *cells, "</row>"]))


def _rows_xml(columns: list[Column], start: int, stop: int) -> memoryview:
    """The <row> elements of data rows [start, stop) (0-based; sheet rows start at 2), as one buffer.

    Each row carries its number; its cells do not carry their reference (``r="B7"``, optional in
    ECMA-376 18.3.1.4: a cell without one is the next column), and an empty cell is written as ``<c/>``
    so the cells after it keep their column. The references were 60% of the deflated workbook (row
    numbers compress badly) and a third of its CPU time.
    """
    return _row_join(start, _cell_parts(columns, start, stop))


def _inline_text(text: str) -> str:
    """A cell's text as an inline string: illegal XML characters dropped, cut at Excel's limit, escaped."""
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", text)[:EXCEL_MAX_CELL_CHARS]
    return f'<is><t xml:space="preserve">{escape(text)}</t></is>'


def _grid_sheet_xml(sheet: GridSheet) -> bytes:
    """Small sheets: written cell by cell (a few hundred cells), text as inline strings, so a sheet made
    after the shared-string table is written (the Summary) adds nothing to it."""
    parts = []
    for r, row in enumerate(sheet.rows, start=1):
        cells = []
        for c, cell in enumerate(row):
            value, style = cell if isinstance(cell, tuple) else (cell, None)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            ref = f"{col_letter(c)}{r}"
            if isinstance(value, bool):
                value = "yes" if value else "no"
            st = style if style is not None else S_DEFAULT
            s_attr = f' s="{st}"' if st else ""
            if isinstance(value, int | np.integer):
                cells.append(f'<c r="{ref}"{s_attr}><v>{int(value)}</v></c>')
            elif isinstance(value, float | np.floating):
                if not math.isfinite(float(value)):
                    continue
                cells.append(f'<c r="{ref}"{s_attr}><v>{float(value)!r}</v></c>')
            else:
                text = neutralise_text([_format_scalar(value)])[0]
                cells.append(f'<c r="{ref}"{s_attr} t="inlineStr">{_inline_text(text)}</c>')
        parts.append(f'<row r="{r}">{"".join(cells)}</row>')
    cols = "".join(f'<col min="{i + 1}" max="{i + 1}" width="{w:.1f}" customWidth="1"/>'
                   for i, w in enumerate(sheet.widths))
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_NS}" '
            f'xmlns:r="{_NS_R}"><sheetViews><sheetView workbookViewId="0"/></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/>{f"<cols>{cols}</cols>" if cols else ""}'
            f'<sheetData>{"".join(parts)}</sheetData></worksheet>').encode()


_STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="{_NS}">
<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd"/></numFmts>
<fonts count="4">
<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>
<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>
<font><b/><sz val="14"/><name val="Calibri"/><family val="2"/></font>
<font><i/><sz val="11"/><color rgb="FF7F7F7F"/><name val="Calibri"/><family val="2"/></font>
</fonts>
<fills count="3">
<fill><patternFill patternType="none"/></fill>
<fill><patternFill patternType="gray125"/></fill>
<fill><patternFill patternType="solid"><fgColor rgb="FFDCE6F1"/><bgColor indexed="64"/></patternFill></fill>
</fills>
<borders count="2">
<border><left/><right/><top/><bottom/><diagonal/></border>
<border><left/><right/><top/><bottom style="thin"><color rgb="FF95B3D7"/></bottom><diagonal/></border>
</borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="10">
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="0" fontId="1" fillId="2" borderId="1" xfId="0" applyFont="1" applyFill="1" applyBorder="1"
 applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>
<xf numFmtId="4" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="3" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1">
<alignment vertical="top" wrapText="1"/></xf>
<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="4" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1" applyNumberFormat="1"/>
<xf numFmtId="0" fontId="3" fillId="0" borderId="0" xfId="0" applyFont="1"/>
</cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>
"""


def sheet_name(text: str, taken: set[str]) -> str:
    """A valid, unique sheet name (31 chars, none of []:*?/\\)."""
    name = re.sub(r"[\[\]:*?/\\]", "_", text).strip("'")[:31] or "Sheet"
    base, i = name, 2
    while name.lower() in taken:
        suffix = f" ({i})"
        name = base[: 31 - len(suffix)] + suffix
        i += 1
    taken.add(name.lower())
    return name


def write_workbook(sheets: list[TableSheet | GridSheet | LaterSheet], sst: SharedStrings | None = None) -> bytes:
    """The .xlsx bytes of the given sheets (in order). ``sst``: the table pre-encoded columns used.

    Table sheets and the shared-string table are laid out and deflated on two threads (Arrow and
    deflate release the GIL); every step that adds to the shared-string table runs before, on the
    calling thread. A :class:`LaterSheet` is made after the table sheets (its text is inline).
    """
    sst = sst if sst is not None else SharedStrings()
    # a split sheet's parts follow it: expanded here, laid out in its pass
    order: list[TableSheet | GridSheet | LaterSheet | str] = []
    for sheet in sheets:
        order.append(sheet)
        if isinstance(sheet, TableSheet) and sheet.split is not None:
            order += sheet.split.names
    taken: set[str] = set()
    names = [sheet_name(sh if isinstance(sh, str) else sh.name, taken) for sh in order]
    plans: dict[int, _TablePlan] = {}
    parts: dict[int, list[_TablePlan]] = {}
    for i, sh in enumerate(order):
        if isinstance(sh, TableSheet):
            plans[i] = _plan_table(sh, sst)
            if sh.split is not None:
                parts[i] = _plan_parts(sh, sst)
    grids = {i: _grid_sheet_xml(sh) for i, sh in enumerate(order) if isinstance(sh, GridSheet)}

    def build(i: int) -> list[tuple[list[bytes], int, int, str | None]]:
        """Sheet ``i`` deflated (and its parts after it, when split)."""
        plan = plans.get(i)
        if i in parts:
            slot_pieces, refs = _split_sheet_xml(plan, parts[i], order[i].split)  # type: ignore[union-attr]
            return [(*member, ref) for member, ref in
                    zip(_deflate_slots(slot_pieces, len(refs)), refs, strict=True)]
        pieces, ref = _table_sheet_xml(plan) if plan is not None else (iter([grids[i]]), None)
        return [(*_deflate_pieces(pieces), ref)]

    later = [i for i, sh in enumerate(order) if isinstance(sh, LaterSheet)]
    now = [i for i, sh in enumerate(order) if i not in later and not isinstance(sh, str)]
    by_index: dict[int, tuple[list[bytes], int, int, str | None]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        shared = pool.submit(lambda: _deflate_pieces(sst.pieces()))  # complete: later sheets add nothing
        for i, members in zip(now, pool.map(build, now), strict=True):
            by_index.update(enumerate(members, start=i))
        shared_strings = shared.result()
    for i in later:
        grids[i] = _grid_sheet_xml(order[i].make())  # type: ignore[union-attr]
        by_index[i] = build(i)[0]
    built = [by_index[i] for i in range(len(order))]
    filters = [b[3] for b in built]
    sheet_entries = "".join(f'<sheet name="{escape(n, {chr(34): "&quot;"})}" sheetId="{i + 1}" r:id="rId{i + 1}"/>'
                            for i, n in enumerate(names))
    defined = "".join(
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
        f"'{escape(n.replace(chr(39), chr(39) * 2))}'!{_abs_ref(ref)}</definedName>"
        for i, (n, ref) in enumerate(zip(names, filters, strict=True)) if ref)
    workbook = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{_NS}" '
                f'xmlns:r="{_NS_R}"><bookViews><workbookView/></bookViews><sheets>{sheet_entries}</sheets>'
                f'{f"<definedNames>{defined}</definedNames>" if defined else ""}</workbook>')
    rels = "".join(f'<Relationship Id="rId{i + 1}" Type="{_NS_R}/worksheet" Target="worksheets/sheet{i + 1}.xml"/>'
                   for i in range(len(names)))
    n = len(names)
    rels += (f'<Relationship Id="rId{n + 1}" Type="{_NS_R}/styles" Target="styles.xml"/>'
             f'<Relationship Id="rId{n + 2}" Type="{_NS_R}/sharedStrings" Target="sharedStrings.xml"/>')
    ct_sheets = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(n))
    content_types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        f"{ct_sheets}"
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        "</Types>")
    root_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{_NS_R}/officeDocument" Target="xl/workbook.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
        'core-properties" Target="docProps/core.xml"/></Relationships>')
    core = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:title>Claim scrub exceptions</dc:title>'
        '<dc:creator>scrubber</dc:creator></cp:coreProperties>')
    wb_rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
               f'xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>')
    members: list[tuple[str, list[bytes], int, int]] = []
    for name, text in (("[Content_Types].xml", content_types), ("_rels/.rels", root_rels),
                       ("docProps/core.xml", core), ("xl/workbook.xml", workbook),
                       ("xl/_rels/workbook.xml.rels", wb_rels), ("xl/styles.xml", _STYLES)):
        raw = text.encode("utf-8")
        members.append((name, *_deflate_pieces([raw])))
    for i, (data, crc, size, _) in enumerate(built):
        members.append((f"xl/worksheets/sheet{i + 1}.xml", data, crc, size))
    members.append(("xl/sharedStrings.xml", *shared_strings))
    return _zip(members)


class _Deflating:
    """One zip member deflated piece by piece (raw deflate, fast level): its deflated pieces, CRC-32 and
    size. Only one piece of the (uncompressed, ~6x larger) XML is held at a time, and the compressed
    pieces are joined only once, into the zip archive."""

    def __init__(self) -> None:
        self._comp = _deflate.compressobj(1, zlib.DEFLATED, -15)
        self._out: list[bytes] = []
        self._crc = self._size = 0

    def add(self, piece: bytes | memoryview) -> None:
        self._out.append(self._comp.compress(piece))
        self._crc = _deflate.crc32(piece, self._crc)
        self._size += len(piece)

    def finish(self) -> tuple[list[bytes], int, int]:
        self._out.append(self._comp.flush())
        return self._out, self._crc, self._size


def _deflate_slots(pieces: Iterable[tuple[int, bytes | memoryview]], slots: int
                   ) -> list[tuple[list[bytes], int, int]]:
    """:func:`_deflate_pieces` of several members whose pieces come interleaved as (member, piece).

    The pieces are deflated on a thread of their own while the caller's thread makes the next ones
    (both release the GIL); a few pieces at most wait, so memory stays bounded.
    """
    members = [_Deflating() for _ in range(slots)]
    waiting: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deflate") as deflater:  # one: pieces in order
        for slot, piece in pieces:
            waiting.append(deflater.submit(members[slot].add, piece))
            while len(waiting) > _DEFLATE_QUEUE or (waiting and waiting[0].done()):
                waiting.popleft().result()
        for future in waiting:
            future.result()
    return [member.finish() for member in members]


def _deflate_pieces(pieces: Iterable[bytes | memoryview]) -> tuple[list[bytes], int, int]:
    """Raw deflate stream (fast level, as a list of pieces), CRC-32 and size of a zip member, compressed
    as the pieces come (:class:`_Deflating`)."""
    member = _Deflating()
    for piece in pieces:
        member.add(piece)
    return member.finish()


def _zip(members: list[tuple[str, list[bytes], int, int]]) -> bytes:
    """A zip archive of pre-deflated members (name, deflated data in pieces, crc, size), so the members
    can be compressed in parallel. Classic (non-zip64) headers: members must stay under 4 GiB."""
    out: list[bytes] = []
    central = []
    offset = 0
    dos_time, dos_date = 0, (2020 - 1980) << 9 | 1 << 5 | 1      # fixed 2020-01-01: reproducible bytes
    for name, data, crc, size in members:
        deflated = sum(len(piece) for piece in data)
        if size >= 0xFFFFFFFF or deflated >= 0xFFFFFFFF:
            raise ValueError(f"{name}: {size:,} bytes is too large for an xlsx member")
        fname = name.encode("utf-8")
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x0800, 8, dos_time, dos_date, crc, deflated,
                            size, len(fname), 0) + fname
        out += [local, *data]
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x0800, 8, dos_time, dos_date, crc,
                                   deflated, size, len(fname), 0, 0, 0, 0, 0, offset) + fname)
        offset += len(local) + deflated
    size_cd = sum(len(entry) for entry in central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), size_cd, offset, 0)
    return b"".join([*out, *central, end])


def _abs_ref(ref: str) -> str:
    a, b = ref.split(":")
    m1 = re.match(r"([A-Z]+)(\d+)", a)
    m2 = re.match(r"([A-Z]+)(\d+)", b)
    assert m1 and m2
    return f"${m1.group(1)}${m1.group(2)}:${m2.group(1)}${m2.group(2)}"


# ------------------------------------------------------------------------------------------------
# The exceptions workbook

#: Flags sheet layout: (column in the flags frame, header, kind, width)
FLAG_SHEET_COLUMNS: list[tuple[str, str, str, float]] = [
    ("amount_at_risk", "$ at risk", "money", 11),
    ("severity", "Severity", "text", 9),
    ("rule_family", "Family", "text", 15),
    ("rule_id", "Rule", "text", 18),
    ("message", "What is wrong", "wrap", 60),
    ("fix", "How to fix", "wrap", 40),
    ("claim_id", "Claim", "text", 14),
    ("line_number", "Line", "int", 6),
    ("patient_id", "Patient", "text", 14),
    ("service_date", "Date of service", "date", 12),
    ("hcpcs", "Code", "text", 8),
    ("modifiers", "Modifiers", "text", 10),
    ("units", "Units", "number", 7),
    ("place_of_service", "POS", "text", 6),
    ("expected_allowed", "Expected allowed", "money", 12),
    ("rendering_npi", "Rendering NPI", "text", 12),
    ("payer", "Payer", "text", 10),
    ("carc", "Expected CARC", "text", 12),
    ("related_claim_id", "Related claim", "text", 14),
    ("related_line_number", "Related line", "int", 8),
    ("reference_release", "Reference release", "text", 16),
    ("source_file", "Source file", "text", 18),
    ("source_row", "Source row", "int", 8),
]


def _flag_columns(frame: pd.DataFrame) -> list[Column]:
    return [Column(header, frame[name], kind, width) for name, header, kind, width in _present(frame)]


#: severity order of the report (unknown or missing severities sort after these)
_SEVERITY_RANK = {"deny": 0, "review": 1, "info": 2}


def flag_order(flags: pd.DataFrame) -> np.ndarray:
    """Row positions of ``flags`` in report order (see ``sort_flags``)."""
    n = len(flags)
    if "severity" in flags.columns:      # rank the distinct severities, not every row
        codes, uniques = pd.factorize(flags["severity"])
        ranks = np.array([_SEVERITY_RANK.get(u, np.nan) for u in uniques] + [np.nan], dtype=np.float64)
        sev = ranks[codes]               # code -1 (missing) takes the trailing NaN
    else:
        sev = np.zeros(n)
    risk = -pd.to_numeric(flags.get("amount_at_risk", 0), errors="coerce").fillna(0)
    risk = np.broadcast_to(np.asarray(risk), (n,))
    return np.lexsort((np.arange(n), sev, risk))


def sort_flags(flags: pd.DataFrame) -> pd.DataFrame:
    """Most money first; ties by severity (deny, review, info), then claim and line.

    Flags already in that order come back as they are: no copy of a frame that is sorted (the report
    sorts once and its writers ask again).
    """
    if len(flags) == 0:
        return flags
    order = flag_order(flags)
    if np.array_equal(order, np.arange(len(flags))):
        return flags
    return flags.iloc[order]


def _money(v: Any) -> tuple[float, int]:
    return (float(v), S_MONEY)


def summary_sheet(summary: dict) -> GridSheet:
    """Run info, reconciliation, dollars and breakdowns by family, severity and payer."""
    counts = summary.get("counts", {})
    dollars = summary.get("dollars", {})
    rec = summary.get("reconciliation", {})
    rows: list[list[Any]] = [
        [("Claim scrub exceptions", S_TITLE)],
        ["Run", summary.get("run_id"), "Run date", summary.get("run_date")],
        [],
        [("Totals", S_BOLD)],
        ["Input rows", (counts.get("input_rows", 0), S_INT)],
        ["Scrubbed lines", (counts.get("scrubbed_lines", 0), S_INT)],
        ["Quarantined rows", (counts.get("quarantined_rows", 0), S_INT)],
        ["Reconciles (input = scrubbed + quarantined)", "yes" if rec.get("balanced") else
         f"NO: difference {rec.get('difference')}"],
        ["Flagged lines", (counts.get("flagged_lines", 0), S_INT)],
        ["Flags", (counts.get("flags", 0), S_INT)],
        ["Expected allowed, all lines", _money(dollars.get("expected_allowed_total", 0.0))],
        ["Dollars at risk (each line once)", (float(dollars.get("amount_at_risk_total", 0.0)), S_BOLD_MONEY)],
        [],
    ]
    for title, count_key, risk_key in (("By rule family", "flags_by_family", "at_risk_by_family"),
                                       ("By severity", "flags_by_severity", "at_risk_by_severity"),
                                       ("By payer", "flags_by_payer", "at_risk_by_payer")):
        rows.append([(title, S_BOLD), ("Flags", S_HEADER), ("$ at risk", S_HEADER)])
        by_count = counts.get(count_key, {}) or {}
        by_risk = dollars.get(risk_key, {}) or {}
        keys = list(dict.fromkeys([*by_risk.keys(), *by_count.keys()]))
        for k in keys:
            rows.append([k, (by_count.get(k, 0), S_INT), _money(by_risk.get(k, 0.0))])
        rows.append([])
    rows.append([(dollars.get("at_risk_basis", ""), S_NOTE)])
    rows.append([])
    rows.append([("Reference releases used", S_BOLD)])
    for kind, rels in (summary.get("reference_releases") or {}).items():
        rows.append([kind, ", ".join(rels) if isinstance(rels, list) else str(rels)])
    if summary.get("timings"):
        rows.append([])
        rows.append([("Timings (s)", S_BOLD)])
        for k, v in summary["timings"].items():
            rows.append([k, float(v)])
    return GridSheet("Summary", rows, widths=[44, 22, 16, 16])


def build_exceptions_xlsx(flags: pd.DataFrame, summary: dict | Callable[[], dict], *,
                          info_rows: int | None = None) -> bytes:
    """Summary sheet, Flags sheet (by $ at risk), one sheet per rule family present.

    Each flag column is encoded once; the family sheets are parts of the Flags sheet (:class:`SheetSplit`),
    laid out in its pass from the same cell XML.
    ``summary`` may be a callable giving it: it is then asked for only once the flag sheets are laid
    out, so a run can start its workbook before its totals are known.
    ``info_rows``: at most this many ``info`` flags on each sheet (None: all, up to Excel's row limit).
    Every deny and review flag is laid out; info flags (no money at risk, last in report order) can be
    most of a big night's flags (an NCCI pair bypassed by 59 on every E/M-25 with a procedure), and a
    workbook of a million of them is one nobody can open. A sheet that leaves some out says so.
    """
    ordered = sort_flags(flags).reset_index(drop=True)
    families: list[tuple[str, int]] = []
    fam_codes, fam_values = np.zeros(0, dtype=np.int64), []
    if len(ordered) and "rule_family" in ordered.columns:
        fam_codes, fam_values = pd.factorize(ordered["rule_family"])
        families = sorted((f, code) for code, f in enumerate(fam_values) if isinstance(f, str))
    info = _info_cap(ordered, fam_codes, info_rows)
    if info is not None and len(info.kept) < len(ordered):
        ordered = ordered.take(info.kept).reset_index(drop=True)
        fam_codes = fam_codes[info.kept] if len(fam_codes) else fam_codes
    sst = SharedStrings()
    columns = _flag_columns(ordered)
    encode_columns(columns, sst)
    first = (LaterSheet("Summary", lambda: summary_sheet(summary())) if callable(summary)
             else summary_sheet(summary))
    flags_sheet = TableSheet("Flags", columns, cap=info.sheet if info is not None else None)
    if families:
        # part p: the family sorted p-th (codes of missing or non-text families: in no part)
        part_of = np.full(len(fam_values) + 1, -1, dtype=np.int64)
        part_of[[code for _, code in families]] = np.arange(len(families))
        family_column = [name for name, *_ in _present(ordered)].index("rule_family")
        caps = [info.families.get(code) for _, code in families] if info is not None else None
        flags_sheet.split = SheetSplit(family_column, part_of[fam_codes], [f for f, _ in families], caps)
    sheets: list[TableSheet | GridSheet | LaterSheet] = [first, flags_sheet]
    return write_workbook(sheets, sst)


@dataclass
class _InfoCap:
    """Which flags in report order go into the workbook, and the caps of the sheets that leave some out."""

    kept: np.ndarray                                  # row positions, in order
    sheet: RowCap | None                              # of the Flags sheet
    families: dict[int, RowCap] = field(default_factory=dict)   # by rule_family code


def _info_cap(ordered: pd.DataFrame, fam_codes: np.ndarray, info_rows: int | None) -> _InfoCap | None:
    """The flags of a workbook with at most ``info_rows`` info flags per sheet: every other flag, the
    first ``info_rows`` info flags overall (the Flags sheet) and the first ``info_rows`` of each family
    (its sheet). None when nothing is left out.

    Report order puts info flags last (they carry no money at risk and rank after deny and review), so
    each sheet's first rows are the ones it keeps. Should that ever not hold, nothing is left out."""
    if info_rows is None or "severity" not in ordered.columns:
        return None
    info_rows = max(int(info_rows), 0)
    is_info = (ordered["severity"] == "info").to_numpy(dtype=bool, na_value=False)
    n_info = int(is_info.sum())
    if n_info <= info_rows or bool((np.diff(is_info.view(np.int8)) < 0).any()):
        return None
    rank = np.cumsum(is_info)                         # an info flag's rank among info flags, from 1
    keep = ~is_info | (rank <= info_rows)
    families: dict[int, RowCap] = {}
    if len(fam_codes):
        fam_rank = pd.Series(is_info.astype(np.int64)).groupby(fam_codes).cumsum().to_numpy()
        keep |= is_info & (fam_rank <= info_rows)
        known = fam_codes >= 0
        rows = np.bincount(fam_codes[known], minlength=int(fam_codes.max(initial=-1)) + 1)
        infos = np.bincount(fam_codes[known & is_info], minlength=len(rows))
        families = {code: RowCap(int(rows[code] - infos[code]) + info_rows, _info_note(info_rows, int(infos[code])))
                    for code in np.flatnonzero(infos > info_rows).tolist()}
    return _InfoCap(np.flatnonzero(keep), RowCap(len(ordered) - n_info + info_rows, _info_note(info_rows, n_info)),
                    families)


def _info_note(shown: int, total: int) -> str:
    what = f"the first {shown:,} of {total:,} info flags" if shown else f"none of the {total:,} info flags"
    return (f"Every deny and review flag is above; {what} (no money at risk). "
            "Every flag is in flags.csv / flags.parquet.")


def _present(frame: pd.DataFrame) -> list[tuple[str, str, str, float]]:
    return [spec for spec in FLAG_SHEET_COLUMNS if spec[0] in frame.columns]
