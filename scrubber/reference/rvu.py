"""Parsers for the CMS PPRRVU file (national RVUs and payment-policy indicators) in all three
published forms: CSV, fixed-width TXT and XLSX (billing-domain 1.3, 1.4).

Why this much care: every expected-allowed amount and most policy checks read this table, so a
silently shifted column or a lost leading zero would mis-price or mis-flag whole batches. Columns are
mapped by their (multi-row) header names, every field is checked against its published format, and a
file whose formatting was damaged by a spreadsheet is repaired only where the repair is provably
exact -- each repair is reported in ``ParsedTable.warnings`` -- and refused otherwise, naming the
file, row and field.

The shared text/XLSX helpers here (decoding with a clear error, XLSX row reading and sniffing) are
also used by ``scrubber.reference.gpci`` and ``scrubber.reference.zipcodes``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import PurePosixPath

import pandas as pd

from scrubber.errors import InputFileError
from scrubber.reference.base import (
    MONTH_QUARTER,
    RVU_LETTER_QUARTER,
    ParsedTable,
    Parser,
    quarter_start,
)
from scrubber.schemas import PPRRVU_COLUMNS

# ------------------------------------------------------------------------------------------------
# Domain value sets (billing-domain 1.5-1.7, 1.10, 3.x); used by the parser and the expectations.

STATUS_CODES = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "M", "N", "P", "R", "T", "X")
MODIFIERS = ("", "26", "TC", "53")
GLOBAL_DAYS = ("000", "010", "090", "MMM", "XXX", "YYY", "ZZZ")
PHYS_SUPERVISION = ("01", "02", "03", "04", "05", "06", "09", "21", "22", "66", "6A", "77", "7A")
MULT_PROC = tuple("012345679")
BILAT_SURG = ("0", "1", "2", "3", "9")
ASST_SURG = ("0", "1", "2", "9")
CO_SURG = ("0", "1", "2", "9")
TEAM_SURG = ("0", "1", "2", "9")
PRICING_INDICATOR = ("", "1", "9")
IMAGING_FAMILY = ("88", "99", *(f"{i:02d}" for i in range(1, 12)))
PAYABLE_STATUS = ("A", "R", "T")

#: joined multi-row CSV/XLSX header text -> canonical column (billing-domain 1.3). 2026 adds PRIC IND.
PPRRVU_HEADERS: dict[str, str] = {
    "HCPCS": "hcpcs",
    "MOD": "modifier",
    "DESCRIPTION": "description",
    "STATUS CODE": "status_code",
    "NOT USED FOR MEDICARE PAYMENT": "not_used_for_medicare",
    "WORK RVU": "work_rvu",
    "NON-FAC PE RVU": "pe_rvu_nonfacility",
    "NON-FAC NA INDICATOR": "nonfacility_na",
    "FACILITY PE RVU": "pe_rvu_facility",
    "FACILITY NA INDICATOR": "facility_na",
    "MP RVU": "mp_rvu",
    "NON-FACILITY TOTAL": "total_nonfacility",
    "FACILITY TOTAL": "total_facility",
    "PCTC IND": "pctc_indicator",
    "GLOB DAYS": "global_days",
    "PRE OP": "preop_pct",
    "INTRA OP": "intraop_pct",
    "POST OP": "postop_pct",
    "MULT PROC": "mult_proc",
    "BILAT SURG": "bilat_surg",
    "ASST SURG": "asst_surg",
    "CO-SURG": "co_surg",
    "TEAM SURG": "team_surg",
    "PRIC IND": "pricing_indicator",
    "ENDO BASE": "endo_base",
    "CONV FACTOR": "conversion_factor",
    "PHYSICIAN SUPERVISION OF DIAGNOSTIC PROCEDURES": "phys_supervision",
    "CALCULATION FLAG": "calc_flag",
    "DIAGNOSTIC IMAGING FAMILY INDICATOR": "imaging_family",
    "NON-FACILITY PE USED FOR OPPS PAYMENT AMOUNT": "opps_pe_nonfacility",
    "FACILITY PE USED FOR OPPS PAYMENT AMOUNT": "opps_pe_facility",
    "MP USED FOR OPPS PAYMENT AMOUNT": "opps_mp",
}
#: columns a file may lack (added in 2026); everything else is required
OPTIONAL_COLUMNS = {"pricing_indicator"}
COLUMN_HEADER = {col: header for header, col in PPRRVU_HEADERS.items()}
#: 2025 column order, used to name the field of a byte that cannot be decoded
_CSV_ORDER_2025 = [c for c in PPRRVU_HEADERS.values() if c != "pricing_indicator"]

#: decimal columns and their published number of decimals
DECIMAL_PLACES: dict[str, int] = {
    "work_rvu": 2, "pe_rvu_nonfacility": 2, "pe_rvu_facility": 2, "mp_rvu": 2,
    "total_nonfacility": 2, "total_facility": 2,
    "preop_pct": 2, "intraop_pct": 2, "postop_pct": 2,
    "conversion_factor": 4,
    "opps_pe_nonfacility": 2, "opps_pe_facility": 2, "opps_mp": 2,
}
#: helper columns for expectations GX cannot express on pandas (the loader drops "_" columns)
HELPER_COLUMNS = ["_total_nonfacility_diff", "_total_facility_diff"]

#: fixed-width TXT layout, 1-based inclusive positions (billing-domain 1.4)
TXT_LAYOUT: dict[str, tuple[int, int]] = {
    "hcpcs": (1, 5), "modifier": (6, 7), "description": (8, 57), "status_code": (58, 58),
    "not_used_for_medicare": (59, 59), "work_rvu": (60, 65), "pe_rvu_nonfacility": (67, 72),
    "nonfacility_na": (73, 74), "pe_rvu_facility": (76, 81), "facility_na": (82, 83), "mp_rvu": (85, 89),
    "total_nonfacility": (91, 96), "total_facility": (97, 102), "pctc_indicator": (103, 103),
    "global_days": (104, 106), "preop_pct": (107, 109), "intraop_pct": (110, 112), "postop_pct": (113, 115),
    "mult_proc": (116, 116), "bilat_surg": (117, 117), "asst_surg": (118, 118), "co_surg": (119, 119),
    "team_surg": (120, 120), "pricing_indicator": (121, 121), "endo_base": (128, 132),
    "conversion_factor": (133, 140), "phys_supervision": (142, 143), "calc_flag": (144, 144),
    "imaging_family": (146, 147), "opps_pe_nonfacility": (152, 157), "opps_pe_facility": (159, 164),
    "opps_mp": (166, 171),
}
TXT_RECORD_LENGTH = 171
#: positions that are blank in every published record (filler); a shifted layout shows up here
_TXT_FILLER = [(66, 66), (75, 75), (84, 84), (90, 90), (122, 127), (141, 141), (145, 145), (148, 151),
               (158, 158), (165, 165)]
_CSV_BANNER_RE = re.compile(r"^(?:\ufeff)?[, ]*\"?\d{4}\s+National\s+Physician\s+Fee\s+Schedule\s+Relative\s+"
                            r"Value\s+File\b[^\r\n]*,,", re.IGNORECASE | re.MULTILINE)
_CSV_HEADER_RE = re.compile(r"^\ufeff?HCPCS,MOD,DESCRIPTION,", re.IGNORECASE | re.MULTILINE)
_TXT_DATA_RE = re.compile(r"^[A-Z0-9]{5}[ A-Z0-9]{2}.{50}[A-Z][ +]")
_TXT_CF_RE = re.compile(r"^ *\d{1,3}\.\d{4}$")

_BANNER_RE = re.compile(r"(\d{4})\s+National\s+Physician\s+Fee\s+Schedule\s+Relative\s+Value\s+File\s+"
                        r"(January|April|July|October)\s+Release", re.IGNORECASE)
_RELEASED_RE = re.compile(r"RELEASED\s+(\d{1,2})/(\d{1,2})/(\d{4})", re.IGNORECASE)
_NAME_PPRRVU_RE = re.compile(r"PPRRVU(\d{4}|\d{2})_?(JAN|APR|JUL|OCT)", re.IGNORECASE)
_NAME_RVU_RE = re.compile(r"(?<![A-Z])RVU(\d{2})([A-D])(?![A-Z])", re.IGNORECASE)
_ZIP_MAGIC = b"PK\x03\x04"
_HEADER_SCAN_ROWS = 60
_CTRL_Z = "\x1a"


# ------------------------------------------------------------------------------------------------
# Shared helpers: decoding, CSV/XLSX rows, sniffing XLSX by content


def display_name(source: str) -> str:
    """The member's own file name (``a.zip!dir/PPRRVU2025_Oct.csv`` -> ``PPRRVU2025_Oct.csv``)."""
    return PurePosixPath(source.split("!")[-1]).name


