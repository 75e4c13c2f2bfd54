"""NCCI procedure-to-procedure (PTP) edits, practitioner table (``ccipra``): TXT parts -> canonical table.

CMS publishes the practitioner table as four parts ``ccipra-v{VVV}r{R}-f1..f4`` (each zipped; the
loader expands zips and hands us one member). The TXT layout (billing-domain 4.1, verified on a
v32.2 f1 excerpt): line 1 a CPT copyright notice, line 2 ``Column1/Column2 Edits``, lines 3-6 a
header wrapped over four lines, tab-separated data from line 7, CRLF line endings. A full part is
~640k rows, so parsing is done by Arrow's multi-threaded CSV reader and vectorised checks; the slow
per-line scan only runs to *locate* an error once the fast path has found one.

Release identity comes from the file name: ``medicare-ncci-2025q4-...-ccipra-v313r0-f1`` gives
release ``PTP-2025Q4``. When only the version is known (``ccipra-v322r0-f1``) the quarter is inferred
from the observed numbering v3YQ (billing-domain 4.1, [UNVERIFIED]) and a warning says so.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import date
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from scrubber.errors import InputFileError
from scrubber.reference.base import ParsedTable, Parser, quarter_start
from scrubber.schemas import PTP_COLUMNS

TABLE = "ptp"
HEADER_LINES = 6
FIRST_DATA_LINE = HEADER_LINES + 1

#: canonical column -> the CMS header text (the four wrapped header lines joined); used in errors.
CMS_FIELDS: dict[str, str] = {
    "column_1": "Column 1",
    "column_2": "Column 2",
    "prior_1996": "*=in existence prior to 1996",
    "effective_date": "Effective Date",
    "deletion_date": "Deletion Date",
    "modifier_indicator": "Modifier",
    "rationale": "PTP Edit Rationale",
}
_RAW_COLUMNS = list(CMS_FIELDS)
#: first physical header line (line 3), cell by cell
_HEADER_FIRST_LINE = ["Column 1", "Column 2", "*=in existence", "Effective", "Deletion", "Modifier",
                      "PTP Edit Rationale"]
TITLE_LINE = "Column1/Column2 Edits"

#: Observed version numbering (billing-domain 4.1, [UNVERIFIED]): v30x = 2024, v31x = 2025, v32x = 2026,
#: last digit = quarter - 1. Change VERSION_EPOCH if CMS is seen to number differently.
VERSION_EPOCH: tuple[int, int] = (30, 2024)   # (first two digits, year they stand for)
VALID_INDICATORS = ("0", "1", "9")
#: published extra columns: source_row (1-based physical line) and part ("f1".."f4", so the loader
#: can replace one part of a release re-sent alone); CHECK_DELETION is a validation-only helper.
CHECK_DELETION = "_deletion_unless_9"
#: dates outside this range are typos, not edits (and would not fit datetime64[ns])
DATE_RANGE = (date(1985, 1, 1), date(2200, 12, 31))

_YEAR_QUARTER_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_ ]?q([1-4])(?!\d)", re.IGNORECASE)
_VERSION_RE = re.compile(r"(ccipra|ccioph)[-_ ]?(v(\d{3})r(\d+))(?:[-_ ]?f(\d+))?", re.IGNORECASE)


# --- release identity ------------------------------------------------------------------------------

def infer_year_quarter(version_digits: str, epoch: tuple[int, int] = VERSION_EPOCH) -> tuple[int, int] | None:
    """Year and quarter from a 3-digit version (``"322"`` -> 2026 Q3) under the v3YQ pattern."""
    if len(version_digits) != 3 or not version_digits.isdigit():
        return None
    series, last = int(version_digits[:2]), int(version_digits[2])
    if last > 3:
        return None
    return epoch[1] + (series - epoch[0]), last + 1


def release_identity(name: str) -> tuple[str | None, date | None, dict, list[str]]:
    """(release, effective_from, meta, warnings) from a file name (or ``archive.zip!member`` path)."""
    meta: dict = {}
    warnings: list[str] = []
    year_quarter: tuple[int, int] | None = None
    found = _YEAR_QUARTER_RE.search(name)
    if found:
        year_quarter = (int(found.group(1)), int(found.group(2)))
    version = None
    for match in _VERSION_RE.finditer(name):   # the member name (last match) is the most specific
        version = match
    if version:
        meta["version"] = version.group(2).lower()
        if version.group(5):
            meta["part"] = f"f{int(version.group(5))}"
        inferred = infer_year_quarter(version.group(3))
        if year_quarter is None and inferred is not None:
            year_quarter = inferred
            warnings.append(
                f"{name}: release quarter {inferred[0]}Q{inferred[1]} inferred from version "
                f"{meta['version']} by the pattern v3YQ (v30x = 2024, last digit = quarter - 1), which is "
                "not confirmed by CMS; name the file medicare-ncci-YYYYqN-... to state it")
        elif year_quarter is not None and inferred is not None and inferred != year_quarter:
            warnings.append(
                f"{name}: version {meta['version']} would mean {inferred[0]}Q{inferred[1]} by the usual "
                f"numbering, but the name says {year_quarter[0]}Q{year_quarter[1]}; using the name")
    if year_quarter is None:
        warnings.append(f"{name}: no release quarter in the file name (expected medicare-ncci-YYYYqN-... "
                        "or ccipra-vVVVrR-fN); pass the release explicitly")
        return None, None, meta, warnings
    meta["year"], meta["quarter"] = year_quarter
    return (f"PTP-{year_quarter[0]}Q{year_quarter[1]}", quarter_start(*year_quarter), meta, warnings)


# --- sniff / header --------------------------------------------------------------------------------

def _split_lines(head: bytes, count: int) -> list[str]:
    return head.decode("latin-1").replace("\r\n", "\n").replace("\r", "\n").split("\n")[:count]


def sniff_txt(name: str, head: bytes) -> bool:
    """A PTP TXT part: line 2 is ``Column1/Column2 Edits`` and line 3 starts ``Column 1<TAB>Column 2``."""
    if head[:2] == b"PK":
        return False
    lines = _split_lines(head[:8192], 3)
    return (len(lines) == 3 and lines[1].split("\t")[0].strip().lower() == TITLE_LINE.lower()
            and [c.strip().lower() for c in lines[2].split("\t")[:2]] == ["column 1", "column 2"])


def _check_header(name: str, lines: list[str]) -> None:
    if len(lines) < HEADER_LINES:
        raise InputFileError(name, f"file ends inside the {HEADER_LINES}-line PTP header "
                             f"({len(lines)} lines found)", row=len(lines) + 1)
    if lines[1].split("\t")[0].strip().lower() != TITLE_LINE.lower():
        raise InputFileError(name, f"line 2 should be {TITLE_LINE!r}, found {lines[1].strip()[:60]!r}", row=2)
    cells = [c.strip() for c in lines[2].split("\t")]
    for i, expected in enumerate(_HEADER_FIRST_LINE):
        found = cells[i] if i < len(cells) else ""
        if found.lower() != expected.lower():
            raise InputFileError(name, f"header cell {i + 1} should be {expected!r}, found {found!r}",
                                 row=3, field=expected)


# --- parse -------------------------------------------------------------------------------------------

def _body_offset(content: bytes) -> tuple[int, list[str]]:
    """Byte offset of line 7 and the decoded header lines (fewer than six if the file ends early)."""
    pos = 0
    for _ in range(HEADER_LINES):
        nl = content.find(b"\n", pos)
        if nl < 0:
            lines = _split_lines(content, HEADER_LINES)
            return len(content), lines[:-1] if lines and lines[-1] == "" else lines
        pos = nl + 1
    return pos, _split_lines(content[:pos], HEADER_LINES)


def _locate_bad_line(name: str, body: str, first_line: int) -> InputFileError:
    """Slow path: find the first data line without exactly 7 tab-separated fields."""
    for i, line in enumerate(body.split("\n")):
        line = line.rstrip("\r")
        if not line:                      # the reader skips empty lines too
            continue
        fields = line.split("\t")
        if len(fields) < len(_RAW_COLUMNS):
            missing = CMS_FIELDS[_RAW_COLUMNS[len(fields)]]
            return InputFileError(name, f"truncated row: {len(fields)} tab-separated fields, expected "
                                  f"{len(_RAW_COLUMNS)} ({line[:80]!r})", row=first_line + i, field=missing)
        if len(fields) > len(_RAW_COLUMNS):
            return InputFileError(name, f"{len(fields)} tab-separated fields, expected {len(_RAW_COLUMNS)} "
                                  f"({line[:80]!r})", row=first_line + i, field=CMS_FIELDS["rationale"])
    return InputFileError(name, "the data lines could not be read as tab-separated text", row=first_line)


def _physical_rows(body: bytes, n_rows: int, first_line: int) -> np.ndarray:
    """1-based physical line number of each non-blank data line (the reader skips blank lines)."""
    physical = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    if physical == n_rows:                       # no blank lines: the common, fast case
        return np.arange(first_line, first_line + n_rows, dtype=np.int64)
    buf = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if not body.endswith(b"\n"):
        ends = np.append(ends, len(body))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    has_cr = np.zeros(len(ends), dtype=bool)
    nonzero = lengths > 0
    has_cr[nonzero] = buf[ends[nonzero] - 1] == 13
    blank = lengths - has_cr <= 0
    return (np.flatnonzero(~blank) + first_line)[:n_rows]


def _read_table(name: str, body: bytes, first_line: int) -> pa.Table:
    """Arrow's multi-threaded reader; all columns text. CMS text is ASCII: stray Windows-1252 bytes
    (invalid UTF-8) are transcoded and the read retried rather than failing the file."""
    options = dict(
        read_options=pacsv.ReadOptions(column_names=_RAW_COLUMNS, block_size=8 << 20),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                         ignore_empty_lines=True),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(_RAW_COLUMNS, pa.string()),
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    try:
        return pacsv.read_csv(io.BytesIO(body), **options)
    except pa.ArrowInvalid as exc:
        if "utf8" not in str(exc).lower():
            raise _locate_bad_line(name, body.decode("cp1252", errors="replace"), first_line) from None
    body = body.decode("cp1252", errors="replace").encode("utf-8")
    try:
        return pacsv.read_csv(io.BytesIO(body), **options)
    except pa.ArrowInvalid:
        raise _locate_bad_line(name, body.decode("utf-8", errors="replace"), first_line) from None


def _first_bad(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Index of the first True in a boolean array (nulls count as False), or None."""
    if not pc.any(mask).as_py():
        return None
    return int(np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))[0])


