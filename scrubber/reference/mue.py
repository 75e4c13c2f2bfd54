"""Medically unlikely edits (MUE), practitioner table: CMS CSV / XLSX -> canonical ``mue`` table.

Layout (billing-domain 5.1, verified on the 07-01-2026 excerpt): the first CSV record is a quoted
AMA notice with embedded line breaks, the second is the header whose first cell also holds a line
break (``"HCPCS/\\nCPT Code"``), then one record per code. The bytes are Latin-1/Windows-1252 (the
notice has a single 0xAE byte). So: decode leniently, read with a real CSV parser, find the header
by its cells (not by position), and take the MAI as the leading digit of e.g.
``"2 Date of Service Edit: Policy"``. The release comes from the name ``..._Eff_07-01-2026``.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import date

import pandas as pd

from scrubber.errors import InputFileError
from scrubber.reference.base import ParsedTable, Parser
from scrubber.schemas import MUE_COLUMNS

TABLE = "mue"
#: canonical column -> CMS header text (line breaks in the header cell collapsed to one space)
CMS_FIELDS: dict[str, str] = {
    "hcpcs": "HCPCS/CPT Code",
    "mue_value": "Practitioner Services MUE Values",
    "mai": "MUE Adjudication Indicator",
    "rationale": "MUE Rationale",
}
#: header cells compared with all whitespace removed, lower case
_HEADER_KEYS: dict[str, str] = {
    "hcpcs/cptcode": "hcpcs",
    "practitionerservicesmuevalues": "mue_value",
    "mueadjudicationindicator": "mai",
    "muerationale": "rationale",
}
#: the other two MUE tables CMS publishes; not for professional claims
_OTHER_TABLES = {"outpatienthospitalservicesmuevalues": "Outpatient Hospital Services",
                 "dmesupplierservicesmuevalues": "DME Supplier Services"}
HEADER_SEARCH_RECORDS = 20
MAX_ROWS = 30_000

_EFF_RE = re.compile(r"eff(?:ective)?[-_ ]?(\d{1,2})[-_.](\d{1,2})[-_.](\d{4})", re.IGNORECASE)
_YEAR_QUARTER_RE = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_ ]?q([1-4])(?!\d)", re.IGNORECASE)
_MAI_PATTERN = r"^\s*(\d)"


def _key(cell: object) -> str:
    return re.sub(r"\s+", "", str(cell if cell is not None else "")).lower()


# --- release identity ------------------------------------------------------------------------------

def release_identity(name: str) -> tuple[str | None, date | None, dict, list[str]]:
    """(release, effective_from, meta, warnings) from a name like ``..._Eff_07-01-2026.csv``."""
    warnings: list[str] = []
    found = _EFF_RE.search(name)
    if found:
        month, day, year = (int(g) for g in found.groups())
        try:
            effective = date(year, month, day)
        except ValueError:
            raise InputFileError(name, f"the effective date in the file name ({found.group(0)}) is not a date") \
                from None
        quarter = (month - 1) // 3 + 1
        if (month - 1) % 3 or day != 1:
            warnings.append(f"{name}: effective {effective.isoformat()} is not a quarter start (off-cycle file); "
                            f"filed under {year}Q{quarter}")
        return f"MUE-{year}Q{quarter}", effective, {"year": year, "quarter": quarter}, warnings
    found = _YEAR_QUARTER_RE.search(name)
    if found:
        year, quarter = int(found.group(1)), int(found.group(2))
        return (f"MUE-{year}Q{quarter}", date(year, 3 * quarter - 2, 1), {"year": year, "quarter": quarter},
                warnings)
    warnings.append(f"{name}: no effective date in the file name (expected ..._Eff_MM-DD-YYYY); "
                    "pass the release explicitly")
    return None, None, {}, warnings


# --- shared record handling --------------------------------------------------------------------------

def _find_header(name: str, records: Iterator[tuple[int, list]]) -> tuple[int, dict[str, int]]:
    """(physical row of the header, canonical column -> cell index) from the first records."""
    for count, (row, cells) in enumerate(records):   # consumes the iterator up to the header only
        keys = [_key(c) for c in cells]
        other = next((_OTHER_TABLES[k] for k in keys if k in _OTHER_TABLES), None)
        if other:
            raise InputFileError(name, f"this is the {other} MUE table; professional claims use the "
                                 "Practitioner Services table", row=row)
        if keys and keys[0].startswith("hcpcs"):
            positions = {_HEADER_KEYS[k]: i for i, k in enumerate(keys) if k in _HEADER_KEYS}
            missing = [CMS_FIELDS[c] for c in MUE_COLUMNS if c not in positions]
            if missing:
                raise InputFileError(name, f"MUE header lacks column(s) {missing}", row=row, field=missing[0])
            return row, positions
        if count + 1 >= HEADER_SEARCH_RECORDS:
            break
    raise InputFileError(name, "no MUE header (a record starting 'HCPCS/CPT Code' with 'Practitioner "
                         "Services MUE Values', 'MUE Adjudication Indicator', 'MUE Rationale')",
                         row=1, field=CMS_FIELDS["hcpcs"])


def _build(name: str, header_row: int, positions: dict[str, int],
           records: Iterable[tuple[int, list]]) -> pd.DataFrame:
    """Canonical frame from the data records; errors name the physical row and the CMS column."""
    width = max(positions.values()) + 1
    rows: list[int] = []
    values: dict[str, list] = {c: [] for c in MUE_COLUMNS}
    for row, cells in records:
        if not any(str(c).strip() for c in cells if c is not None):
            continue                        # blank records (e.g. a trailing ",,,")
        if len(cells) < width:
            missing = next(c for c, i in positions.items() if i >= len(cells))
            raise InputFileError(name, f"truncated record: {len(cells)} cells, expected {width}",
                                 row=row, field=CMS_FIELDS[missing])
        rows.append(row)
        for column, i in positions.items():
            values[column].append(cells[i])
    if not rows:
        raise InputFileError(name, "no MUE rows after the header", row=header_row + 1)
    frame = pd.DataFrame({"source_row": rows})

    codes = pd.Series(values["hcpcs"], dtype=object).map(_code_text)
    bad = codes.eq("")
    if bad.any():
        raise InputFileError(name, "empty HCPCS code", row=rows[int(bad.to_numpy().argmax())],
                             field=CMS_FIELDS["hcpcs"])
    frame["hcpcs"] = codes.astype("str")

    raw_value = pd.Series(values["mue_value"], dtype=object)
    number = pd.to_numeric(raw_value.map(lambda v: str(v).strip() if v is not None else ""), errors="coerce")
    bad = number.isna() | (number != number.round())
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise InputFileError(name, f"MUE value {raw_value.iloc[i]!r} is not a whole number",
                             row=rows[i], field=CMS_FIELDS["mue_value"])
    frame["mue_value"] = number.astype("int64")

    raw_mai = pd.Series(values["mai"], dtype=object).map(lambda v: "" if v is None else str(v))
    digit = raw_mai.str.extract(_MAI_PATTERN, expand=False)
    bad = digit.isna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise InputFileError(name, f"MUE adjudication indicator {raw_mai.iloc[i]!r} does not start with "
                             "its digit (1 Line Edit, 2 Date of Service Edit: Policy, 3 ...: Clinical)",
                             row=rows[i], field=CMS_FIELDS["mai"])
    frame["mai"] = digit.astype("int64")
    frame["rationale"] = pd.Series(values["rationale"], dtype=object).map(
        lambda v: "" if v is None else " ".join(str(v).split())).astype("str")
    return frame[[*MUE_COLUMNS, "source_row"]]


def _code_text(value: object) -> str:
    """HCPCS as text; an XLSX may store all-digit CPT codes as numbers (20552.0 -> "20552")."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return str(value).zfill(5)
    return str(value).strip().upper()