def _byte_location(data: bytes, pos: int) -> tuple[int, str]:
    """(1-based line, text of that line before ``pos``) for error messages."""
    line = data.count(b"\n", 0, pos) + 1
    start = data.rfind(b"\n", 0, pos) + 1
    return line, data[start:pos].decode("latin-1")


def csv_field_locator(columns: Sequence[str]) -> Callable[[str], str]:
    """Map 'text of a CSV line before a position' to the header name of the field at that position."""

    def locate(prefix: str) -> str:
        index = len(next(csv.reader([prefix]), [""])) - 1 if prefix else 0
        return columns[index] if 0 <= index < len(columns) else f"column {index + 1}"

    return locate


def fixed_width_locator(layout: dict[str, tuple[int, int]], names: dict[str, str] | None = None
                        ) -> Callable[[str], str]:
    """Map 'text of a fixed-width line before a position' to the field covering that position."""

    def locate(prefix: str) -> str:
        position = len(prefix) + 1
        for column, (first, last) in layout.items():
            if first <= position <= last:
                return (names or {}).get(column, column)
        return f"position {position}"

    return locate


def decode_text(source: str, data: bytes, locate: Callable[[str], str], *,
                first_field: str) -> tuple[str, list[str]]:
    """Bytes -> text: UTF-8 (BOM tolerated), else Windows-1252 with a warning naming where, else an error.

    CMS files are ASCII; a non-ASCII byte means the file was edited or re-saved, so say where it is.
    NUL bytes mean UTF-16 ("Unicode text" export) or a binary file, which we refuse outright.
    """
    if not data.strip(b" \t\r\n\x1a"):
        raise InputFileError(source, "the file is empty (no header, no data rows)", row=1, field=first_field)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    nul = data.find(b"\x00")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputFileError(source, "the file is UTF-16 ('Unicode text'), not the published ASCII text; "
                                     "re-export it as CSV/plain text", row=1, field=first_field)
    if nul >= 0:
        row, prefix = _byte_location(data, nul)
        raise InputFileError(source, "the file contains NUL bytes: it is UTF-16 ('Unicode text') or binary, "
                                     "not the published ASCII text; re-export it as CSV/plain text",
                             row=row, field=locate(prefix.replace("\x00", "")))
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        row, prefix = _byte_location(data, exc.start)
        raise InputFileError(source, f"byte 0x{data[exc.start]:02X} is neither UTF-8 nor Windows-1252 text; "
                                     "the file is damaged or not a CMS text file",
                             row=row, field=locate(prefix)) from None
    row, prefix = _byte_location(data, utf8_error.start)
    char = data[utf8_error.start:utf8_error.start + 1].decode("cp1252")
    return text, [f"{source}: not UTF-8 text (first non-UTF-8 byte 0x{data[utf8_error.start]:02X} {char!r} "
                  f"at row {row}, field {locate(prefix)!r}); decoded as Windows-1252"]


