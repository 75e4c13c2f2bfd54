"""Parser for the CMS ZIP-code-to-carrier-locality file (ZIP5, fixed width; billing-domain 1.9).

Why: claims without a locality are priced in the locality of their service ZIP, so every ZIP must map
to exactly one (MAC, locality) with leading zeros intact. The release (``ZIP5-2025Q4``) comes from
the file's own year/quarter field, which must be the same on every record. ZIPs flagged as split
across localities (plus-four flag 1) are kept and flagged; their +4 detail lives in the ZIP9 file,
which this module does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from scrubber.errors import InputFileError
from scrubber.reference.base import ParsedTable, Parser, quarter_start
from scrubber.reference.rvu import decode_text, fixed_width_locator, strip_eof_marker
from scrubber.schemas import ZIP5_COLUMNS

#: 1-based inclusive positions (ZIP5lyout.txt)
ZIP5_LAYOUT: dict[str, tuple[int, int]] = {
    "state": (1, 2), "zip5": (3, 7), "mac": (8, 12), "locality": (13, 14), "rural_indicator": (15, 15),
    "lab_cb_locality": (16, 17), "rural_indicator_2006": (18, 18), "plus_four_flag": (21, 21),
    "part_b_indicator": (23, 23), "year_quarter": (76, 80),
}
ZIP5_RECORD_LENGTH = 80
_FIELD_NAMES = {"state": "State", "zip5": "Zip Code", "mac": "Carrier", "locality": "Pricing Locality",
                "rural_indicator": "Rural Indicator", "lab_cb_locality": "Bene Lab CB Locality",
                "rural_indicator_2006": "Rural Indicator2", "plus_four_flag": "Plus Four Flag",
                "part_b_indicator": "Part B Payment Indicator", "year_quarter": "Year/Quarter"}
#: published format of each field; a record that fails one is refused with its row and field
_FORMATS = {"state": r"[A-Z]{2}", "zip5": r"\d{5}", "mac": r"\d{5}", "locality": r"\d{2}",
            "rural_indicator": r"[ RB]", "plus_four_flag": r"[01]", "year_quarter": r"\d{4}[1-4]"}
_RECORD_RE = re.compile(r"^[A-Z]{2}\d{5}\d{5}\d{2}[ RB]")


def parse_zip5(source: str, data: bytes) -> ParsedTable:
    """ZIP5_<MON><YYYY>.txt -> one row per ZIP with its carrier (MAC) and pricing locality."""
    locate = fixed_width_locator(ZIP5_LAYOUT, _FIELD_NAMES)
    text, warnings = decode_text(source, data, locate, first_field="State")
    text = strip_eof_marker(text, source, warnings)
    raw = pd.Series(text.split("\n"), dtype="str").str.rstrip("\r")
    numbers = pd.Series(np.arange(1, len(raw) + 1), dtype="int64")
    keep = raw.str.strip().ne("")
    lines, numbers = raw[keep].reset_index(drop=True), numbers[keep].reset_index(drop=True)
    if lines.empty:
        raise InputFileError(source, "the file has no records", row=1, field="State")
    lengths = lines.str.len()
    short = lengths < ZIP5_RECORD_LENGTH
    if short.any():
        i = int(short.to_numpy().nonzero()[0][0])
        n = int(lengths.iloc[i])
        field = next((_FIELD_NAMES[c] for c, (a, b) in ZIP5_LAYOUT.items() if b > n), "Year/Quarter")
        raise InputFileError(source, f"the record is {n} characters long, the layout needs {ZIP5_RECORD_LENGTH}: "
                                     "the line or the file is truncated", row=int(numbers.iloc[i]), field=field)
    frame = pd.DataFrame({c: lines.str.slice(a - 1, b) for c, (a, b) in ZIP5_LAYOUT.items()})
    frame["source_row"] = numbers
    for column, pattern in _FORMATS.items():
        bad = ~frame[column].str.fullmatch(pattern)
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise InputFileError(source, f"{frame[column].iloc[i]!r} is not a valid {_FIELD_NAMES[column]} "
                                         f"(expected /{pattern}/); {int(bad.sum())} record(s) affected",
                                 row=int(numbers.iloc[i]), field=_FIELD_NAMES[column])
    quarters = frame["year_quarter"].unique()
    if len(quarters) != 1:
        other = frame["year_quarter"].ne(frame["year_quarter"].iloc[0])
        i = int(other.to_numpy().nonzero()[0][0])
        raise InputFileError(source, f"records of several quarters {sorted(quarters)} in one file",
                             row=int(numbers.iloc[i]), field="Year/Quarter")
    yq = quarters[0]
    year, quarter = int(yq[:4]), int(yq[4])
    frame["rural_indicator"] = frame["rural_indicator"].str.strip()
    for c in ("lab_cb_locality", "rural_indicator_2006", "part_b_indicator"):
        frame[c] = frame[c].str.strip()
    frame["locality_id"] = frame["mac"] + "-" + frame["locality"]
    columns = [*ZIP5_COLUMNS, "lab_cb_locality", "part_b_indicator", "source_row"]
    meta = {"zip_year_quarter": yq, "zip_split_zips": int(frame["plus_four_flag"].eq("1").sum())}
    return ParsedTable(table="zip5", frame=frame[columns], source=source, release=f"ZIP5-{year}Q{quarter}",
                       effective_from=quarter_start(year, quarter), meta=meta, warnings=warnings)


def sniff_zip5(name: str, head: bytes) -> bool:
    """Fixed-width 80-character records: state, ZIP, carrier, locality, ..., YYYYQ at 76-80."""
    lines = [ln.rstrip("\r") for ln in head.decode("latin-1").split("\n")[:5] if ln.strip()]
    if not lines:
        return False
    return all(len(ln) == ZIP5_RECORD_LENGTH and _RECORD_RE.match(ln) and re.fullmatch(r"\d{4}[1-4]", ln[75:80])
               for ln in lines[:3])


PARSERS: list[Parser] = [Parser(name="ZIP5 locality file", table="zip5", sniff=sniff_zip5, parse=parse_zip5)]


def zip5_expectations(full_release: bool = True) -> list:
    """ZIP -> locality must be a function (unique ZIPs) onto well-formed MAC/locality codes."""
    import great_expectations as gx

    e = gx.expectations
    out = [
        e.ExpectColumnValuesToMatchRegex(column="zip5", regex=r"^\d{5}$"),
        e.ExpectColumnValuesToBeUnique(column="zip5"),
        e.ExpectColumnValuesToMatchRegex(column="state", regex=r"^[A-Z]{2}$"),
        e.ExpectColumnValuesToMatchRegex(column="mac", regex=r"^\d{5}$"),
        e.ExpectColumnValuesToMatchRegex(column="locality", regex=r"^\d{2}$"),
        e.ExpectColumnValuesToMatchRegex(column="locality_id", regex=r"^\d{5}-\d{2}$"),
        e.ExpectColumnValuesToBeInSet(column="rural_indicator", value_set=["", "R", "B"]),
        e.ExpectColumnValuesToBeInSet(column="plus_four_flag", value_set=["0", "1"]),
        e.ExpectColumnUniqueValueCountToBeBetween(column="year_quarter", min_value=1, max_value=1),
    ]
    if full_release:
        out += [e.ExpectTableRowCountToBeBetween(min_value=30_000, max_value=60_000, meta={"full_release_only": True}),
                e.ExpectColumnUniqueValueCountToBeBetween(column="locality_id", min_value=80, max_value=130,
                                                          meta={"full_release_only": True})]
    return out


EXPECTATIONS: dict[str, Callable[[], list]] = {"zip5": zip5_expectations}
