"""Write full real NCCI tables back out in the exact CMS file layouts (for tests and benchmarks).

The official PTP and MUE files are too large to keep in the shared reference folder, so the full
tables exist there only in converted forms (Parquet / JSON, values real). These writers turn them
back into byte-faithful CMS layouts, modelled on the real excerpts:

- PTP: ``ccipra-v322r0-f1`` TXT (copyright line, ``Column1/Column2 Edits``, a header wrapped over
  four lines, tab-delimited data from line 7, CRLF line endings);
- MUE: ``MCR_MUE_PractitionerServices_Eff_07-01-2026`` CSV (a quoted multi-line AMA notice as the
  first record, a header whose first cell holds a line break, CRLF records, Latin-1 bytes).

Everything here is vectorised so the 2.5M-row PTP table is written in a few seconds.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scrubber.schemas import MUE_COLUMNS

# --- PTP -----------------------------------------------------------------------------------------

#: The six header lines of a practitioner PTP TXT part, exactly as CMS prints them ({year} = the
#: CPT copyright year, which is the year before the release year in the v32.2 excerpt).
PTP_HEADER_LINES: tuple[str, ...] = (
    "CPT only copyright {year} American Medical Association.  All rights reserved.\t\t\t\t\t\t",
    "Column1/Column2 Edits\t\t\t\t\t\t",
    "Column 1\tColumn 2\t*=in existence\tEffective\tDeletion\tModifier\tPTP Edit Rationale",
    "\t\tprior to 1996\tDate\tDate\t0=not allowed\t",
    "\t\t\t\t*=no data\t1=allowed\t",
    "\t\t\t\t\t9=not applicable\t",
)

#: The placeholder effective date of edits in existence before 1996.
PRE_1996_EFFECTIVE = "19960101"
#: How the converted source marks an edit that is not deleted (CMS prints "*").
SOURCE_NO_DELETION = "9999-12-31"


def ptp_file_name(year: int, quarter: int, version: str, part: int, suffix: str = ".txt") -> str:
    return f"medicare-ncci-{year}q{quarter}-practitioner-ptp-edits-ccipra-{version}-f{part}{suffix}"


def ptp_placeholder_effective(prior_1996: pd.Series, deletion_iso: pd.Series, modifier_indicator: pd.Series,
                              *, year: int, quarter: int) -> pd.Series:
    """Effective dates (``YYYYMMDD``) for a source that dropped the CMS Effective Date column.

    The converted 2024Q2 table has no effective date, so a CMS-layout copy must invent one. The
    rule keeps every row valid and close to the patterns seen in real files:

    1. indicator 9 (deleted retroactively): effective = deletion date (CMS prints them equal);
    2. ``*`` in "in existence prior to 1996": 19960101;
    3. other deleted edits: the first day of the quarter that contains the deletion date (CMS
       deletion dates are quarter ends, effective dates quarter starts), so effective <= deletion;
    4. active edits: the first day of the release quarter (``year``/``quarter``), so every edit
       applies to any date of service inside the release it is written for.
    """
    def arrow_text(series: pd.Series) -> pa.Array:
        return pc.fill_null(pc.cast(pa.array(series, from_pandas=True), pa.string()), "")

    eff = _placeholder_effective(arrow_text(prior_1996), arrow_text(deletion_iso), arrow_text(modifier_indicator),
                                 year=year, quarter=quarter)
    return pd.Series(eff.to_pandas(), dtype="str").set_axis(deletion_iso.index)


def _placeholder_effective(prior: pa.Array, deletion: pa.Array, indicator: pa.Array, *,
                           year: int, quarter: int) -> pa.Array:
    """Arrow core of ``ptp_placeholder_effective`` (string arrays in, ``YYYYMMDD`` strings out)."""
    del8 = pc.replace_substring(deletion, "-", "")
    month = pc.cast(pc.utf8_slice_codeunits(del8, 4, 6), pa.int64())
    quarter_month = pc.add(pc.multiply(pc.divide(pc.subtract(month, 1), 3), 3), 1)
    quarter_start = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(del8, 0, 4), pc.utf8_lpad(pc.cast(quarter_month, pa.string()), 2, "0"), "01", "")
    active = pc.equal(deletion, SOURCE_NO_DELETION)
    release_start = f"{year:04d}{3 * (quarter - 1) + 1:02d}01"
    eff = pc.if_else(active, release_start, quarter_start)
    eff = pc.if_else(pc.equal(prior, "*"), PRE_1996_EFFECTIVE, eff)
    return pc.if_else(pc.and_(pc.equal(indicator, "9"), pc.invert(active)), del8, eff)


def _joined_bytes(lines: pa.Array) -> tuple[bytes, np.ndarray]:
    """The concatenated UTF-8 bytes of a string array and its offsets (row i = data[o[i]:o[i+1]])."""
    lines = lines.cast(pa.large_string())
    _validity, offsets_buf, data_buf = lines.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[lines.offset: lines.offset + len(lines) + 1]
    return data_buf.to_pybytes(), offsets


def _ptp_lines(column_1: pa.Array, column_2: pa.Array, prior: pa.Array, effective8: pa.Array,
               deletion8: pa.Array, indicator: pa.Array, rationale: pa.Array) -> tuple[bytes, np.ndarray]:
    """Tab-joined CRLF data lines (all inputs are string arrays in CMS spelling)."""
    lines = pc.binary_join_element_wise(column_1, column_2, prior, effective8, deletion8, indicator,
                                        rationale, "\t")
    lines = pc.binary_join_element_wise(lines, "\r\n", "")
    return _joined_bytes(lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines)


def ptp_header(copyright_year: int) -> bytes:
    return ("\r\n".join(PTP_HEADER_LINES).format(year=copyright_year) + "\r\n").encode("ascii")


def write_ptp_file(frame: pd.DataFrame, path: str | Path, *, copyright_year: int) -> Path:
    """Write a canonical ``ptp`` frame (schemas.PTP_COLUMNS) as one CMS TXT part (NaT deletion -> ``*``)."""
    def text(column: str) -> pa.Array:
        return pa.array(frame[column].astype(str).to_numpy(dtype=object), type=pa.string())

    def yyyymmdd(column: str) -> pa.Array:
        values = pa.array(pd.to_datetime(frame[column]).to_numpy(dtype="datetime64[s]"), type=pa.timestamp("s"))
        return pc.fill_null(pc.strftime(values, format="%Y%m%d"), "*")

    data, _ = _ptp_lines(text("column_1"), text("column_2"), text("prior_1996"), yyyymmdd("effective_date"),
                         yyyymmdd("deletion_date"), text("modifier_indicator"), text("rationale"))
    path = Path(path)
    path.write_bytes(ptp_header(copyright_year) + data)
    return path


def write_ptp_parts(parquet_path: str | Path, out_dir: str | Path, *, year: int = 2025, quarter: int = 4,
                    version: str = "v313r0", parts: int = 4, zipped: bool = False) -> list[Path]:
    """Write the converted practitioner PTP table as ``parts`` CMS TXT parts (optionally zipped).

    Source: a Parquet with ``column_1, column_2, prior_1996 ('*'/''), deletion_date (ISO, 9999-12-31
    = active), modifier_indicator (0/1/9), rationale`` (the shared 2024Q2 v30.1 table). Rows keep
    their source order; parts are consecutive column 1 ranges of about equal size (a column 1 code
    never straddles two parts), like the CMS f1..f4 split. Effective dates are placeholders, see
    ``ptp_placeholder_effective``. Deletion 9999-12-31 is written as CMS ``*``.

    Files are named ``medicare-ncci-{year}q{quarter}-practitioner-ptp-edits-ccipra-{version}-f{n}.txt``;
    with ``zipped=True`` each part is a ``.zip`` of that name holding ``ccipra-{version}-f{n}.txt``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(parquet_path).combine_chunks()
    column_1 = table["column_1"].cast(pa.string())
    deletion_iso = table["deletion_date"].cast(pa.string())
    prior = pc.fill_null(table["prior_1996"].cast(pa.string()), "")
    indicator = pc.cast(table["modifier_indicator"], pa.string())
    eff = _placeholder_effective(prior, deletion_iso, indicator, year=year, quarter=quarter)
    deletion = pc.replace_substring(deletion_iso, "-", "")
    deletion = pc.if_else(pc.equal(deletion, SOURCE_NO_DELETION.replace("-", "")), "*", deletion)
    data, offsets = _ptp_lines(column_1, table["column_2"].cast(pa.string()), prior, eff, deletion, indicator,
                               table["rationale"].cast(pa.string()))

    n_rows = len(table)
    changes = pc.not_equal(column_1.slice(1), column_1.slice(0, n_rows - 1))
    group_starts = np.flatnonzero(changes.to_numpy(zero_copy_only=False)) + 1
    bounds = [0]
    for k in range(1, parts):
        target = n_rows * k / parts
        i = int(np.searchsorted(group_starts, target))
        candidates = [group_starts[j] for j in (i - 1, i) if 0 <= j < len(group_starts)]
        cut = min(candidates, key=lambda c: abs(c - target)) if candidates else n_rows
        bounds.append(max(int(cut), bounds[-1]))
    bounds.append(n_rows)

    header = ptp_header(year - 1)
    written: list[Path] = []
    for n in range(1, parts + 1):
        body = data[offsets[bounds[n - 1]]: offsets[bounds[n]]]
        content = header + body
        if zipped:
            path = out_dir / ptp_file_name(year, quarter, version, n, ".zip")
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                zf.writestr(f"ccipra-{version}-f{n}.txt", content)
        else:
            path = out_dir / ptp_file_name(year, quarter, version, n)
            path.write_bytes(content)
        written.append(path)
    return written