def strip_eof_marker(text: str, source: str, warnings: list[str]) -> str:
    """Drop a DOS end-of-file byte (Ctrl-Z, 0x1A) at the end, which CMS and old tools append."""
    stripped = text.rstrip()
    if stripped.endswith(_CTRL_Z):
        warnings.append(f"{source}: removed the DOS end-of-file marker (Ctrl-Z, 0x1A) at the end of the file")
        text = stripped.rstrip(_CTRL_Z)
    return text


def read_csv_rows(text: str) -> list[tuple[int, list[str]]]:
    """(physical line number, cells) for every record; line numbers are 1-based like an editor shows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    for cells in reader:
        rows.append((start, cells))
        start = reader.line_num + 1
    return rows


def read_xlsx_rows(source: str, data: bytes) -> tuple[str, list[tuple[int, list[object]]]]:
    """(sheet name, [(worksheet row number, raw cell values)]) of the first worksheet, read-only."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputFileError(source, f"not a readable .xlsx workbook ({exc})", row=1) from None
    try:
        sheet = workbook.worksheets[0]
        rows = [(i, list(values)) for i, values in enumerate(sheet.iter_rows(values_only=True), start=1)]
        return sheet.title, rows
    finally:
        workbook.close()


def cell_text(value: object) -> str:
    """A typed XLSX cell as the text CMS prints (ints without '.0'; floats by shortest repr)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def decimal_cell_text(value: object, places: int) -> str:
    """A typed numeric XLSX cell as fixed-decimal text (1.3 -> '1.30'); text cells pass through.

    A number with more decimals than CMS publishes is left as is, so validation refuses it.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return cell_text(value)
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if d.as_tuple().exponent < -places and d != d.quantize(Decimal(1).scaleb(-places)):
        return repr(value)
    return f"{d:.{places}f}"


def xlsx_head_texts(head: bytes) -> list[str]:
    """Readable XML text from the start of an XLSX (sheet names, shared strings, sheet dimension).

    A sniffer only sees the first 64 KiB, where the zip's directory is not available, so we walk the
    local file headers and inflate what is there (partially for the big worksheet).
    """
    if not head.startswith(_ZIP_MAGIC):
        return []
    texts: list[str] = []
    pos = 0
    while head.startswith(_ZIP_MAGIC, pos) and pos + 30 <= len(head):
        flags = int.from_bytes(head[pos + 6:pos + 8], "little")
        method = int.from_bytes(head[pos + 8:pos + 10], "little")
        csize = int.from_bytes(head[pos + 18:pos + 22], "little")
        name_len = int.from_bytes(head[pos + 26:pos + 28], "little")
        extra_len = int.from_bytes(head[pos + 28:pos + 30], "little")
        name = head[pos + 30:pos + 30 + name_len].decode("cp437", "replace")
        start = pos + 30 + name_len + extra_len
        streamed = bool(flags & 0x08) and csize == 0      # sizes follow the data (data descriptor)
        if method != 8 and streamed:
            break
        inflater = zlib.decompressobj(-15)
        chunk = head[start:] if streamed else head[start:start + csize]
        try:
            raw = inflater.decompress(chunk) if method == 8 else chunk
        except zlib.error:
            break
        if name.endswith(".xml"):
            texts.append(raw.decode("utf-8", "replace"))
        if streamed:
            if not inflater.eof:
                break
            end = len(head) - len(inflater.unused_data)
            pos = end + (16 if head.startswith(b"PK\x07\x08", end) else 12)
            continue
        if start + csize > len(head):
            break
        pos = start + csize
    return texts


def _norm_header(text: str) -> str:
    text = " ".join(text.replace("*", " ").split()).upper()
    return text.replace("- ", "-")


def _is_blank_row(cells: Iterable[object]) -> bool:
    return all(str(c).strip(" \t" + _CTRL_Z) == "" for c in cells if c is not None)


# ------------------------------------------------------------------------------------------------
# Release identity


@dataclass
class _Identity:
    release: str | None
    effective_from: date | None
    meta: dict


