"""Claim intake: CSV, Parquet and X12 837P files -> one DataFrame of canonical claim lines + quarantine.

Invariant (the run summary reports it): ``input_rows == len(lines) + len(quarantine)``. Every
input row ends in exactly one place; a row with several problems is one quarantine row listing
all of them; a file that cannot be read at all is one quarantine row (source_row 0) counted as
one input row; a file whose rows can be counted but whose header is unusable (missing required
columns) has each row quarantined with that reason.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scrubber import schemas
from scrubber.claims import readers, validate, x12
from scrubber.errors import InputFileError

log = logging.getLogger(__name__)

Source = str | Path | tuple[str, bytes]


@dataclass
class IntakeResult:
    """What intake produced. ``files`` has one dict per input file:
    name, format, rows, accepted, quarantined, error (str or None), warnings (list[str]), encoding.
    """

    lines: pd.DataFrame
    quarantine: pd.DataFrame
    input_rows: int
    files: list[dict] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        """True when every input row is either a line or a quarantine row."""
        return self.input_rows == len(self.lines) + len(self.quarantine)


def empty_lines() -> pd.DataFrame:
    """A zero-row frame with the canonical columns and dtypes."""
    dtypes = {c: "str" for c in schemas.LINE_COLUMNS}
    dtypes |= {"line_uid": "int64", "source_row": "int64", "line_number": "int64",
               "service_date": "datetime64[ns]", "units": "float64", "charge_amount": "float64"}
    return pd.DataFrame({c: pd.Series([], dtype=dtypes[c]) for c in schemas.LINE_COLUMNS})


def _load(source: Source) -> tuple[str, bytes]:
    """(file name without folders, content). A path that cannot be opened is the caller's error."""
    if isinstance(source, tuple):
        name, data = source
        return Path(str(name)).name or str(name), bytes(data)
    path = Path(source)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise InputFileError(str(path), f"cannot open: {exc.strerror or exc}") from None


def _preview(data: bytes) -> str:
    """A short, printable glimpse of an unreadable file for the quarantine 'raw' column."""
    head = data[:200]
    if b"\x00" in head or readers._binary_reason(head):
        return f"<{len(data)} bytes: {head[:16].hex(' ')}>"
    return head.decode("utf-8", errors="replace")


def _whole_file(name: str, reason: str, fld: str, raw: str) -> pd.DataFrame:
    return validate._quarantine_dtypes(pd.DataFrame([{
        "source_file": name, "source_row": 0, "claim_id": "", "line_number": "", "field": fld,
        "value": "", "reason": reason, "raw": raw}]))


def _all_rows(table: readers.RawTable, reason: str, fld: str) -> pd.DataFrame:
    """Quarantine every row of a readable file whose header makes the rows unusable."""
    frame = table.frame
    n = len(frame)

    def col(name: str) -> np.ndarray:
        return frame[name].fillna("").to_numpy() if name in frame.columns else np.full(n, "", dtype=object)

    return validate._quarantine_dtypes(pd.DataFrame({
        "source_file": table.name, "source_row": frame["source_row"].to_numpy(),
        "claim_id": col("claim_id"), "line_number": col("line_number"), "field": fld, "value": "",
        "reason": reason, "raw": validate.raw_text(table, np.arange(n))}))


def _read_chunks(name: str, data: bytes, fmt: str, chunk_rows: int) -> Iterator[readers.RawTable]:
    """The file as RawTables of at most ``chunk_rows`` rows (big Parquet files are read batch by batch)."""
    known_columns = set(validate.INPUT_COLUMNS)
    if fmt == "parquet":
        yield from readers.read_parquet_chunks(name, data, known_columns, chunk_rows)
        return
    if fmt == "x12":
        text, encoding, warnings = readers.decode_text(name, data)
        table = x12.read_x12(name, text)
        table.encoding = encoding
        table.warnings = warnings + table.warnings
    else:
        table = readers.read_csv(name, data, known_columns)
    yield from readers.iter_chunks(table, chunk_rows)


def _new_info(name: str, data: bytes) -> dict:
    return {"name": name, "format": readers.sniff_format(data), "rows": 0, "accepted": 0,
            "quarantined": 0, "error": None, "warnings": [], "encoding": None}


#: chunks of a big file validated ahead while the oldest waits for the file-wide line-number count
VALIDATE_AHEAD = 1


