"""What a reference-file parser returns, and the parser registry the loader consults.

A parser recognises its file by content (``sniff``), never by name alone, and turns the bytes into
one canonical table (columns in ``scrubber.schemas``). Release identity comes from the file where
the file says it (banner, name, year/quarter column); the loader reconciles it for the group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pandas as pd


@dataclass
class ParsedTable:
    """One parsed CMS file in canonical form."""

    table: str                      # "pprrvu", "gpci", "locco", "anes", "oppscap", "zip5", "ptp", "mue"
    frame: pd.DataFrame             # canonical columns (scrubber.schemas)
    source: str                     # file name; "archive.zip!inner/name.csv" inside a zip
    release: str | None = None      # e.g. "RVU25D", "PTP-2025Q4", "MUE-2026Q3", "ZIP5-2025Q4"
    effective_from: date | None = None
    meta: dict = field(default_factory=dict)      # conversion_factor, version ("v313r0"), part ("f1"), year...
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Parser:
    """A reader for one CMS file kind."""

    name: str                                       # human name, e.g. "PPRRVU CSV"
    table: str
    sniff: Callable[[str, bytes], bool]             # (file name, first 64 KiB) -> is it mine?
    parse: Callable[[str, bytes], ParsedTable]      # (file name, whole content) -> table


def quarter_start(year: int, quarter: int) -> date:
    return date(year, 3 * (quarter - 1) + 1, 1)


RVU_LETTER_QUARTER = {"A": 1, "B": 2, "C": 3, "D": 4}
MONTH_QUARTER = {"jan": 1, "january": 1, "apr": 2, "april": 2, "jul": 3, "july": 3, "oct": 4, "october": 4}