def release_identity(source: str, banner: str, warnings: list[str]) -> _Identity:
    """Release id from the banner title, else from the file name; RELEASED date and CF variant to meta."""
    meta: dict = {}
    found: tuple[int, int] | None = None
    m = _BANNER_RE.search(banner)
    if m:
        found = (int(m.group(1)), MONTH_QUARTER[m.group(2).lower()])
        meta["title"] = " ".join(m.group(0).split())
    released = _RELEASED_RE.search(banner)
    if released:
        month, day, year = (int(g) for g in released.groups())
        meta["released"] = date(year, month, day).isoformat()
    name = display_name(source)
    from_name: tuple[int, int] | None = None
    m = _NAME_PPRRVU_RE.search(name)
    if m:
        year = int(m.group(1))
        from_name = (year + 2000 if year < 100 else year, MONTH_QUARTER[m.group(2).lower()])
    else:
        m = _NAME_RVU_RE.search(source)
        if m:
            from_name = (2000 + int(m.group(1)), RVU_LETTER_QUARTER[m.group(2).upper()])
    if found and from_name and found != from_name:
        warnings.append(f"{source}: the file name suggests {from_name[0]} Q{from_name[1]} but the banner says "
                        f"{found[0]} Q{found[1]}; using the banner")
    found = found or from_name
    lowered = source.lower()
    if "nonqpp" in lowered or "non_qpp" in lowered or "non-qpp" in lowered:
        meta["cf_variant"] = "nonQPP"
    elif re.search(r"(?<![a-z])qpp", lowered):
        meta["cf_variant"] = "QPP"
    if not found:
        warnings.append(f"{source}: no release title in the file and no release in its name; "
                        "the release must be given when loading")
        return _Identity(None, None, meta)
    year, quarter = found
    meta["year"] = year
    meta["quarter"] = quarter
    letter = "ABCD"[quarter - 1]
    return _Identity(f"RVU{year % 100:02d}{letter}", quarter_start(year, quarter), meta)


# ------------------------------------------------------------------------------------------------
# Field normalisation: published format check, exact repair with a warning, or a clear refusal

_STRICT: dict[str, str] = {
    "hcpcs": r"[A-Z0-9]{5}",
    "modifier": r"(?:[A-Z0-9]{2})?",
    "status_code": r"[A-Z]",
    "not_used_for_medicare": r"\+?",
    "nonfacility_na": r"(?:NA)?",
    "facility_na": r"(?:NA)?",
    "pctc_indicator": r"\d",
    "global_days": r"\d{3}|[A-Z]{3}",
    "mult_proc": r"\d",
    "bilat_surg": r"\d",
    "asst_surg": r"\d",
    "co_surg": r"\d",
    "team_surg": r"\d",
    "pricing_indicator": r"\d?",
    "endo_base": r"(?:[A-Z0-9]{5})?",
    "phys_supervision": r"[0-9][0-9A-Z]",
    "calc_flag": r"\d",
    "imaging_family": r"\d{2}",
}
_EXPECTED_TEXT: dict[str, str] = {
    "hcpcs": "a 5-character HCPCS code", "modifier": "blank or a 2-character modifier",
    "status_code": "one status letter", "not_used_for_medicare": "blank or '+'",
    "nonfacility_na": "blank or 'NA'", "facility_na": "blank or 'NA'", "global_days": "000/010/090/MMM/XXX/YYY/ZZZ",
    "endo_base": "blank or a 5-character code", "phys_supervision": "a 2-character code such as 09",
    "imaging_family": "a 2-digit indicator", "pricing_indicator": "blank or one digit",
}


def _repair_code5(value: str) -> str | None:
    """'100' -> '00100': a numeric CPT code that lost leading zeros; 3-4 digits only (00100 and up).

    Shorter values (e.g. '1') could be no real code, so they are refused rather than guessed.
    """
    return value.zfill(5) if value.isdigit() and 3 <= len(value) <= 4 else None


def _repair_global_days(value: str) -> str | None:
    padded = value.zfill(3) if value.isdigit() and len(value) < 3 else None
    return padded if padded in GLOBAL_DAYS else None


def _repair_phys_supervision(value: str) -> str | None:
    padded = "0" + value if len(value) == 1 and value.isdigit() else None
    return padded if padded in PHYS_SUPERVISION else None


def _repair_two_digits(value: str) -> str | None:
    return "0" + value if len(value) == 1 and value.isdigit() else None


_REPAIRS: dict[str, Callable[[str], str | None]] = {
    "hcpcs": _repair_code5, "endo_base": _repair_code5, "global_days": _repair_global_days,
    "phys_supervision": _repair_phys_supervision, "imaging_family": _repair_two_digits,
}


def _refuse(source: str, frame: pd.DataFrame, mask: pd.Series, column: str, reason: str) -> InputFileError:
    first = mask.to_numpy().nonzero()[0][0]
    value = frame[column].iloc[first]
    more = int(mask.sum()) - 1
    tail = f" ({more} more row{'s' if more != 1 else ''} like it)" if more else ""
    return InputFileError(source, f"{value!r} {reason}{tail}", row=int(frame["source_row"].iloc[first]),
                          field=COLUMN_HEADER.get(column, column))


