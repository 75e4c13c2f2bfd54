"""Parsers for the locality files of the MPFS release: GPCI (Addendum E), 25LOCCO (locality/county
crosswalk), ANES (anesthesia conversion factors) and OPPSCAP (OPPS-capped imaging prices).

Why: pricing multiplies every RVU by a locality's GPCIs, so MAC and locality keep their leading
zeros ("01112", "05") and GPCIs stay exact Decimals. CMS's own files are messy in documented ways
(LOCCO drops leading zeros and prints the state once per state; ANES pads keys with spaces; GPCI
rows are followed by footnotes), which we normalise; anything else that looks wrong is refused with
the file, row and field. Columns are found by header text, never by position alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import PurePosixPath

import pandas as pd

from scrubber.errors import InputFileError
from scrubber.reference.base import ParsedTable, Parser
from scrubber.reference.rvu import (
    MODIFIERS,
    cell_text,
    csv_field_locator,
    decode_text,
    read_csv_rows,
    read_xlsx_rows,
    strip_eof_marker,
    xlsx_head_texts,
)
from scrubber.schemas import ANES_COLUMNS, GPCI_COLUMNS, LOCCO_COLUMNS, OPPSCAP_COLUMNS

_ZIP_MAGIC = b"PK\x03\x04"
#: plausible GPCI bounds; the brief's 0.3..2.5 is too tight for real data (GPCI2026 MP: 0.296 .. 2.529)
GPCI_RANGE = (0.2, 3.0)
_GPCI_TITLE = "GEOGRAPHIC PRACTICE COST INDICES"
_LOCCO_TITLE = "COUNTIES INCLUDED IN"

Rows = list[tuple[int, list[str]]]


# ------------------------------------------------------------------------------------------------
# small shared helpers


def _norm(text: object) -> str:
    return " ".join(str(text or "").replace("*", " ").split()).upper()


def _text_rows(source: str, data: bytes, first_field: str, columns: Sequence[str]) -> tuple[Rows, list[str]]:
    text, warnings = decode_text(source, data, csv_field_locator(list(columns)), first_field=first_field)
    text = strip_eof_marker(text, source, warnings)
    return read_csv_rows(text), warnings


def _xlsx_text_rows(source: str, data: bytes) -> Rows:
    _, rows = read_xlsx_rows(source, data)
    return [(line, [cell_text(c) for c in cells]) for line, cells in rows]


def _blank(cells: Sequence[str]) -> bool:
    return all(not str(c).strip(" \t\x1a") for c in cells)


def _find_header_row(source: str, rows: Rows, test: Callable[[list[str]], bool], what: str,
                     first_field: str) -> int:
    for i, (_, cells) in enumerate(rows[:40]):
        if test([_norm(c) for c in cells]):
            return i
    last = rows[min(len(rows), 40) - 1][0] if rows else 1
    raise InputFileError(source, f"no {what} header row in rows 1-{last}; the header moved or this is "
                                 "not the published file", row=last, field=first_field)


def _map_header(source: str, cells: list[str], line: int, patterns: list[tuple[str, str]],
                required: Sequence[str], names: dict[str, str]) -> dict[str, int]:
    """canonical column -> index, matching each header cell against regex patterns (first match wins)."""
    found: dict[str, int] = {}
    for j, cell in enumerate(cells):
        name = _norm(cell)
        if not name:
            continue
        for pattern, column in patterns:
            if re.fullmatch(pattern, name):
                if column in found:
                    raise InputFileError(source, f"two columns match {column!r}: {cells[found[column]]!r} and "
                                                 f"{cell!r}", row=line, field=cell)
                found[column] = j
                break
    for column in required:
        if column not in found:
            raise InputFileError(source, f"the header {names.get(column, column)!r} is missing or was renamed; "
                                         f"header cells are {[c for c in cells if c.strip()]}",
                                 row=line, field=names.get(column, column))
    return found


def _data_frame(source: str, rows: Rows, start: int, columns: dict[str, int], key_column: str,
                header_names: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """Data rows after the header (blank rows skipped); rows whose key cell is not numeric are notes.

    Returns the frame of stripped text cells with ``source_row`` and the note texts (footnotes).
    """
    width = max(columns.values()) + 1
    kept: list[list[str]] = []
    lines: list[int] = []
    notes: list[str] = []
    key_index = columns[key_column]
    for line, cells in rows[start:]:
        if _blank(cells):
            continue
        key = cells[key_index].strip() if key_index < len(cells) else ""
        if not key.isdigit():
            filled = [c.strip() for c in cells if c.strip()]
            if len(filled) == 1:  # a footnote line: one text cell, nothing else
                notes.append(filled[0])
                continue
            raise InputFileError(source, f"{key!r} is not a numeric code, but the row has data in "
                                         f"{len(filled)} cells", row=line, field=header_names.get(key_column))
        if len(cells) < width:
            missing = [header_names.get(c, c) for c, j in columns.items() if j >= len(cells)]
            raise InputFileError(source, f"the row has {len(cells)} fields, the header needs {width}: the row "
                                         "or the file is truncated", row=line, field=missing[0])
        kept.append([cells[j].strip() for j in columns.values()])
        lines.append(line)
    frame = pd.DataFrame(kept, columns=list(columns), dtype=object)
    frame["source_row"] = pd.Series(lines, dtype="int64")
    return frame, notes


def _refuse(source: str, frame: pd.DataFrame, mask: pd.Series, column: str, reason: str,
            header: str | None = None) -> InputFileError:
    i = mask.to_numpy().nonzero()[0][0]
    more = int(mask.sum()) - 1
    tail = f" ({more} more like it)" if more else ""
    return InputFileError(source, f"{frame[column].iloc[i]!r} {reason}{tail}",
                          row=int(frame["source_row"].iloc[i]), field=header or column)


def _pad_digits(source: str, frame: pd.DataFrame, column: str, width: int, header: str,
                warnings: list[str] | None) -> None:
    """Zero-pad a numeric key that lost its leading zeros ('2102' -> '02102'); refuse anything else.

    ``warnings=None`` means padding is the file's published form (LOCCO) and needs no warning.
    """
    s = frame[column].astype(str).str.strip()
    bad = ~s.str.fullmatch(rf"\d{{1,{width}}}")
    if bad.any():
        raise _refuse(source, frame, bad, column, f"is not a number of at most {width} digits", header)
    short = s.str.len() < width
    if short.any() and warnings is not None:
        i = short.to_numpy().nonzero()[0][0]
        warnings.append(f"{source}: field {header!r}: zero-padded {int(short.sum())} value(s) that lost their "
                        f"leading zeros (e.g. row {int(frame['source_row'].iloc[i])}: {s.iloc[i]!r})")
    frame[column] = s.str.zfill(width)


def _decimals(source: str, frame: pd.DataFrame, column: str, places: int, header: str) -> None:
    """Exact Decimal with ``places`` decimals; CMS prints '1' for 1.000 in these files, which is exact."""
    s = frame[column].astype(str).str.strip()
    bad = ~s.str.fullmatch(rf"\d{{1,6}}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}}")
    if bad.any():
        raise _refuse(source, frame, bad, column, f"is not a number with at most {places} decimals", header)
    quantum = Decimal(1).scaleb(-places)
    values = s.tolist()
    cache = {v: Decimal(v).quantize(quantum) for v in set(values)}
    frame[column] = pd.Series([cache[v] for v in values], index=frame.index, dtype=object)


def _year_from(text: str) -> int | None:
    m = re.search(r"(?<!\d)(20\d{2})(?!\d)", text)
    return int(m.group(1)) if m else None


def _name(source: str) -> str:
    return PurePosixPath(source.split("!")[-1]).name


# ------------------------------------------------------------------------------------------------
# GPCI

_GPCI_PATTERNS = [
    (r"MEDICARE ADMINISTRATIVE CONTRACTOR.*|MAC|CONTRACTOR|CARRIER|MEDICARE ADMI", "mac"),
    (r"STATE", "state"),
    (r"LOCALITY NUMBER|LOCALITY", "locality"),
    (r"LOCALITY NAME", "locality_name"),
    (r"(?:CY )?\d{4} (?:PW|WORK) GPCI.*WITHOUT.*FLOOR.*", "gpci_work_no_floor"),
    (r"(?:CY )?\d{4} (?:PW|WORK) GPCI.*", "gpci_work"),
    (r"(?:CY )?\d{4} PE GPCI.*", "gpci_pe"),
    (r"(?:CY )?\d{4} MP GPCI.*", "gpci_mp"),
]
_GPCI_HEADERS = {"mac": "Medicare Administrative Contractor (MAC)", "state": "State",
                 "locality": "Locality Number", "locality_name": "Locality Name",
                 "gpci_work": "PW GPCI", "gpci_work_no_floor": "PW GPCI (without floor)",
                 "gpci_pe": "PE GPCI", "gpci_mp": "MP GPCI"}


def _is_gpci_header(cells: list[str]) -> bool:
    return any("GPCI" in c for c in cells) and any(c == "STATE" for c in cells)


def _gpci_from_rows(source: str, rows: Rows, warnings: list[str], fmt: str) -> ParsedTable:
    header_index = _find_header_row(source, rows, _is_gpci_header, "GPCI", "Medicare Administrative Contractor")
    line, cells = rows[header_index]
    required = ["mac", "state", "locality", "locality_name", "gpci_work", "gpci_pe", "gpci_mp"]
    columns = _map_header(source, cells, line, _GPCI_PATTERNS, required, _GPCI_HEADERS)
    years = {_year_from(cells[j]) for c, j in columns.items() if c.startswith("gpci")}
    years.discard(None)
    if len(years) > 1:
        raise InputFileError(source, f"the GPCI headers name several years {sorted(years)}", row=line,
                             field="PW GPCI")
    title = " ".join(c for _, cs in rows[:header_index] for c in cs if c.strip())
    year = years.pop() if years else _year_from(title)
    frame, notes = _data_frame(source, rows, header_index + 1, columns, "mac", _GPCI_HEADERS)
    if frame.empty:
        raise InputFileError(source, "no locality rows after the header: the file is truncated",
                             row=line + 1, field=_GPCI_HEADERS["mac"])
    _pad_digits(source, frame, "mac", 5, _GPCI_HEADERS["mac"], warnings)
    _pad_digits(source, frame, "locality", 2, _GPCI_HEADERS["locality"], warnings)
    state = frame["state"].astype(str).str.upper()
    bad = ~state.str.fullmatch(r"[A-Z]{2}")
    if bad.any():
        raise _refuse(source, frame, bad, "state", "is not a 2-letter state code", "State")
    frame["state"] = state
    # footnote stars (ALASKA*: 1.5 work floor; WYOMING**: frontier PE floor) are explained in the notes
    frame["locality_name"] = frame["locality_name"].astype(str).str.rstrip("* ").str.strip()
    for column in ("gpci_work", "gpci_pe", "gpci_mp", "gpci_work_no_floor"):
        if column in frame.columns:
            _decimals(source, frame, column, 3, _GPCI_HEADERS[column])
    frame["locality_id"] = frame["mac"] + "-" + frame["locality"]
    out_columns = [*GPCI_COLUMNS, *(["gpci_work_no_floor"] if "gpci_work_no_floor" in frame.columns else []),
                   "source_row"]
    meta = {"year": year, "gpci_format": fmt, "gpci_notes": notes,
            "gpci_work_floor": "with 1.0 floor" if "FLOOR" in _norm(cells[columns["gpci_work"]]) else "as printed"}
    return ParsedTable(table="gpci", frame=frame[out_columns].reset_index(drop=True), source=source,
                       meta=meta, warnings=warnings)


def parse_gpci_csv(source: str, data: bytes) -> ParsedTable:
    """Addendum E GPCI CSV: title, blank, header, one row per locality, footnotes."""
    rows, warnings = _text_rows(source, data, "Medicare Administrative Contractor",
                                ["MAC", "State", "Locality Number", "Locality Name", "PW GPCI", "PE GPCI", "MP GPCI"])
    return _gpci_from_rows(source, rows, warnings, "csv")


def parse_gpci_xlsx(source: str, data: bytes) -> ParsedTable:
    return _gpci_from_rows(source, _xlsx_text_rows(source, data), [], "xlsx")


_NUM = r"(\d*\.?\d+)"
_GPCI_TXT_ROW = re.compile(rf"^(\d{{4,5}})\s+([A-Z]{{2}})\s+(\d{{1,2}})\s+(\S.*?)\s+{_NUM}\s+{_NUM}\s+{_NUM}\s*$")


def parse_gpci_txt(source: str, data: bytes) -> ParsedTable:
    """The fixed-width twin (GPCI2025.txt): same content, columns separated by runs of spaces."""
    text, warnings = decode_text(source, data, lambda prefix: "Medicare Administrative Contractor",
                                 first_field="Medicare Administrative Contractor")
    text = strip_eof_marker(text, source, warnings)
    lines = text.split("\n")
    header = next((i for i, raw in enumerate(lines[:40]) if "PE GPCI" in raw.upper() and "STATE" in raw.upper()),
                  None)
    if header is None:
        raise InputFileError(source, "no GPCI header line (with 'State' and 'GPCI') in the first 40 lines",
                             row=min(len(lines), 40), field="Medicare Administrative Contractor")
    head = lines[header].upper()
    if "WITHOUT" in head:
        raise InputFileError(source, "this GPCI text file has two work GPCI columns; load the CSV instead",
                             row=header + 1, field="PW GPCI")
    year = _year_from(head) or ""
    rows: Rows = [(header + 1, ["Medicare Administrative Contractor (MAC)", "State", "Locality Number",
                                "Locality Name", f"{year} PW GPCI", f"{year} PE GPCI", f"{year} MP GPCI"])]
    for number, raw in enumerate(lines[header + 1:], start=header + 2):
        line = raw.rstrip("\r")
        m = _GPCI_TXT_ROW.match(line)
        if m:
            rows.append((number, list(m.groups())))
        elif re.match(r"^\d{4,5}\s", line):
            raise InputFileError(source, f"locality line does not have MAC, state, locality, name and three "
                                         f"GPCIs: {line.strip()[:80]!r}", row=number, field="GPCI")
        elif line.strip():
            rows.append((number, [line.strip(), "", "", "", "", "", ""]))
    parsed = _gpci_from_rows(source, rows, warnings, "txt")
    if parsed.meta["year"] is None:
        parsed.meta["year"] = _year_from(" ".join(lines[:header]))
    return parsed


# ------------------------------------------------------------------------------------------------
# LOCCO (locality / county crosswalk)

_LOCCO_PATTERNS = [
    (r"MEDICARE ADMI[NS]+TRATIVE CONTRACTOR.*|MAC|CONTRACTOR|CARRIER", "mac"),
    (r"LOCALITY NUMBER|LOCALITY", "locality"),
    (r"STATE", "state"),
    (r"FEE SCHEDULE AREA", "fee_schedule_area"),
    (r"COUNTIES", "counties"),
]
_LOCCO_HEADERS = {"mac": "Medicare Adminstrative Contractor", "locality": "Locality Number", "state": "State",
                  "fee_schedule_area": "Fee Schedule Area", "counties": "Counties"}


def _locco_from_rows(source: str, rows: Rows, warnings: list[str], fmt: str) -> ParsedTable:
    header_index = _find_header_row(source, rows, lambda c: "COUNTIES" in c and "FEE SCHEDULE AREA" in c,
                                    "LOCCO", "Medicare Adminstrative Contractor")
    line, cells = rows[header_index]
    columns = _map_header(source, cells, line, _LOCCO_PATTERNS, list(_LOCCO_HEADERS), _LOCCO_HEADERS)
    title = " ".join(c for _, cs in rows[:header_index] for c in cs if c.strip())
    frame, notes = _data_frame(source, rows, header_index + 1, columns, "mac", _LOCCO_HEADERS)
    if frame.empty:
        raise InputFileError(source, "no locality rows after the header: the file is truncated",
                             row=line + 1, field=_LOCCO_HEADERS["mac"])
    # the published CSV drops leading zeros ('2102', '1'): padding restores the printed codes
    padded = int((frame["mac"].str.len() < 5).sum() + (frame["locality"].str.len() < 2).sum())
    _pad_digits(source, frame, "mac", 5, _LOCCO_HEADERS["mac"], None)
    _pad_digits(source, frame, "locality", 2, _LOCCO_HEADERS["locality"], None)
    # the state is printed on the first row of each state only
    state = frame["state"].astype(str).str.strip().replace("", pd.NA)
    if pd.isna(state.iloc[0]):
        raise InputFileError(source, "the first locality row has no state", row=int(frame["source_row"].iloc[0]),
                             field="State")
    frame["state"] = state.ffill().astype(str)
    for column in ("fee_schedule_area", "counties"):
        frame[column] = frame[column].astype(str).str.rstrip("* ").str.strip()
    frame["locality_id"] = frame["mac"] + "-" + frame["locality"]
    dup = frame.duplicated(["mac", "locality", "state", "fee_schedule_area", "counties"])
    if dup.any():
        rows_dropped = frame.loc[dup, "source_row"].tolist()
        warnings.append(f"{source}: dropped {len(rows_dropped)} row(s) repeating an earlier row word for word "
                        f"(rows {rows_dropped})")
        frame = frame[~dup]
    meta = {"year": _year_from(title), "locco_format": fmt, "locco_notes": notes,
            "locco_zero_padded": padded}
    return ParsedTable(table="locco", frame=frame[[*LOCCO_COLUMNS, "source_row"]].reset_index(drop=True),
                       source=source, meta=meta, warnings=warnings)


def parse_locco_csv(source: str, data: bytes) -> ParsedTable:
    rows, warnings = _text_rows(source, data, "Medicare Adminstrative Contractor", list(_LOCCO_HEADERS.values()))
    return _locco_from_rows(source, rows, warnings, "csv")


def parse_locco_xlsx(source: str, data: bytes) -> ParsedTable:
    return _locco_from_rows(source, _xlsx_text_rows(source, data), [], "xlsx")


# ------------------------------------------------------------------------------------------------
# ANES (anesthesia conversion factor per locality)

_ANES_PATTERNS = [
    (r"CONTRACTOR|CARRIER|MAC", "mac"),
    (r"LOCALITY", "locality"),
    (r"LOCALITY NAME", "locality_name"),
    (r".*ANES CF.*", "anes_cf"),
]
_ANES_HEADERS = {"mac": "Contractor", "locality": "Locality", "locality_name": "Locality Name",
                 "anes_cf": "Anes CF"}


def _anes_from_rows(source: str, rows: Rows, warnings: list[str], fmt: str) -> ParsedTable:
    header_index = _find_header_row(source, rows, lambda c: any("ANES CF" in x for x in c), "ANES", "Contractor")
    line, cells = rows[header_index]
    columns = _map_header(source, cells, line, _ANES_PATTERNS, list(_ANES_HEADERS), _ANES_HEADERS)
    m = re.search(r"ANES CF OF\s*(\d+\.\d+)", _norm(cells[columns["anes_cf"]]))
    frame, notes = _data_frame(source, rows, header_index + 1, columns, "mac", _ANES_HEADERS)
    if frame.empty:
        raise InputFileError(source, "no locality rows after the header: the file is truncated",
                             row=line + 1, field="Contractor")
    _pad_digits(source, frame, "mac", 5, "Contractor", warnings if fmt == "csv" else None)
    _pad_digits(source, frame, "locality", 2, "Locality", warnings if fmt == "csv" else None)
    frame["locality_name"] = frame["locality_name"].astype(str).str.rstrip("* ").str.strip()
    _decimals(source, frame, "anes_cf", 2, "Anes CF")
    frame["locality_id"] = frame["mac"] + "-" + frame["locality"]
    meta = {"anes_format": fmt, "anes_notes": notes}
    year = _year_from(_name(source))
    if year:
        meta["year"] = year
    if m:
        meta["national_anes_cf"] = m.group(1)
    else:
        warnings.append(f"{source}: the header does not state the national anesthesia conversion factor")
    return ParsedTable(table="anes", frame=frame[[*ANES_COLUMNS, "source_row"]].reset_index(drop=True),
                       source=source, meta=meta, warnings=warnings)


def parse_anes_csv(source: str, data: bytes) -> ParsedTable:
    rows, warnings = _text_rows(source, data, "Contractor", list(_ANES_HEADERS.values()))
    return _anes_from_rows(source, rows, warnings, "csv")


def parse_anes_xlsx(source: str, data: bytes) -> ParsedTable:
    return _anes_from_rows(source, _xlsx_text_rows(source, data), [], "xlsx")


# ------------------------------------------------------------------------------------------------
# OPPSCAP

_OPPSCAP_PATTERNS = [
    (r"HCPCS", "hcpcs"), (r"MOD", "modifier"), (r"PROCSTAT|PROC STAT|STATUS", "proc_status"),
    (r"CARRIER|MAC|CONTRACTOR", "mac"), (r"LOCALITY", "locality"),
    (r"FACILITY PRICE", "facility_price"), (r"NON-?FACILI?TY PRICE", "nonfacility_price"),
]
_OPPSCAP_HEADERS = {"hcpcs": "HCPCS", "modifier": "MOD", "proc_status": "PROCSTAT", "mac": "CARRIER",
                    "locality": "LOCALITY", "facility_price": "FACILITY PRICE",
                    "nonfacility_price": "NON-FACILTY PRICE"}


def parse_oppscap_csv(source: str, data: bytes) -> ParsedTable:
    """OPPS-capped imaging prices per code/modifier and carrier/locality (billing-domain 1.9)."""
    rows, warnings = _text_rows(source, data, "HCPCS", list(_OPPSCAP_HEADERS.values()))
    header_index = _find_header_row(source, rows, lambda c: "PROCSTAT" in c and "HCPCS" in c, "OPPSCAP", "HCPCS")
    line, cells = rows[header_index]
    columns = _map_header(source, cells, line, _OPPSCAP_PATTERNS, list(_OPPSCAP_HEADERS),
                          _OPPSCAP_HEADERS)
    width = max(columns.values()) + 1
    kept, lines = [], []
    for number, cs in rows[header_index + 1:]:
        if _blank(cs):
            continue
        if len(cs) < width:
            missing = [_OPPSCAP_HEADERS[c] for c, j in columns.items() if j >= len(cs)]
            raise InputFileError(source, f"the row has {len(cs)} fields, the header needs {width}: the row or "
                                         "the file is truncated", row=number, field=missing[0])
        kept.append([cs[j].strip() for j in columns.values()])
        lines.append(number)
    if not kept:
        raise InputFileError(source, "no rows after the header: the file is truncated", row=line + 1, field="HCPCS")
    frame = pd.DataFrame(kept, columns=list(columns), dtype=object)
    frame["source_row"] = pd.Series(lines, dtype="int64")
    frame["hcpcs"] = frame["hcpcs"].str.upper()
    bad = ~frame["hcpcs"].str.fullmatch(r"[A-Z0-9]{5}")
    if bad.any():
        raise _refuse(source, frame, bad, "hcpcs", "is not a 5-character HCPCS code", "HCPCS")
    frame["modifier"] = frame["modifier"].str.upper()
    bad = ~frame["modifier"].isin(MODIFIERS)
    if bad.any():
        raise _refuse(source, frame, bad, "modifier", "is not blank, 26, TC or 53", "MOD")
    frame["proc_status"] = frame["proc_status"].str.upper()
    _pad_digits(source, frame, "mac", 5, "CARRIER", warnings)
    _pad_digits(source, frame, "locality", 2, "LOCALITY", warnings)
    _decimals(source, frame, "facility_price", 2, "FACILITY PRICE")
    _decimals(source, frame, "nonfacility_price", 2, "NON-FACILTY PRICE")
    frame["locality_id"] = frame["mac"] + "-" + frame["locality"]
    for c in ("hcpcs", "modifier", "proc_status", "mac", "locality", "locality_id"):
        frame[c] = frame[c].astype(str)
    return ParsedTable(table="oppscap", frame=frame[[*OPPSCAP_COLUMNS, "source_row"]].reset_index(drop=True),
                       source=source, meta={"oppscap_format": "csv"}, warnings=warnings)


# ------------------------------------------------------------------------------------------------
# sniffing by content


def _head_lines(head: bytes, n: int = 12) -> list[str]:
    if head.startswith(_ZIP_MAGIC):
        return []
    return [ln.rstrip("\r") for ln in head.decode("latin-1").split("\n")[:n]]


def sniff_gpci_csv(name: str, head: bytes) -> bool:
    lines = _head_lines(head)
    return any(_GPCI_TITLE in ln.upper() for ln in lines) and \
        any("GPCI" in ln.upper() and "," in ln and "STATE" in ln.upper() for ln in lines)


def sniff_gpci_txt(name: str, head: bytes) -> bool:
    lines = _head_lines(head)
    return any(_GPCI_TITLE in ln.upper() for ln in lines) and \
        any("PE GPCI" in ln.upper() and "," not in ln and "STATE" in ln.upper() for ln in lines)


def sniff_locco_csv(name: str, head: bytes) -> bool:
    lines = _head_lines(head)
    return any("COUNTIES" in ln.upper() and "FEE SCHEDULE AREA" in ln.upper() and "," in ln for ln in lines)


def sniff_anes_csv(name: str, head: bytes) -> bool:
    lines = _head_lines(head, 3)
    return bool(lines) and bool(re.match(r"^\ufeff?Contractor,Locality,Locality Name,.*Anes CF", lines[0], re.I))


def sniff_oppscap_csv(name: str, head: bytes) -> bool:
    lines = _head_lines(head, 3)
    return bool(lines) and bool(re.match(r"^\ufeff?HCPCS,MOD,PROCSTAT,CARRIER,LOCALITY,", lines[0], re.I))


def _xlsx_sniffer(*needles: str) -> Callable[[str, bytes], bool]:
    def sniff(name: str, head: bytes) -> bool:
        text = "\n".join(xlsx_head_texts(head)).upper()
        return bool(text) and all(n in text for n in needles)

    return sniff


sniff_gpci_xlsx = _xlsx_sniffer(_GPCI_TITLE, "PE GPCI")
sniff_locco_xlsx = _xlsx_sniffer(_LOCCO_TITLE, "FEE SCHEDULE AREA")
sniff_anes_xlsx = _xlsx_sniffer("ANES CF", "LOCALITY NAME")

PARSERS: list[Parser] = [
    Parser(name="GPCI CSV", table="gpci", sniff=sniff_gpci_csv, parse=parse_gpci_csv),
    Parser(name="GPCI TXT", table="gpci", sniff=sniff_gpci_txt, parse=parse_gpci_txt),
    Parser(name="GPCI XLSX", table="gpci", sniff=sniff_gpci_xlsx, parse=parse_gpci_xlsx),
    Parser(name="LOCCO CSV", table="locco", sniff=sniff_locco_csv, parse=parse_locco_csv),
    Parser(name="LOCCO XLSX", table="locco", sniff=sniff_locco_xlsx, parse=parse_locco_xlsx),
    Parser(name="ANES CSV", table="anes", sniff=sniff_anes_csv, parse=parse_anes_csv),
    Parser(name="ANES XLSX", table="anes", sniff=sniff_anes_xlsx, parse=parse_anes_xlsx),
    Parser(name="OPPSCAP CSV", table="oppscap", sniff=sniff_oppscap_csv, parse=parse_oppscap_csv),
]


# ------------------------------------------------------------------------------------------------
# Great Expectations


def _key_expectations(e, full_release: bool, rows: tuple[int, int]) -> list:
    out = [
        e.ExpectColumnValuesToMatchRegex(column="mac", regex=r"^\d{5}$"),
        e.ExpectColumnValuesToMatchRegex(column="locality", regex=r"^\d{2}$"),
        e.ExpectColumnValuesToMatchRegex(column="locality_id", regex=r"^\d{5}-\d{2}$"),
    ]
    if full_release:
        out.append(e.ExpectTableRowCountToBeBetween(min_value=rows[0], max_value=rows[1],
                                                    meta={"full_release_only": True}))
    return out


def gpci_expectations(full_release: bool = True) -> list:
    import great_expectations as gx

    e = gx.expectations
    out = _key_expectations(e, full_release, (80, 130))
    out += [
        e.ExpectCompoundColumnsToBeUnique(column_list=["mac", "locality"]),
        e.ExpectColumnValuesToMatchRegex(column="state", regex=r"^[A-Z]{2}$"),
        e.ExpectColumnValuesToNotBeNull(column="locality_name"),
    ]
    for column in ("gpci_work", "gpci_pe", "gpci_mp"):
        out.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=GPCI_RANGE[0], max_value=GPCI_RANGE[1]))
    return out


def locco_expectations(full_release: bool = True) -> list:
    import great_expectations as gx

    e = gx.expectations
    return [*_key_expectations(e, full_release, (80, 140)),
            e.ExpectCompoundColumnsToBeUnique(column_list=["mac", "locality"]),
            e.ExpectColumnValuesToNotBeNull(column="state"),
            e.ExpectColumnValuesToMatchRegex(column="state", regex=r"^[A-Z][A-Z ./]+$"),
            e.ExpectColumnValuesToMatchRegex(column="counties", regex=r"\S")]


def anes_expectations(full_release: bool = True) -> list:
    import great_expectations as gx

    e = gx.expectations
    return [*_key_expectations(e, full_release, (80, 130)),
            e.ExpectCompoundColumnsToBeUnique(column_list=["mac", "locality"]),
            e.ExpectColumnValuesToBeBetween(column="anes_cf", min_value=10, max_value=40)]


def oppscap_expectations(full_release: bool = True) -> list:
    import great_expectations as gx

    e = gx.expectations
    return [*_key_expectations(e, full_release, (1_000, 100_000)),
            e.ExpectColumnValuesToMatchRegex(column="hcpcs", regex=r"^[A-Z0-9]{4}[A-Z0-9]$"),
            e.ExpectColumnValuesToBeInSet(column="modifier", value_set=["", "TC", "26"]),
            e.ExpectColumnValuesToBeInSet(column="proc_status", value_set=["A", "C", "R", "T"]),
            e.ExpectCompoundColumnsToBeUnique(column_list=["hcpcs", "modifier", "mac", "locality"]),
            e.ExpectColumnValuesToBeBetween(column="facility_price", min_value=0, max_value=100_000),
            e.ExpectColumnValuesToBeBetween(column="nonfacility_price", min_value=0, max_value=100_000)]


EXPECTATIONS: dict[str, Callable[[], list]] = {
    "gpci": gpci_expectations,
    "locco": locco_expectations,
    "anes": anes_expectations,
    "oppscap": oppscap_expectations,
}