def _result(name: str, frame: pd.DataFrame, fmt: str) -> ParsedTable:
    release, effective_from, meta, warnings = release_identity(name)
    meta["format"] = fmt
    return ParsedTable(table=TABLE, frame=frame.reset_index(drop=True), source=name, release=release,
                       effective_from=effective_from, meta=meta, warnings=warnings)


# --- CSV ---------------------------------------------------------------------------------------------

def _decode(content: bytes) -> str:
    """CMS writes Windows-1252/Latin-1; accept UTF-8 (with BOM) too, and never fail on a stray byte."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    return content.decode("latin-1")


def _csv_records(name: str, text: str) -> Iterable[tuple[int, list[str]]]:
    """(physical line where the record ends, cells); quoted line breaks stay inside their cell."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)   # a stray quote is an error, not data
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as exc:
        raise InputFileError(name, f"malformed CSV ({exc})", row=reader.line_num) from None


def sniff_csv(name: str, head: bytes) -> bool:
    """A MUE CSV: within the first records there is the 'MUE Adjudication Indicator' header cell."""
    if head[:2] == b"PK":
        return False
    text = _decode(head[:16384])
    compact = re.sub(r"\s+", "", text).lower()
    return "mueadjudicationindicator" in compact and "hcpcs/" in compact and ("," in text)