def _repair_warning(source: str, column: str, frame: pd.DataFrame, mask: pd.Series, fixed: pd.Series,
                    what: str) -> str:
    idx = mask.to_numpy().nonzero()[0]
    examples = ", ".join(f"row {int(frame['source_row'].iloc[i])}: {frame[column].iloc[i]!r}->{fixed.iloc[i]!r}"
                         for i in idx[:3])
    return (f"{source}: field {COLUMN_HEADER.get(column, column)!r}: repaired {len(idx)} value(s) that {what} "
            f"(e.g. {examples})")


def _normalise_code_column(source: str, frame: pd.DataFrame, column: str, warnings: list[str]) -> None:
    s = frame[column].astype(str)
    ok = s.str.fullmatch(_STRICT[column])
    if ok.all():
        frame[column] = s
        return
    repair = _REPAIRS.get(column, lambda _value: None)
    repaired = s.astype(object).map(lambda v: repair(v)).astype(object)
    fixed = s.astype(object).where(ok, repaired)
    unrepaired = ~ok & fixed.isna()
    if unrepaired.any():
        hint = _EXPECTED_TEXT.get(column, "one digit")
        raise _refuse(source, frame, unrepaired, column,
                      f"is not {hint} and cannot be repaired without guessing")
    warnings.append(_repair_warning(source, column, frame, ~ok, fixed, "lost their leading zeros"))
    frame[column] = fixed.astype(str)


def _normalise_decimal_column(source: str, frame: pd.DataFrame, column: str, warnings: list[str]) -> None:
    """Text -> Decimal quantized to the published decimals; exact only (never rounds a value)."""
    places = DECIMAL_PLACES[column]
    s = frame[column].astype(str)
    ok = s.str.fullmatch(rf"\d{{1,4}}\.\d{{{places}}}")
    if not ok.all():
        repairable = s.str.fullmatch(rf"\d{{1,4}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}}")
        bad = ~ok & ~repairable
        if bad.any():
            raise _refuse(source, frame, bad, column,
                          f"is not a number with at most {places} decimals; refusing to round or guess")
        quantum = Decimal(1).scaleb(-places)
        fixed = s.where(ok, s.map(lambda v: f"{Decimal(v).quantize(quantum)}"))
        warnings.append(_repair_warning(source, column, frame, ~ok, fixed,
                                        f"lost their fixed {places} decimals (exact, no rounding)"))
        s = fixed
    quantum = Decimal(1).scaleb(-places)
    values = s.tolist()
    cache = {v: Decimal(v).quantize(quantum) for v in set(values)}
    frame[column] = pd.Series([cache[v] for v in values], index=frame.index, dtype=object)


def _finish_frame(source: str, frame: pd.DataFrame, identity: _Identity, warnings: list[str],
                  fmt: str, columns_in_file: int | None) -> ParsedTable:
    """Shared tail of every format: checks, conversions, CF consistency, helper columns, meta."""
    if "pricing_indicator" not in frame.columns:
        frame["pricing_indicator"] = ""
    for column in PPRRVU_COLUMNS:
        if column in ("description", *DECIMAL_PLACES):
            continue
        frame[column] = frame[column].astype(str).str.strip().str.upper()
        if column in ("nonfacility_na", "facility_na"):
            continue
        _normalise_code_column(source, frame, column, warnings)
    for column in ("nonfacility_na", "facility_na"):
        s = frame[column]
        bad = ~s.isin(["", "NA"])
        if bad.any():
            raise _refuse(source, frame, bad, column, "is not blank or 'NA'")
        frame[column] = s.eq("NA")
    for column in DECIMAL_PLACES:
        frame[column] = frame[column].astype(str).str.strip()
        _normalise_decimal_column(source, frame, column, warnings)
    frame["description"] = frame["description"].astype(str).str.rstrip()

    cfs = frame["conversion_factor"]
    first_cf = cfs.iloc[0]
    differs = cfs.map(lambda v: v != first_cf).astype(bool)
    if differs.any():
        raise _refuse(source, frame, differs, "conversion_factor",
                      f"differs from the conversion factor {first_cf} on the first data row; a release has "
                      "one CF per file")
    frame["_total_nonfacility_diff"] = (frame["total_nonfacility"] - frame["work_rvu"]
                                        - frame["pe_rvu_nonfacility"] - frame["mp_rvu"])
    frame["_total_facility_diff"] = (frame["total_facility"] - frame["work_rvu"]
                                     - frame["pe_rvu_facility"] - frame["mp_rvu"])
    frame["source_row"] = frame["source_row"].astype("int64")
    out = frame[[*PPRRVU_COLUMNS, "source_row", *HELPER_COLUMNS]].reset_index(drop=True)
    meta = dict(identity.meta)
    meta.update({"conversion_factor": str(first_cf), "pprrvu_format": fmt,
                 "pprrvu_repaired": any("repaired" in w for w in warnings)})
    if columns_in_file is not None:
        meta["pprrvu_columns"] = columns_in_file
    return ParsedTable(table="pprrvu", frame=out, source=source, release=identity.release,
                       effective_from=identity.effective_from, meta=meta, warnings=warnings)


# ------------------------------------------------------------------------------------------------
# CSV and XLSX: banner, multi-row header, data rows