# --- MUE -----------------------------------------------------------------------------------------

#: The AMA notice CMS puts in the first CSV record (inner line breaks are LF; {year} = CPT year).
MUE_NOTICE = (
    "Current Procedural Terminology (CPT) codes, descriptions and other data only are copyright {year} "
    "American Medical Association. All rights reserved. \n\nCPT\u00ae is a registered trademark of the "
    "American Medical Association.\n\nApplicable FARS/DFARS Restrictions Apply to Government Use. \n\n"
    "Fee schedules, relative value units, conversion factors and/or related components are not assigned "
    "by the AMA, are not part of CPT, and the AMA is not recommending their use.  The AMA does not "
    "directly or indirectly practice medicine or dispense medical services.  The AMA assumes no "
    "liability for the data contained or not contained herein."
)
MUE_HEADER: tuple[str, ...] = ("HCPCS/\nCPT Code", "Practitioner Services MUE Values",
                               "MUE Adjudication Indicator", "MUE Rationale")
#: MAI digit -> CMS text. "1 Line Edit" is the form seen in a third-party fixture (billing-domain 5.1).
MAI_TEXT: dict[int, str] = {1: "1 Line Edit", 2: "2 Date of Service Edit: Policy",
                            3: "3 Date of Service Edit: Clinical"}