def _parse_dates(name: str, column: str, values: pa.Array, rows: np.ndarray, *, star_ok: bool) -> pa.Array:
    """``YYYYMMDD`` strings -> timestamp[s] (``*`` -> null where allowed); InputFileError on the first bad one."""
    star = pc.equal(values, "*") if star_ok else None
    shaped = pc.and_(pc.equal(pc.utf8_length(values), 8), pc.utf8_is_digit(values))
    if star is not None:
        shaped = pc.or_(shaped, star)
    parsed = pc.strptime(pc.if_else(star, None, values) if star is not None else values,
                         format="%Y%m%d", unit="s", error_is_null=True)
    lo, hi = (pa.scalar(pd.Timestamp(d), type=pa.timestamp("s")) for d in DATE_RANGE)
    in_range = pc.and_(pc.greater_equal(parsed, lo), pc.less_equal(parsed, hi))
    ok = pc.and_kleene(shaped, in_range) if star is None else pc.or_kleene(star, pc.and_kleene(shaped, in_range))
    bad = _first_bad(pc.invert(pc.fill_null(ok, False)))
    if bad is not None:
        raise InputFileError(name, f"{values[bad].as_py()!r} is not a date (YYYYMMDD"
                             f"{', or * for none' if star_ok else ''}, {DATE_RANGE[0].year}-{DATE_RANGE[1].year})",
                             row=int(rows[bad]), field=CMS_FIELDS[column])
    return parsed