def _find_header(source: str, rows: list[tuple[int, list[str]]]) -> int:
    """Index (into rows) of the row whose first cell is exactly HCPCS; clear error when it moved."""
    for i, (_, cells) in enumerate(rows[:_HEADER_SCAN_ROWS]):
        if cells and cells[0].strip().upper() == "HCPCS":
            return i
    for line, cells in rows[:_HEADER_SCAN_ROWS]:
        for j, cell in enumerate(cells):
            if cell.strip().upper() == "HCPCS":
                raise InputFileError(source, f"the header cell 'HCPCS' is in column {j + 1}; the published "
                                             "layout has it in column 1 (the header moved)", row=line, field="HCPCS")
    last = rows[min(len(rows), _HEADER_SCAN_ROWS) - 1][0] if rows else 1
    raise InputFileError(source, f"no header row starting with 'HCPCS' in rows 1-{last}; not a PPRRVU file "
                                 "or its header moved", row=last, field="HCPCS")


def _header_names(rows: list[tuple[int, list[str]]], header_index: int) -> tuple[list[str], int]:
    """Join the header text split over the rows above the HCPCS row, column by column.

    The header block is the HCPCS row plus the rows directly above it that have text beyond the
    description column (the banner rows above only use the first three columns).
    """
    width = len(rows[header_index][1])
    first = header_index
    while first > 0:
        cells = rows[first - 1][1]
        if any(str(c).strip() for c in cells[3:]):
            first -= 1
        else:
            break
    names = []
    for j in range(width):
        parts = [rows[i][1][j].strip() for i in range(first, header_index + 1)
                 if j < len(rows[i][1]) and rows[i][1][j].strip()]
        names.append(_norm_header(" ".join(parts)))
    return names, first


def _map_columns(source: str, names: list[str], header_line: int) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for j, name in enumerate(names):
        if not name:
            continue  # an unnamed trailing column (spreadsheet artefact); its cells must be blank
        column = PPRRVU_HEADERS.get(name)
        if column is None:
            raise InputFileError(source, f"unexpected column header {name!r} in column {j + 1}; the expected "
                                         f"headers are {sorted(PPRRVU_HEADERS)}", row=header_line, field=name)
        if column in mapping.values():
            raise InputFileError(source, f"column header {name!r} appears twice (column {j + 1})",
                                 row=header_line, field=name)
        mapping[j] = column
    missing = [c for c in PPRRVU_HEADERS.values() if c not in mapping.values() and c not in OPTIONAL_COLUMNS]
    if missing:
        raise InputFileError(source, f"header {COLUMN_HEADER[missing[0]]!r} is missing (or its text moved to "
                                     f"another row); found headers {[n for n in names if n]}",
                             row=header_line, field=COLUMN_HEADER[missing[0]])
    return mapping


def _table_from_rows(source: str, rows: list[tuple[int, list[object]]], text_rows: list[tuple[int, list[str]]],
                     typed: bool, warnings: list[str]) -> tuple[pd.DataFrame, str, int]:
    """Rows (after the header scan) -> DataFrame of text cells with canonical names + source_row."""
    header_index = _find_header(source, text_rows)
    header_line = text_rows[header_index][0]
    names, first = _header_names(text_rows, header_index)
    mapping = _map_columns(source, names, header_line)
    banner = "\n".join(" ".join(str(c) for c in cells if str(c).strip()) for _, cells in text_rows[:first])
    width = max(mapping) + 1
    unmapped = [j for j in range(len(names)) if j not in mapping]
    kept: list[list[object]] = []
    source_rows: list[int] = []
    data_rows = rows[header_index + 1:]
    for n, (line, cells) in enumerate(data_rows):
        if not cell_text(cells[0] if cells else None).strip(" \t" + _CTRL_Z) and _is_blank_row(cells):
            if any(_CTRL_Z in str(c) for c in cells):
                if not _is_last_nonblank(data_rows, n):
                    raise InputFileError(source, "a DOS end-of-file marker (Ctrl-Z) in the middle of the data; "
                                                 "the file is damaged", row=line, field="HCPCS")
                warnings.append(f"{source}: row {line}: dropped the DOS end-of-file marker line (Ctrl-Z)")
            continue
        if len(cells) < width:
            missing = [COLUMN_HEADER[mapping[j]] for j in range(len(cells), width) if j in mapping]
            raise InputFileError(source, f"the row has {len(cells)} fields but the header has {width}: the "
                                         "row or the file is truncated", row=line,
                                 field=missing[0] if missing else None)
        extra = [j for j in (*unmapped, *range(len(names), len(cells)))
                 if j < len(cells) and cell_text(cells[j]).strip()]
        if extra:
            raise InputFileError(source, f"value {cells[extra[0]]!r} in column {extra[0] + 1}, which has no "
                                         "header; a column was inserted or the row is shifted",
                                 row=line, field=f"column {extra[0] + 1}")
        kept.append(cells)
        source_rows.append(line)
    if not source_rows:
        raise InputFileError(source, "no data rows after the header: the file is truncated",
                             row=header_line + 1, field="HCPCS")
    columns: dict[str, list[object]] = {}
    for j, column in mapping.items():
        values = [r[j] for r in kept]
        if typed:
            places = DECIMAL_PLACES.get(column)
            values = [decimal_cell_text(v, places) for v in values] if places is not None \
                else [cell_text(v) for v in values]
        columns[column] = values
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in columns.items()})
    frame["source_row"] = source_rows
    return frame, banner, len(names)