def _intake_file(name: str, data: bytes, known: set[str], info: dict, chunk_rows: int,
                 dictionary_text: bool = False, memo: validate.SuiteMemo | None = None
                 ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(canonical lines, quarantine rows) per chunk of one file; ``info`` is filled in as it goes.

    A chunk is handed out once validated, repeated line numbers included; for those a big file's chunk
    waits for the file-wide count (a side thread, seconds on 10M lines), and meanwhile the next chunk
    (:data:`VALIDATE_AHEAD`) is read and validated instead of a core standing idle."""
    # the next chunk is read on a side thread while this one is validated (reading and decoding Parquet
    # releases the GIL; validation is mostly Python); errors surface in order
    tables = readers.read_ahead(_read_chunks(name, data, info["format"], chunk_rows), "intake-read")
    pending: deque[_PendingTable] = deque()
    handed_out = 0
    error: InputFileError | None = None   # the file broke: nothing after it is read or handed out
    done_reading = False
    while pending or not done_reading:
        if not done_reading:
            try:
                table = next(tables)
                pending.append(_begin_table(table, known, info, first=not (handed_out or pending),
                                            dictionary_text=dictionary_text, memo=memo))
            except StopIteration:
                done_reading = True
            except InputFileError as exc:   # the chunks before it are still handed out
                error, done_reading = exc, True
        # hand out the oldest chunk once its counts are in, or when enough are waiting, or at the end
        while pending and (done_reading or pending[0].ready() or len(pending) > VALIDATE_AHEAD):
            try:
                lines, quarantine = pending.popleft().finish()
            except InputFileError as exc:   # the file-wide count failed: no later chunk can finish
                error, done_reading = exc, True
                pending.clear()
                break
            handed_out += 1
            _count_in(info, lines, quarantine)
            yield lines, quarantine
    if error is not None:
        if not handed_out:  # nothing of the file was handed out: the file is one quarantine row
            info.update(rows=1, accepted=0, quarantined=1, error=error.reason)
            yield _no_lines(), _whole_file(name, error.reason, error.field or "file", _preview(data))
            return
        # broke part-way: the rows already handed out stand; the unreadable rest is one row
        info["error"] = error.reason
        info.update(rows=info["rows"] + 1, quarantined=info["quarantined"] + 1)
        yield _no_lines(), _whole_file(name, error.reason, error.field or "file", "")
        return
    if info["rows"] == 0 and not info["error"]:
        info["warnings"].append(f"{name}: no data rows")


def _count_in(info: dict, lines: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    info.update(rows=info["rows"] + len(lines) + len(quarantine), accepted=info["accepted"] + len(lines),
                quarantined=info["quarantined"] + len(quarantine))


def _no_lines() -> pd.DataFrame:
    return empty_lines().drop(columns=["line_uid"])


@dataclass
class _PendingTable:
    """A chunk validated but, maybe, for its repeated line numbers."""

    finish: Callable[[], tuple[pd.DataFrame, pd.DataFrame]]   # (lines, quarantine); may wait for the counts
    ready: Callable[[], bool] = lambda: True                  # whether finish would answer without waiting


def _begin_table(table: readers.RawTable, known: set[str], info: dict, *, first: bool,
                 dictionary_text: bool = False, memo: validate.SuiteMemo | None = None) -> _PendingTable:
    """Validate one RawTable (a whole file or a chunk of one), up to the line-number repeats a big
    file's chunk may have to wait for (:func:`validate.begin_validation`)."""
    name = table.name
    if first:
        info["warnings"] = list(table.warnings)
        info["encoding"] = table.encoding
    rejected = table.rejected
    if rejected is not None and len(rejected):
        rejected = validate._quarantine_dtypes(rejected.assign(source_file=name))
    missing = validate.missing_required_columns(list(table.frame.columns))
    if missing and table.format != "x12":
        reason = f"missing required column(s): {', '.join(missing)} (header: {', '.join(table.columns.values())})"
        fld = "; ".join(missing)
        info["error"] = reason
        parts = [_all_rows(table, reason, fld)] if len(table.frame) else []
        if rejected is not None and len(rejected):
            parts.append(rejected)
        if not parts and first:
            parts = [_whole_file(name, reason, fld, ", ".join(table.columns.values()))]
        if not parts:
            return _PendingTable(lambda: (_no_lines(), validate.empty_quarantine()))
        quarantine = pd.concat(parts, ignore_index=True).sort_values("source_row", kind="stable")
        return _PendingTable(lambda: (_no_lines(), quarantine.reset_index(drop=True)))
    begun = validate.begin_validation(table, known, dictionary_text=dictionary_text, memo=memo)

    def finish() -> tuple[pd.DataFrame, pd.DataFrame]:
        lines, quarantine = begun.finish()
        if rejected is not None and len(rejected):
            quarantine = (pd.concat([quarantine, rejected], ignore_index=True)
                          .sort_values("source_row", kind="stable").reset_index(drop=True))
        return lines, quarantine
    return _PendingTable(finish, begun.ready)


#: rows validated at a time; bounds intake memory on big files (a 10M-line file is ten chunks)
CHUNK_ROWS = 1_000_000


class IntakeStream:
    """Intake that hands out canonical lines chunk by chunk, so a 10M-line file is never in memory whole.

    Iterate it once for the line chunks (line_uid runs on across chunks and files); afterwards
    ``quarantine``, ``files`` and ``input_rows`` hold the whole account, and the stream has checked
    that every input row ended in exactly one place.

    ``dictionary_text``: the text columns made of each chunk's distinct values (codes, modifiers, NPIs,
    places, diagnoses...) come as Arrow dictionary columns, codes not text, for a consumer that only
    moves them (the shard spill, :class:`scrubber.shards.ShardSpill`, decodes them when it reads back).
    """

    def __init__(self, sources: Iterable[Source], *, known_modifiers: set[str] | None = None,
                 first_line_uid: int = 0, chunk_rows: int = CHUNK_ROWS, dictionary_text: bool = False) -> None:
        self.sources = list(sources)
        self.known = {m.strip().upper() for m in (known_modifiers if known_modifiers is not None
                                                  else validate.default_known_modifiers())}
        self.next_line_uid = first_line_uid
        self.chunk_rows = chunk_rows
        self.dictionary_text = dictionary_text
        self.files: list[dict] = []
        self._quarantine: list[pd.DataFrame] = []
        self.lines_out = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        memo = validate.SuiteMemo()   # a value the suite judged in one chunk or file is not shown to GX again
        for source in self.sources:
            name, data = _load(source)
            info = _new_info(name, data)
            self.files.append(info)
            for lines, quarantine in _intake_file(name, data, self.known, info, self.chunk_rows,
                                                  self.dictionary_text, memo):
                if len(quarantine):
                    self._quarantine.append(quarantine)
                if len(lines):
                    lines.insert(0, "line_uid", np.arange(self.next_line_uid, self.next_line_uid + len(lines),
                                                          dtype=np.int64))
                    self.next_line_uid += len(lines)
                    self.lines_out += len(lines)
                    yield lines[schemas.LINE_COLUMNS]
            for warning in info["warnings"]:
                log.warning("%s", warning)
            if info["error"]:
                log.warning("%s: %s", name, info["error"])
        if self.input_rows != self.lines_out + len(self.quarantine):
            # a bug, never a data problem: refuse to go on with a result that loses rows
            raise AssertionError(f"intake does not reconcile: {self.input_rows} input rows, {self.lines_out} "
                                 f"lines, {len(self.quarantine)} quarantined")

    @property
    def quarantine(self) -> pd.DataFrame:
        if len(self._quarantine) != 1:
            self._quarantine = [pd.concat(self._quarantine, ignore_index=True) if self._quarantine
                                else validate.empty_quarantine()]
        return self._quarantine[0]

    @property
    def input_rows(self) -> int:
        return sum(f["rows"] for f in self.files)


def intake(sources: Iterable[Source], *, known_modifiers: set[str] | None = None,
           first_line_uid: int = 0, chunk_rows: int = CHUNK_ROWS) -> IntakeResult:
    """Read, validate and normalise claim files, all lines in one frame (see :class:`IntakeStream`
    to take them chunk by chunk).

    sources: paths, or (name, bytes) pairs (the S3 store passes bytes). Format comes from the
    content. known_modifiers: the accepted modifiers; default: every group in rules/modifiers.yaml
    of the configured rules folder. first_line_uid: line_uid of the first accepted line, so
    several intakes in one run can keep line_uid unique.

    Raises InputFileError only for a path that cannot be opened; everything wrong inside a file
    goes to quarantine.
    """
    stream = IntakeStream(sources, known_modifiers=known_modifiers, first_line_uid=first_line_uid,
                          chunk_rows=chunk_rows)
    chunks = list(stream)
    lines = (pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0] if chunks
             else empty_lines())
    return IntakeResult(lines=lines, quarantine=stream.quarantine, input_rows=stream.input_rows, files=stream.files)