def parse_txt(name: str, content: bytes) -> ParsedTable:
    """Parse one practitioner PTP TXT part into the canonical ``ptp`` table (+ ``source_row``)."""
    if not content or content.isspace():
        raise InputFileError(name, "empty file (expected an NCCI PTP TXT part)", row=1)
    offset, header = _body_offset(content)
    _check_header(name, header)
    if re.search(r"ccioph|outpatient[-_ ]?hospital", name, re.IGNORECASE):
        raise InputFileError(name, "this is the outpatient-hospital PTP table (ccioph); professional "
                             "claims use the practitioner table (ccipra)")
    body = content[offset:]
    if not body or body.isspace():
        raise InputFileError(name, "no PTP edits after the header", row=FIRST_DATA_LINE)
    table = _read_table(name, body, FIRST_DATA_LINE)
    if table.num_rows == 0:
        raise InputFileError(name, "no PTP edits after the header", row=FIRST_DATA_LINE)
    table = table.combine_chunks()
    rows = _physical_rows(body, table.num_rows, FIRST_DATA_LINE)
    col = {c: pc.utf8_trim_whitespace(table[c].chunk(0) if table[c].num_chunks else pa.array([], pa.string()))
           for c in _RAW_COLUMNS}

    for code_col in ("column_1", "column_2"):
        bad = _first_bad(pc.equal(col[code_col], ""))
        if bad is not None:
            raise InputFileError(name, "empty HCPCS code", row=int(rows[bad]), field=CMS_FIELDS[code_col])
    bad = _first_bad(pc.invert(pc.is_in(col["modifier_indicator"], pa.array(VALID_INDICATORS))))
    if bad is not None:
        raise InputFileError(name, f"modifier indicator {col['modifier_indicator'][bad].as_py()!r} is not "
                             "0, 1 or 9", row=int(rows[bad]), field=CMS_FIELDS["modifier_indicator"])
    bad = _first_bad(pc.invert(pc.is_in(col["prior_1996"], pa.array(["", "*"]))))
    if bad is not None:
        raise InputFileError(name, f"{col['prior_1996'][bad].as_py()!r} should be '*' or blank",
                             row=int(rows[bad]), field=CMS_FIELDS["prior_1996"])
    effective = _parse_dates(name, "effective_date", col["effective_date"], rows, star_ok=False)
    deletion = _parse_dates(name, "deletion_date", col["deletion_date"], rows, star_ok=True)

    release, effective_from, meta, warnings = release_identity(name)
    part = meta.get("part") or PurePosixPath(name.split("!")[-1]).stem
    indicator9 = pc.equal(col["modifier_indicator"], "9")
    out = pa.table({
        "column_1": col["column_1"], "column_2": col["column_2"], "prior_1996": col["prior_1996"],
        "effective_date": effective.cast(pa.timestamp("ns")), "deletion_date": deletion.cast(pa.timestamp("ns")),
        "modifier_indicator": col["modifier_indicator"], "rationale": col["rationale"],
        "source_row": pa.array(rows, type=pa.int64()),
        "part": pa.repeat(pa.scalar(part, pa.string()), table.num_rows),
        # validation helper (not published: the loader drops "_" columns): the deletion date where the
        # edit is a real one, so "deletion >= effective unless indicator 9" is a plain GX pair check
        CHECK_DELETION: pc.if_else(indicator9, pa.scalar(None, pa.timestamp("ns")),
                                   deletion.cast(pa.timestamp("ns"))),
    }).select([*PTP_COLUMNS, "source_row", "part", CHECK_DELETION])
    return ParsedTable(table=TABLE, frame=out.to_pandas(), source=name, release=release,
                       effective_from=effective_from, meta=meta, warnings=warnings)