def parse_csv(name: str, content: bytes) -> ParsedTable:
    if not content or content.isspace():
        raise InputFileError(name, "empty file (expected a CMS MUE CSV)", row=1)
    records = iter(_csv_records(name, _decode(content)))
    header_row, positions = _find_header(name, records)
    frame = _build(name, header_row, positions, records)
    return _result(name, frame, "csv")


# --- XLSX --------------------------------------------------------------------------------------------

def _zip_head_text(head: bytes, limit: int = 1 << 20) -> str:
    """Best-effort text of the zip members whose (compressed) bytes lie in ``head`` (an XLSX prefix)."""
    out: list[str] = []
    pos = 0
    while pos + 30 <= len(head) and head[pos:pos + 4] == b"PK\x03\x04":
        method = int.from_bytes(head[pos + 8:pos + 10], "little")
        comp_size = int.from_bytes(head[pos + 18:pos + 22], "little")
        name_len = int.from_bytes(head[pos + 26:pos + 28], "little")
        extra_len = int.from_bytes(head[pos + 28:pos + 30], "little")
        start = pos + 30 + name_len + extra_len
        chunk = head[start:start + comp_size] if comp_size else head[start:]
        try:
            data = zlib.decompressobj(-15).decompress(chunk, limit) if method == 8 else chunk[:limit]
        except zlib.error:
            data = b""
        out.append(data.decode("utf-8", errors="replace"))
        if not comp_size:
            break
        pos = start + comp_size
    return "".join(out)


def sniff_xlsx(name: str, head: bytes) -> bool:
    """An XLSX with the MUE header text in view, or (strings beyond the first 64 KiB) named as a MUE file."""
    if head[:4] != b"PK\x03\x04" or b"xl/" not in head:
        return False
    compact = re.sub(r"\s+", "", _zip_head_text(head)).lower()
    if "mueadjudicationindicator" in compact:
        return True
    return bool(re.search(r"(^|[^a-z])mue([^a-z]|$)", name.split("!")[-1], re.IGNORECASE))


def parse_xlsx(name: str, content: bytes) -> ParsedTable:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for a broken workbook
        raise InputFileError(name, f"not a readable XLSX workbook ({exc})") from None
    try:
        sheet = workbook.worksheets[0]
        records = iter((i, list(cells)) for i, cells in enumerate(sheet.iter_rows(values_only=True), start=1))
        header_row, positions = _find_header(name, records)
        frame = _build(name, header_row, positions, records)
    finally:
        workbook.close()
    return _result(name, frame, "xlsx")


PARSERS: list[Parser] = [
    Parser(name="MUE practitioner CSV", table=TABLE, sniff=sniff_csv, parse=parse_csv),
    Parser(name="MUE practitioner XLSX", table=TABLE, sniff=sniff_xlsx, parse=parse_xlsx),
]


# --- expectations (Great Expectations 1.x) ------------------------------------------------------------

HCPCS_REGEX = r"^[A-Z0-9]{5}$"


def mue_expectations() -> list:
    import great_expectations as gx  # lazy: a 3-5 s import only validation needs

    return [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1, max_value=MAX_ROWS),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="hcpcs", regex=HCPCS_REGEX),
        gx.expectations.ExpectColumnValuesToBeUnique(column="hcpcs"),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="mue_value"),
        gx.expectations.ExpectColumnValuesToBeBetween(column="mue_value", min_value=0),
        gx.expectations.ExpectColumnValuesToBeInSet(column="mai", value_set=[1, 2, 3]),
    ]


EXPECTATIONS: dict[str, Callable[[], list]] = {TABLE: mue_expectations}
