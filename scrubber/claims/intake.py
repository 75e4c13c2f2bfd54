"""Claim intake: CSV, Parquet and X12 837P files -> one DataFrame of canonical claim lines + quarantine.

Invariant (the run summary reports it): ``input_rows == len(lines) + len(quarantine)``. Every
input row ends in exactly one place; a row with several problems is one quarantine row listing
all of them; a file that cannot be read at all is one quarantine row (source_row 0) counted as
one input row; a file whose rows can be counted but whose header is unusable (missing required
columns) has each row quarantined with that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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


def _read(name: str, data: bytes, fmt: str) -> readers.RawTable:
    known_columns = set(validate.INPUT_COLUMNS)
    if fmt == "parquet":
        return readers.read_parquet(name, data, known_columns)
    if fmt == "x12":
        text, encoding, warnings = readers.decode_text(name, data)
        table = x12.read_x12(name, text)
        table.encoding = encoding
        table.warnings = warnings + table.warnings
        return table
    return readers.read_csv(name, data, known_columns)


def _intake_one(name: str, data: bytes, known: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    info: dict = {"name": name, "format": readers.sniff_format(data), "rows": 0, "accepted": 0,
                  "quarantined": 0, "error": None, "warnings": [], "encoding": None}
    lines = empty_lines().drop(columns=["line_uid"])
    try:
        table = _read(name, data, info["format"])
    except InputFileError as exc:
        info.update(rows=1, quarantined=1, error=exc.reason)
        return lines, _whole_file(name, exc.reason, exc.field or "file", _preview(data)), info
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
        if not parts:
            parts = [_whole_file(name, reason, fld, ", ".join(table.columns.values()))]
        quarantine = pd.concat(parts, ignore_index=True).sort_values("source_row", kind="stable")
        info.update(rows=len(quarantine), quarantined=len(quarantine))
        return lines, quarantine.reset_index(drop=True), info
    lines, quarantine = validate.validate_table(table, known)
    if rejected is not None and len(rejected):
        quarantine = (pd.concat([quarantine, rejected], ignore_index=True)
                      .sort_values("source_row", kind="stable").reset_index(drop=True))
    if not len(table.frame) and not len(quarantine):
        info["warnings"].append(f"{name}: no data rows")
    info.update(rows=len(lines) + len(quarantine), accepted=len(lines), quarantined=len(quarantine))
    return lines, quarantine, info


def intake(sources: Iterable[Source], *, known_modifiers: set[str] | None = None,
           first_line_uid: int = 0) -> IntakeResult:
    """Read, validate and normalise claim files.

    sources: paths, or (name, bytes) pairs (the S3 store passes bytes). Format comes from the
    content. known_modifiers: the accepted modifiers; default: every group in rules/modifiers.yaml
    of the configured rules folder. first_line_uid: line_uid of the first accepted line, so
    several intakes in one run can keep line_uid unique.

    Raises InputFileError only for a path that cannot be opened; everything wrong inside a file
    goes to quarantine.
    """
    known = {m.strip().upper() for m in (known_modifiers if known_modifiers is not None
                                         else validate.default_known_modifiers())}
    all_lines: list[pd.DataFrame] = []
    all_quarantine: list[pd.DataFrame] = []
    files: list[dict] = []
    for source in sources:
        name, data = _load(source)
        lines, quarantine, info = _intake_one(name, data, known)
        for warning in info["warnings"]:
            log.warning("%s", warning)
        if info["error"]:
            log.warning("%s: %s", name, info["error"])
        all_lines.append(lines)
        all_quarantine.append(quarantine)
        files.append(info)

    nonempty = [f for f in all_lines if len(f)]
    lines = pd.concat(nonempty, ignore_index=True) if nonempty else empty_lines().drop(columns=["line_uid"])
    lines.insert(0, "line_uid", np.arange(first_line_uid, first_line_uid + len(lines), dtype=np.int64))
    lines = lines[schemas.LINE_COLUMNS]
    q_parts = [q for q in all_quarantine if len(q)]
    quarantine = pd.concat(q_parts, ignore_index=True) if q_parts else validate.empty_quarantine()
    input_rows = sum(f["rows"] for f in files)
    result = IntakeResult(lines=lines, quarantine=quarantine, input_rows=input_rows, files=files)
    if not result.reconciles:  # a bug, never a data problem: refuse to return a result that loses rows
        raise AssertionError(f"intake does not reconcile: {input_rows} input rows, {len(lines)} lines, "
                             f"{len(quarantine)} quarantined")
    return result