PARSERS: list[Parser] = [Parser(name="NCCI PTP practitioner TXT", table=TABLE, sniff=sniff_txt, parse=parse_txt)]


# --- expectations (Great Expectations 1.x) ------------------------------------------------------------

HCPCS_REGEX = r"^[A-Z0-9]{5}$"


def ptp_expectations() -> list:
    """Data-quality rules for one PTP part; kept to a few vectorised ones (2.5M rows per release)."""
    import great_expectations as gx  # lazy: a 3-5 s import only validation needs

    return [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="column_1", regex=HCPCS_REGEX),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="column_2", regex=HCPCS_REGEX),
        gx.expectations.ExpectColumnValuesToBeInSet(column="modifier_indicator", value_set=list(VALID_INDICATORS)),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="effective_date"),
        # An edit ends on or after it starts, except indicator 9 (deleted retroactively: CMS prints the
        # deletion equal to the effective date, but the indicator alone already voids the edit).
        # (a pandas row_condition would say this directly but costs ~3x on 2.5M rows, hence the helper)
        gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=CHECK_DELETION, column_B="effective_date", or_equal=True,
            ignore_row_if="either_value_is_missing"),
    ]


EXPECTATIONS: dict[str, Callable[[], list]] = {TABLE: ptp_expectations}