def _is_last_nonblank(rows: list[tuple[int, list[object]]], n: int) -> bool:
    return all(_is_blank_row(cells) for _, cells in rows[n + 1:])


def parse_pprrvu_csv(source: str, data: bytes) -> ParsedTable:
    """Parse the published PPRRVU CSV (2025: 31 columns, 2026: 32), repairing spreadsheet damage exactly."""
    locate = csv_field_locator([COLUMN_HEADER[c] for c in _CSV_ORDER_2025])
    text, warnings = decode_text(source, data, locate, first_field="HCPCS")
    text = strip_eof_marker(text, source, warnings)
    rows = read_csv_rows(text)
    frame, banner, width = _table_from_rows(source, rows, rows, typed=False, warnings=warnings)
    identity = release_identity(source, banner, warnings)
    return _finish_frame(source, frame, identity, warnings, "csv", width)


def parse_pprrvu_xlsx(source: str, data: bytes) -> ParsedTable:
    """Parse the published PPRRVU workbook (typed cells are formatted as the CSV prints them)."""
    if not data:
        raise InputFileError(source, "the file is empty", row=1, field="HCPCS")
    sheet, rows = read_xlsx_rows(source, data)
    text_rows = [(line, [cell_text(c) for c in cells]) for line, cells in rows[:_HEADER_SCAN_ROWS]]
    warnings: list[str] = []
    frame, banner, width = _table_from_rows(source, rows, text_rows, typed=True, warnings=warnings)
    identity = release_identity(source, banner + "\n" + sheet, warnings)
    return _finish_frame(source, frame, identity, warnings, "xlsx", width)


# ------------------------------------------------------------------------------------------------
# Fixed-width TXT


def parse_pprrvu_txt(source: str, data: bytes) -> ParsedTable:
    """Parse the fixed-width PPRRVU (HDR lines skipped; pre/intra/post printed '.10'; Ctrl-Z tolerated)."""
    locate = fixed_width_locator(TXT_LAYOUT, COLUMN_HEADER)
    text, warnings = decode_text(source, data, locate, first_field="HCPCS")
    text = strip_eof_marker(text, source, warnings)
    lines: list[str] = []
    source_rows: list[int] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if line.startswith("HDR") or not line.strip():
            continue
        if len(line) < TXT_RECORD_LENGTH:
            short = len(line)
            field = next((c for c, (a, b) in TXT_LAYOUT.items() if b > short), "opps_mp")
            raise InputFileError(source, f"the record is {short} characters long, the layout needs "
                                         f"{TXT_RECORD_LENGTH}: the line or the file is truncated",
                                 row=number, field=COLUMN_HEADER[field])
        lines.append(line)
        source_rows.append(number)
    if not lines:
        raise InputFileError(source, "no data records after the HDR lines", row=len(text.split("\n")),
                             field="HCPCS")
    s = pd.Series(lines, dtype=object)
    for first, last in _TXT_FILLER:
        filled = s.str.slice(first - 1, last).str.strip().ne("")
        if filled.any():
            i = filled.to_numpy().nonzero()[0][0]
            raise InputFileError(source, f"positions {first}-{last} should be blank but hold "
                                         f"{lines[i][first - 1:last]!r}: the fixed-width layout is shifted",
                                 row=source_rows[i], field=f"positions {first}-{last}")
    frame = pd.DataFrame({col: s.str.slice(a - 1, b) for col, (a, b) in TXT_LAYOUT.items()})
    for column in ("preop_pct", "intraop_pct", "postop_pct"):
        v = frame[column].str.strip()
        frame[column] = v.where(~v.str.startswith("."), "0" + v)   # printed '.10' in this layout
    frame["source_row"] = source_rows
    identity = release_identity(source, "", warnings)
    return _finish_frame(source, frame, identity, warnings, "txt", None)


# ------------------------------------------------------------------------------------------------
# Sniffing by content


def _text_head(head: bytes) -> str:
    return head.decode("latin-1")


def sniff_pprrvu_csv(name: str, head: bytes) -> bool:
    if head.startswith(_ZIP_MAGIC):
        return False
    text = _text_head(head)
    # the banner title as a CSV cell (",,2025 National ... Release,,,,") or the last header row
    return bool(_CSV_BANNER_RE.search(text) or _CSV_HEADER_RE.search(text))


def sniff_pprrvu_txt(name: str, head: bytes) -> bool:
    if head.startswith(_ZIP_MAGIC):
        return False
    for raw in _text_head(head).split("\n")[:40]:
        line = raw.rstrip("\r")
        if line.startswith("HDR") or not line.strip():
            continue
        return bool(_TXT_DATA_RE.match(line)) and len(line) >= 140 and bool(_TXT_CF_RE.match(line[132:140]))
    return False