def mue_file_name(eff: str, suffix: str = ".csv") -> str:
    return f"MCR_MUE_PractitionerServices_Eff_{eff}{suffix}"


def read_mue_source(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A full MUE table in canonical columns (hcpcs, mue_value, mai, rationale).

    Accepts the shared 2024Q3 Parquet (hcpcs_code, mue_units, mue_mai, mue_rationale, ...), the 2026
    JSON (``[[code, value, mai, rationale], ...]``) or a frame already in canonical columns.
    """
    if isinstance(source, pd.DataFrame):
        frame = source
    elif str(source).endswith(".json"):
        frame = pd.DataFrame(json.loads(Path(source).read_text(encoding="utf-8")), columns=MUE_COLUMNS)
    else:
        frame = pd.read_parquet(source).rename(columns={
            "hcpcs_code": "hcpcs", "mue_units": "mue_value", "mue_mai": "mai", "mue_rationale": "rationale"})
    frame = frame[MUE_COLUMNS].copy()
    frame["hcpcs"] = frame["hcpcs"].astype(str)
    frame["mue_value"] = frame["mue_value"].astype("int64")
    frame["mai"] = frame["mai"].astype("int64")
    frame["rationale"] = frame["rationale"].fillna("").astype(str)
    return frame.reset_index(drop=True)


def _mue_out_path(out_path: str | Path, eff: str, suffix: str) -> Path:
    out_path = Path(out_path)
    if out_path.suffix.lower() == suffix:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        return out_path
    out_path.mkdir(parents=True, exist_ok=True)
    return out_path / mue_file_name(eff, suffix)


def write_mue_csv(source: str | Path | pd.DataFrame, out_path: str | Path, *, eff: str = "10-01-2025") -> Path:
    """Write a practitioner MUE table as the CMS CSV (layout of the 07-01-2026 excerpt), Latin-1.

    ``out_path`` is a folder (the file is named ``MCR_MUE_PractitionerServices_Eff_{eff}.csv``) or a
    ``.csv`` path. The AMA notice's copyright year is the year before ``eff`` (as in the excerpt).
    """
    frame = read_mue_source(source)
    path = _mue_out_path(out_path, eff, ".csv")
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([MUE_NOTICE.format(year=int(eff[-4:]) - 1), "", "", ""])
    writer.writerow(MUE_HEADER)
    mai_text = frame["mai"].map(MAI_TEXT)
    writer.writerows(zip(frame["hcpcs"], frame["mue_value"].astype(str), mai_text, frame["rationale"],
                         strict=True))
    path.write_bytes(buf.getvalue().encode("latin-1"))
    return path


def write_mue_xlsx(source: str | Path | pd.DataFrame, out_path: str | Path, *, eff: str = "10-01-2025") -> Path:
    """Write the MUE table as an XLSX with the CSV's layout (row 1 notice, row 2 header, data from row 3).

    CMS also publishes the table as XLSX; its exact cell layout was not available here, so this
    mirrors the CSV record by record (values as numbers, codes as text).
    """
    import xlsxwriter

    frame = read_mue_source(source)
    path = _mue_out_path(out_path, eff, ".xlsx")
    workbook = xlsxwriter.Workbook(str(path))   # shared strings, as Excel writes them
    sheet = workbook.add_worksheet("Sheet1")
    sheet.write_string(0, 0, MUE_NOTICE.format(year=int(eff[-4:]) - 1))
    for col, text in enumerate(MUE_HEADER):
        sheet.write_string(1, col, text)
    mai_text = frame["mai"].map(MAI_TEXT).tolist()
    for i, (code, value, rationale) in enumerate(zip(frame["hcpcs"], frame["mue_value"].tolist(),
                                                     frame["rationale"], strict=True)):
        sheet.write_string(i + 2, 0, code)
        sheet.write_number(i + 2, 1, value)
        sheet.write_string(i + 2, 2, mai_text[i])
        sheet.write_string(i + 2, 3, rationale)
    workbook.close()
    return path