def sniff_pprrvu_xlsx(name: str, head: bytes) -> bool:
    texts = xlsx_head_texts(head)
    if not texts:
        return False
    joined = "\n".join(texts)
    if "Physician Fee Schedule Relative Value File" in joined or "PHYSICIAN SUPERVISION OF" in joined:
        return True
    # the big worksheet comes before the shared strings: fall back to sheet name + shape (A1:AE/AF, 5000+ rows)
    sheet_named = re.search(r'<sheet [^>]*name="PPRRVU', joined, re.IGNORECASE)
    dim = re.search(r'<dimension ref="A1:A([EF])(\d+)"', joined)
    return bool(sheet_named and dim and int(dim.group(2)) >= 1000)


PARSERS: list[Parser] = [
    Parser(name="PPRRVU CSV", table="pprrvu", sniff=sniff_pprrvu_csv, parse=parse_pprrvu_csv),
    Parser(name="PPRRVU fixed-width TXT", table="pprrvu", sniff=sniff_pprrvu_txt, parse=parse_pprrvu_txt),
    Parser(name="PPRRVU XLSX", table="pprrvu", sniff=sniff_pprrvu_xlsx, parse=parse_pprrvu_xlsx),
]


# ------------------------------------------------------------------------------------------------
# Great Expectations


def pprrvu_expectations(full_release: bool = True) -> list:
    """Data-quality expectations for the PPRRVU table (GX 1.x).

    ``full_release=False`` drops the row-count bound, for the small bundled demo sample. The totals
    check uses the helper columns ``_total_*_diff`` (exact Decimal differences computed by the
    parser) because GX's UnexpectedRowsExpectation has no pandas implementation.
    """
    import great_expectations as gx

    e = gx.expectations
    out = [
        e.ExpectColumnValuesToNotBeNull(column="hcpcs"),
        e.ExpectColumnValuesToMatchRegex(column="hcpcs", regex=r"^[A-Z0-9]{4}[A-Z0-9]$"),
        e.ExpectColumnValuesToBeInSet(column="modifier", value_set=list(MODIFIERS)),
        e.ExpectCompoundColumnsToBeUnique(column_list=["hcpcs", "modifier"]),
        e.ExpectColumnValuesToBeInSet(column="status_code", value_set=list(STATUS_CODES)),
        e.ExpectColumnValuesToBeInSet(column="not_used_for_medicare", value_set=["", "+"]),
        e.ExpectColumnValuesToBeInSet(column="pctc_indicator", value_set=list("0123456789")),
        e.ExpectColumnValuesToBeInSet(column="global_days", value_set=list(GLOBAL_DAYS)),
        e.ExpectColumnValuesToBeInSet(column="mult_proc", value_set=list(MULT_PROC)),
        e.ExpectColumnValuesToBeInSet(column="bilat_surg", value_set=list(BILAT_SURG)),
        e.ExpectColumnValuesToBeInSet(column="asst_surg", value_set=list(ASST_SURG)),
        e.ExpectColumnValuesToBeInSet(column="co_surg", value_set=list(CO_SURG)),
        e.ExpectColumnValuesToBeInSet(column="team_surg", value_set=list(TEAM_SURG)),
        e.ExpectColumnValuesToBeInSet(column="pricing_indicator", value_set=list(PRICING_INDICATOR)),
        e.ExpectColumnValuesToBeInSet(column="phys_supervision", value_set=list(PHYS_SUPERVISION)),
        e.ExpectColumnValuesToBeInSet(column="imaging_family", value_set=list(IMAGING_FAMILY)),
        e.ExpectColumnValuesToBeInSet(column="calc_flag", value_set=["0"]),
        e.ExpectColumnValuesToMatchRegex(column="endo_base", regex=r"^(?:[A-Z0-9]{5})?$"),
        e.ExpectColumnValuesToBeBetween(column="conversion_factor", min_value=10, max_value=100),
        e.ExpectColumnUniqueValueCountToBeBetween(column="conversion_factor", min_value=1, max_value=1),
        e.ExpectColumnValuesToBeBetween(column="_total_nonfacility_diff", min_value=-0.011, max_value=0.011),
        e.ExpectColumnValuesToBeBetween(column="_total_facility_diff", min_value=-0.011, max_value=0.011),
        # a non-facility NA row carries the facility PE (billing-domain 1.3), so NF pricing cannot overpay
        e.ExpectColumnPairValuesToBeEqual(column_A="pe_rvu_nonfacility", column_B="pe_rvu_facility",
                                          row_condition="nonfacility_na == True", condition_parser="pandas"),
        e.ExpectColumnValuesToBeInSet(column="modifier", value_set=["", "26", "TC"],
                                      row_condition='pctc_indicator == "1"', condition_parser="pandas"),
        e.ExpectColumnValuesToBeBetween(column="preop_pct", min_value=0, max_value=1),
        e.ExpectColumnValuesToBeBetween(column="intraop_pct", min_value=0, max_value=1),
        e.ExpectColumnValuesToBeBetween(column="postop_pct", min_value=0, max_value=1),
    ]
    for column in ("work_rvu", "pe_rvu_nonfacility", "pe_rvu_facility", "mp_rvu", "total_nonfacility",
                   "total_facility", "opps_pe_nonfacility", "opps_pe_facility", "opps_mp"):
        out.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=9999.99))
    if full_release:
        out.append(e.ExpectTableRowCountToBeBetween(min_value=5_000, max_value=60_000,
                                                    meta={"full_release_only": True}))
    return out


EXPECTATIONS: dict[str, Callable[[], list]] = {"pprrvu": pprrvu_expectations}

