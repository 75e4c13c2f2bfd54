"""PPRRVU parsers on the real CMS files: CSV, fixed-width TXT and XLSX agree row for row, national
amounts reproduce CMS's arithmetic, the 2026 32-column layout loads, a spreadsheet-damaged file is
repaired exactly (with warnings) or refused, and broken files fail with file, row and field."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scrubber.errors import InputFileError, ValidationFailed
from scrubber.money import CF_SCALE, GPCI_SCALE, RVU_SCALE, fee_cents
from scrubber.reference import gpci, rvu, zipcodes
from scrubber.reference.validate import validate_table
from scrubber.schemas import PPRRVU_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "reference-data"
RVU25D = SHARED / "cms-rvu" / "RVU25D_2025_Oct"
RVU26C = SHARED / "cms-rvu" / "RVU26C_2026_Jul"
RESAVED = SHARED / "cms-rvu" / "RVU25A_2025_Jan_RESAVED_nonofficial" / "PPRRVU25_JAN1.csv"
SAMPLE = REPO / "data" / "reference" / "sample-rvu25d"

DECIMALS = list(rvu.DECIMAL_PLACES)
CODES = [c for c in PPRRVU_COLUMNS if c not in (*DECIMALS, "description", "nonfacility_na", "facility_na")]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} is not available under ../shared/reference-data")
    return path


@pytest.fixture(scope="module")
def csv25_bytes() -> bytes:
    return _need(RVU25D / "PPRRVU2025_Oct.csv").read_bytes()


@pytest.fixture(scope="module")
def csv25(csv25_bytes: bytes):
    return rvu.parse_pprrvu_csv("PPRRVU2025_Oct.csv", csv25_bytes)


@pytest.fixture(scope="module")
def csv26():
    path = _need(RVU26C / "PPRRVU2026_Jul_nonQPP.csv")
    return rvu.parse_pprrvu_csv(path.name, path.read_bytes())


def _row(frame: pd.DataFrame, hcpcs: str, modifier: str = "") -> pd.Series:
    hit = frame[(frame["hcpcs"] == hcpcs) & (frame["modifier"] == modifier)]
    assert len(hit) == 1, (hcpcs, modifier, len(hit))
    return hit.iloc[0]


def _national_cents(row: pd.Series, setting: str) -> int:
    pe = row["pe_rvu_nonfacility"] if setting == "nf" else row["pe_rvu_facility"]
    return int(fee_cents(int(row["work_rvu"] * RVU_SCALE), int(pe * RVU_SCALE), int(row["mp_rvu"] * RVU_SCALE),
                         GPCI_SCALE, GPCI_SCALE, GPCI_SCALE, int(row["conversion_factor"] * CF_SCALE)))


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


# --- the published files -----------------------------------------------------------------------


def test_csv_2025_identity_types_and_leading_zeros(csv25) -> None:
    pt = csv25
    assert pt.table == "pprrvu" and pt.release == "RVU25D" and pt.effective_from == date(2025, 10, 1)
    assert pt.meta["conversion_factor"] == "32.3465" and pt.meta["released"] == "2025-09-11"
    assert pt.meta["pprrvu_columns"] == 31 and pt.warnings == []
    f = pt.frame
    assert len(f) == 19_090
    assert list(f.columns) == [*PPRRVU_COLUMNS, "source_row", *rvu.HELPER_COLUMNS]
    assert f["source_row"].iloc[0] == 11 and f["source_row"].iloc[-1] == 19_100
    for column in DECIMALS:
        assert all(type(v) is Decimal for v in f[column]), column
    assert f["nonfacility_na"].dtype == bool and f["facility_na"].dtype == bool
    for column in CODES:
        assert all(isinstance(v, str) for v in f[column]), column
    r = _row(f, "20553")
    assert (r["phys_supervision"], r["global_days"], r["pctc_indicator"], r["mult_proc"]) == ("09", "000", "0", "2")
    assert (r["work_rvu"], r["pe_rvu_nonfacility"], r["pe_rvu_facility"], r["mp_rvu"]) == \
        (Decimal("0.75"), Decimal("0.98"), Decimal("0.41"), Decimal("0.08"))
    assert str(r["work_rvu"]) == "0.75" and str(r["conversion_factor"]) == "32.3465"
    assert r["pricing_indicator"] == "" and r["endo_base"] == ""
    assert _row(f, "00100")["status_code"] == "J"            # numeric code with leading zeros kept
    assert str(_row(f, "17000")["preop_pct"]) == "0.10"
    assert bool(_row(f, "96372")["facility_na"]) and not bool(_row(f, "96372")["nonfacility_na"])
    assert _row(f, "71046", "TC")["phys_supervision"] == "01"
    # the documented distributions of RVU25D (billing-domain 1.5, 1.7, 1.10)
    assert f["status_code"].value_counts().to_dict()["T"] == 8
    assert f["global_days"].value_counts().to_dict() == {"XXX": 11_722, "090": 3_767, "000": 1_371, "YYY": 967,
                                                          "ZZZ": 775, "010": 471, "MMM": 17}
    assert sorted(f.loc[f["modifier"] == "53", "hcpcs"]) == ["44388", "45378", "G0105", "G0121"]
    assert int(f["not_used_for_medicare"].eq("+").sum()) == 148
    assert (f["_total_nonfacility_diff"] == 0).all() and (f["_total_facility_diff"] == 0).all()


def test_key_rows_match_key_rows_md(csv25, csv26) -> None:
    """Values copied from shared/reference-data/KEY_ROWS.md (read out of the CMS files)."""
    expected25 = {  # hcpcs: work, nf pe, f pe, mp, nf total, f total, glob, nf cents, f cents
        "11042": ("1.01", "2.73", "0.68", "0.13", "3.87", "1.82", "000", 12518, 5887),
        "17000": ("0.61", "1.39", "1.00", "0.05", "2.05", "1.66", "010", 6631, 5370),
        "20552": ("0.66", "0.84", "0.36", "0.07", "1.57", "1.09", "000", 5078, 3526),
        "20553": ("0.75", "0.98", "0.41", "0.08", "1.81", "1.24", "000", 5855, 4011),
        "20610": ("0.79", "1.04", "0.44", "0.13", "1.96", "1.36", "000", 6340, 4399),
        "96372": ("0.17", "0.25", "0.25", "0.01", "0.43", "0.43", "XXX", 1391, 1391),
        "99213": ("1.30", "1.35", "0.57", "0.10", "2.75", "1.97", "XXX", 8895, 6372),
        "99214": ("1.92", "1.80", "0.83", "0.15", "3.87", "2.90", "XXX", 12518, 9380),
    }
    expected26 = {"20552": (5177, 3574), "20553": (5979, 4075), "99213": (9519, 5745), "99214": (13561, 8450),
                  "11042": (13260, 5578), "96372": (1536, 1536)}
    for code, (w, nfpe, fpe, mp, nft, ft, glob, nf, fac) in expected25.items():
        r = _row(csv25.frame, code)
        got = tuple(str(r[c]) for c in ("work_rvu", "pe_rvu_nonfacility", "pe_rvu_facility", "mp_rvu",
                                        "total_nonfacility", "total_facility"))
        assert got == (w, nfpe, fpe, mp, nft, ft) and r["global_days"] == glob, code
        assert (_national_cents(r, "nf"), _national_cents(r, "f")) == (nf, fac), code
    for code, (nf, fac) in expected26.items():
        r = _row(csv26.frame, code)
        assert (_national_cents(r, "nf"), _national_cents(r, "f")) == (nf, fac), code
    assert not (csv25.frame["hcpcs"] == "J1030").any() and not (csv26.frame["hcpcs"] == "J1030").any()


def test_national_amounts_equal_cms_arithmetic_for_every_payable_code(csv25, csv25_bytes) -> None:
    """fee_cents with GPCIs 1.000 == round_half_up(total x CF) computed independently from the CSV text."""
    reader = list(csv.reader(io.StringIO(csv25_bytes.decode("ascii"), newline="")))
    header = reader[9]
    assert header[0] == "HCPCS" and header[11] == "TOTAL" and header[24] == "FACTOR"
    oracle: dict[tuple[str, str], tuple[int, int]] = {}
    for cells in reader[10:]:
        if cells[3] in ("A", "R", "T"):
            cf = Decimal(cells[24])
            nf = (Decimal(cells[11]) * cf).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            fac = (Decimal(cells[12]) * cf).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            oracle[(cells[0], cells[1])] = (int(nf * 100), int(fac * 100))
    f = csv25.frame[csv25.frame["status_code"].isin(rvu.PAYABLE_STATUS)]
    assert len(f) == len(oracle) == 9_021 + 1_058 + 8

    def scaled(column: str, scale: int) -> np.ndarray:
        return np.array([int(v * scale) for v in f[column]], dtype=np.int64)

    work, mp, cf = scaled("work_rvu", RVU_SCALE), scaled("mp_rvu", RVU_SCALE), scaled("conversion_factor", CF_SCALE)
    one = np.full(len(f), GPCI_SCALE, dtype=np.int64)
    nf = fee_cents(work, scaled("pe_rvu_nonfacility", RVU_SCALE), mp, one, one, one, cf)
    fac = fee_cents(work, scaled("pe_rvu_facility", RVU_SCALE), mp, one, one, one, cf)
    keys = list(zip(f["hcpcs"], f["modifier"], strict=True))
    expected_nf = np.array([oracle[k][0] for k in keys])
    expected_f = np.array([oracle[k][1] for k in keys])
    assert np.array_equal(nf, expected_nf), np.nonzero(nf != expected_nf)
    assert np.array_equal(fac, expected_f), np.nonzero(fac != expected_f)
    assert int(nf[keys.index(("20553", ""))]) == 5855 and int(fac[keys.index(("20553", ""))]) == 4011


@pytest.mark.slow
def test_csv_txt_xlsx_give_identical_tables(csv25) -> None:
    txt = rvu.parse_pprrvu_txt("PPRRVU2025_Oct.txt", _need(RVU25D / "PPRRVU2025_Oct.txt").read_bytes())
    xlsx = rvu.parse_pprrvu_xlsx("PPRRVU2025_Oct.xlsx", _need(RVU25D / "PPRRVU2025_Oct.xlsx").read_bytes())
    for other in (txt, xlsx):
        assert other.release == "RVU25D" and other.effective_from == date(2025, 10, 1)
        assert other.meta["conversion_factor"] == "32.3465" and other.warnings == []
        # identical in every column, descriptions included (after trailing-space trim, which TXT pads)
        pd.testing.assert_frame_equal(csv25.frame.drop(columns="source_row"), other.frame.drop(columns="source_row"))
    assert txt.frame["source_row"].iloc[0] == 8          # 7 HDR lines
    assert xlsx.frame["source_row"].iloc[0] == 11 and xlsx.meta["released"] == "2025-09-11"


def test_2026_file_with_32_columns_loads(csv26) -> None:
    pt = csv26
    assert pt.release == "RVU26C" and pt.effective_from == date(2026, 7, 1)
    assert pt.meta["pprrvu_columns"] == 32 and pt.meta["cf_variant"] == "nonQPP"
    assert pt.meta["conversion_factor"] == "33.4009" and pt.meta["released"] == "2026-06-30"
    assert len(pt.frame) == 19_356 and set(pt.frame["pricing_indicator"]) == {"9"}
    r = _row(pt.frame, "20553")
    assert (str(r["work_rvu"]), str(r["total_nonfacility"]), str(r["total_facility"])) == ("0.73", "1.79", "1.22")
    assert r["endo_base"] == "" and r["phys_supervision"] == "09"   # shifted columns mapped by name


def test_validate_table_accepts_the_real_files(csv25, csv26) -> None:
    validate_table("pprrvu", csv25.frame, csv25.source)
    validate_table("pprrvu", csv26.frame, csv26.source)


def test_validate_table_names_expectation_and_rows(csv25) -> None:
    bad = csv25.frame.copy()
    i, j, k = 100, 200, 300
    bad.loc[i, "status_code"] = "Q"
    bad.loc[j, "total_nonfacility"] = bad.loc[j, "total_nonfacility"] + Decimal("0.05")
    bad.loc[j, "_total_nonfacility_diff"] = Decimal("0.05")
    bad.loc[k, ["hcpcs", "modifier"]] = bad.loc[k - 1, ["hcpcs", "modifier"]].to_list()
    with pytest.raises(ValidationFailed) as info:
        validate_table("pprrvu", bad, "bad.csv")
    failures = {f["expectation"]: f for f in info.value.failures}
    assert int(bad.loc[i, "source_row"]) in failures["expect_column_values_to_be_in_set"]["rows"]
    assert failures["expect_column_values_to_be_between"]["rows"] == [int(bad.loc[j, "source_row"])]
    assert "expect_compound_columns_to_be_unique" in failures


# --- the re-saved (spreadsheet-damaged) January file ------------------------------------------------


@pytest.fixture(scope="module")
def resaved_bytes() -> bytes:
    return _need(RESAVED).read_bytes()


def test_resaved_file_is_repaired_exactly_with_a_warning_per_field(resaved_bytes, csv25) -> None:
    pt = rvu.parse_pprrvu_csv("PPRRVU25_JAN1.csv", resaved_bytes)
    assert pt.release == "RVU25A" and pt.effective_from == date(2025, 1, 1)
    assert pt.meta["released"] == "2024-12-23" and pt.meta["pprrvu_repaired"] is True
    assert len(pt.frame) == 18_865                              # the Ctrl-Z line is not a row
    text = "\n".join(pt.warnings)
    for field in ("'HCPCS'", "'GLOB DAYS'", "'PHYSICIAN SUPERVISION OF DIAGNOSTIC PROCEDURES'", "'WORK RVU'",
                  "'NON-FAC PE RVU'", "'MP USED FOR OPPS PAYMENT AMOUNT'", "Ctrl-Z"):
        assert field in text, field
    assert "'100'->'00100'" in text and "'0'->'000'" in text
    f = pt.frame
    assert set(f["global_days"]) <= set(rvu.GLOBAL_DAYS) and set(f["phys_supervision"]) <= set(rvu.PHYS_SUPERVISION)
    assert f["hcpcs"].str.fullmatch(r"[A-Z0-9]{5}").all()
    # the January values of the key codes are the October ones (KEY_ROWS.md): repaired exactly
    for code in ("20552", "20553", "99213", "11042", "17000"):
        jan, octo = _row(f, code), _row(csv25.frame, code)
        for column in PPRRVU_COLUMNS:
            if column != "description":
                assert jan[column] == octo[column], (code, column)
    assert str(_row(f, "99213")["work_rvu"]) == "1.30"
    validate_table("pprrvu", f, pt.source)


@pytest.mark.parametrize(("old", "new", "field"), [
    (b"\n20553,,Inject trigger points 3/>,A", b"\n1,,Inject trigger points 3/>,A", "HCPCS"),
    (b"3/>,A,,0.75,0.98,,0.41,,0.08,1.81,1.24,0,0,", b"3/>,A,,0.75,0.98,,0.41,,0.08,1.81,1.24,0,5,", "GLOB DAYS"),
    (b"3/>,A,,0.75,", b"3/>,A,,0.755,", "WORK RVU"),
    (b"3/>,A,,0.75,0.98,,0.41,,0.08,1.81,1.24,0,0,0,0,0,2,0,1,0,0,,32.3465,9,",
     b"3/>,A,,0.75,0.98,,0.41,,0.08,1.81,1.24,0,0,0,0,0,2,0,1,0,0,,32.3465,8,",
     "PHYSICIAN SUPERVISION OF DIAGNOSTIC PROCEDURES"),
])
def test_resaved_values_that_cannot_be_repaired_exactly_are_refused(resaved_bytes, old, new, field) -> None:
    assert resaved_bytes.count(old) == 1
    damaged = resaved_bytes.replace(old, new)
    line = resaved_bytes[:resaved_bytes.index(old) + 1].count(b"\n") + 1
    with pytest.raises(InputFileError) as info:
        rvu.parse_pprrvu_csv("PPRRVU25_JAN1.csv", damaged)
    assert (info.value.file, info.value.row, info.value.field) == ("PPRRVU25_JAN1.csv", line, field)
    assert "PPRRVU25_JAN1.csv, row" in str(info.value)


# --- broken files built from the real one ---------------------------------------------------------


def _raises(data: bytes, parse=rvu.parse_pprrvu_csv, name: str = "PPRRVU2025_Oct.csv") -> InputFileError:
    with pytest.raises(InputFileError) as info:
        parse(name, data)
    assert info.value.file == name
    return info.value


def test_truncated_file_names_row_and_field(csv25_bytes) -> None:
    cut = csv25_bytes[:csv25_bytes.index(b"\r\n99214,") + len(b"\r\n99214,,Office o/p est mod 30 min,A,,1.92")]
    err = _raises(cut)
    assert err.row == cut.count(b"\n") + 1 and err.field == "NON-FAC PE RVU"
    # the header and nothing else
    header_only = b"\r\n".join(_lines(csv25_bytes)[:10]) + b"\r\n"
    err = _raises(header_only)
    assert (err.row, err.field) == (11, "HCPCS")


def test_empty_and_blank_files(csv25_bytes) -> None:
    for data in (b"", b"\r\n\r\n", b"\x1a"):
        err = _raises(data)
        assert (err.row, err.field) == (1, "HCPCS")
    for parse in (rvu.parse_pprrvu_txt, rvu.parse_pprrvu_xlsx):
        assert _raises(b"", parse).row == 1


def test_header_moved_or_renamed(csv25_bytes) -> None:
    lines = _lines(csv25_bytes)
    shifted = b"\r\n".join([*lines[:9], b"," + lines[9], *lines[10:]])
    err = _raises(shifted)
    assert (err.row, err.field) == (10, "HCPCS") and "column 2" in err.reason
    renamed = csv25_bytes.replace(b",ENDO,CONV,", b",ENDO,CONVERSION,", 1)
    err = _raises(renamed)
    assert err.row == 10 and err.field == "CONVERSION FACTOR" and "unexpected column header" in err.reason
    missing = b"\r\n".join(b",".join(c for i, c in enumerate(line.split(b",")) if i != 24) if n < 10 else line
                           for n, line in enumerate(lines))
    err = _raises(missing)
    assert (err.row, err.field) == (10, "CONV FACTOR")


def test_extra_banner_line_and_swapped_columns_are_read_by_header(csv25, csv25_bytes) -> None:
    lines = _lines(csv25_bytes)
    extra = b"\r\n".join([lines[0], b",,A LINE SOMEONE ADDED" + b"," * 28, *lines[1:]])
    pt = rvu.parse_pprrvu_csv("PPRRVU2025_Oct.csv", extra)
    assert pt.frame["source_row"].iloc[0] == 12 and len(pt.frame) == 19_090

    def swap(line: bytes) -> bytes:
        cells = next(csv.reader([line.decode("ascii")])) if line else []
        if len(cells) > 10:
            cells[5], cells[10] = cells[10], cells[5]
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(cells)
        return out.getvalue().encode("ascii") if line else line

    swapped = rvu.parse_pprrvu_csv("PPRRVU2025_Oct.csv", b"\r\n".join(swap(x) for x in lines))
    pd.testing.assert_frame_equal(swapped.frame, csv25.frame)


def test_wrong_encoding(csv25_bytes) -> None:
    needle = b"Inject trigger points 3/>"
    line = csv25_bytes[:csv25_bytes.index(needle)].count(b"\n") + 1
    latin = csv25_bytes.replace(needle, b"Inject trigger points 3/> \xe9", 1)
    pt = rvu.parse_pprrvu_csv("PPRRVU2025_Oct.csv", latin)
    assert _row(pt.frame, "20553")["description"].endswith("\u00e9")
    assert any(f"row {line}, field 'DESCRIPTION'" in w and "Windows-1252" in w for w in pt.warnings)
    undefined = csv25_bytes.replace(needle, b"Inject trigger points 3/> \x81", 1)
    err = _raises(undefined)
    assert (err.row, err.field) == (line, "DESCRIPTION")
    err = _raises(csv25_bytes.decode("ascii").encode("utf-16"))
    assert err.row == 1 and err.field == "HCPCS" and "UTF-16" in err.reason
    code = csv25_bytes.replace(b"\r\n20553,", b"\r\n2055\xe9,", 1)  # decodes, but is not a code
    err = _raises(code)
    assert (err.row, err.field) == (line, "HCPCS")


def test_conversion_factor_must_be_one_value(csv25_bytes) -> None:
    old = b"0,0,,32.3465,09,0,99,0.00,0.00,0.00\r\n20553,"
    assert csv25_bytes.count(old) == 1
    bad = csv25_bytes.replace(old, b"0,0,,32.3466,09,0,99,0.00,0.00,0.00\r\n20553,")
    err = _raises(bad)
    assert err.field == "CONV FACTOR" and err.row == bad[:bad.index(b"32.3466")].count(b"\n") + 1


def test_ctrl_z_in_the_middle_is_refused(csv25_bytes) -> None:
    lines = _lines(csv25_bytes)
    err = _raises(b"\r\n".join([*lines[:100], b"\x1a" + b"," * 30, *lines[100:]]))
    assert (err.row, err.field) == (101, "HCPCS")


# --- fixed-width TXT --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def txt25_bytes() -> bytes:
    return _need(RVU25D / "PPRRVU2025_Oct.txt").read_bytes()


def test_txt_tolerates_ctrl_z_and_refuses_truncation_and_shift(txt25_bytes) -> None:
    pt = rvu.parse_pprrvu_txt("PPRRVU2025_Oct.txt", txt25_bytes + b"\x1a")
    assert len(pt.frame) == 19_090 and any("Ctrl-Z" in w for w in pt.warnings)
    lf_only = rvu.parse_pprrvu_txt("PPRRVU2025_Oct.txt", b"\n".join(txt25_bytes.split(b"\r\n")[:1000]))
    assert lf_only.frame["hcpcs"].iloc[0] == "0001F" and len(lf_only.frame) == 993
    err = _raises(txt25_bytes[:-8], rvu.parse_pprrvu_txt, "PPRRVU2025_Oct.txt")
    assert err.row == 19_097 and err.field == "MP USED FOR OPPS PAYMENT AMOUNT"
    err = _raises(txt25_bytes[:-40], rvu.parse_pprrvu_txt, "PPRRVU2025_Oct.txt")
    assert err.row == 19_097 and err.field == "CONV FACTOR"
    lines = txt25_bytes.split(b"\r\n")
    lines[20] = b" " + lines[20][:-1]
    err = _raises(b"\r\n".join(lines), rvu.parse_pprrvu_txt, "PPRRVU2025_Oct.txt")
    assert err.row == 21


def test_txt_2026_pricing_indicator_position(txt25_bytes) -> None:
    """2026 TXT: the pricing indicator is at position 121 (README); built from the 2025 records."""
    lines = txt25_bytes.split(b"\r\n")
    data = [ln[:120] + b"9" + ln[121:] if ln and not ln.startswith(b"HDR") else ln for ln in lines[:500]]
    pt = rvu.parse_pprrvu_txt("PPRRVU2026_Jan_nonQPP.txt", b"\r\n".join(data))
    assert set(pt.frame["pricing_indicator"]) == {"9"}
    assert pt.release == "RVU26A" and pt.meta["cf_variant"] == "nonQPP"


# --- XLSX built in the published shape ---------------------------------------------------------------


def _xlsx_from_csv(data: bytes, rows: int, drop_header: str | None = None) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "PPRRVU2025_Oct"
    reader = list(csv.reader(io.StringIO(data.decode("ascii"), newline="")))
    for n, cells in enumerate(reader[:10 + rows]):
        values: list[object] = []
        for j, cell in enumerate(cells):
            if n >= 10 and j in (5, 6, 8, 10, 11, 12, 15, 16, 17, 24, 28, 29, 30):
                values.append(float(cell))             # numbers typed as Excel stores them
            elif n >= 10 and (j in (13, 18, 19, 20, 21, 22, 26, 27)
                              or (j == 0 and cell.isdigit() and not cell.startswith("0"))):
                values.append(int(cell))
            else:
                values.append(cell or None)
        if drop_header and n == 9:
            values = [None if v == drop_header else v for v in values]
        ws.append(values)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_xlsx_typed_cells_equal_csv_and_missing_header_is_named(csv25_bytes) -> None:
    small_csv = b"\r\n".join(_lines(csv25_bytes)[:410]) + b"\r\n"
    from_csv = rvu.parse_pprrvu_csv("PPRRVU2025_Oct.csv", small_csv)
    book = _xlsx_from_csv(csv25_bytes, 400)
    assert rvu.sniff_pprrvu_xlsx("upload.bin", book[:65536])
    from_xlsx = rvu.parse_pprrvu_xlsx("PPRRVU2025_Oct.xlsx", book)
    assert from_xlsx.warnings == []
    pd.testing.assert_frame_equal(from_csv.frame, from_xlsx.frame)
    err = _raises(_xlsx_from_csv(csv25_bytes, 20, drop_header="DAYS"), rvu.parse_pprrvu_xlsx, "PPRRVU2025_Oct.xlsx")
    assert (err.row, err.field) == (10, "GLOB")


# --- sniffing by content -------------------------------------------------------------------------------


ALL_PARSERS = [*rvu.PARSERS, *gpci.PARSERS, *zipcodes.PARSERS]


@pytest.mark.parametrize(("path", "expected"), [
    (RVU25D / "PPRRVU2025_Oct.csv", "PPRRVU CSV"),
    (RVU25D / "PPRRVU2025_Oct.txt", "PPRRVU fixed-width TXT"),
    (RVU25D / "PPRRVU2025_Oct.xlsx", "PPRRVU XLSX"),
    (RVU26C / "PPRRVU2026_Jul_nonQPP.csv", "PPRRVU CSV"),
    (RESAVED, "PPRRVU CSV"),
])
def test_each_file_is_recognised_by_content_only(path: Path, expected: str) -> None:
    head = _need(path).read_bytes()[:65536]
    assert [p.name for p in ALL_PARSERS if p.sniff("upload.dat", head)] == [expected]


def test_other_files_are_not_taken_for_pprrvu() -> None:
    for name in ("GPCI2025.csv", "25LOCCO.csv", "OPPSCAP_Oct.csv", "ANES2025.txt", "GPCI2025.xlsx"):
        head = _need(RVU25D / name).read_bytes()[:65536]
        assert not any(p.sniff(name, head) for p in rvu.PARSERS), name


# --- the bundled demo sample ------------------------------------------------------------------------------


def _gx_failures(frame: pd.DataFrame, expectations: list) -> list[str]:
    """Run expectations with GX directly (validate_table always uses the full-release bounds)."""
    import great_expectations as gx

    from scrubber.reference.validate import _gx_context, _validation_copy

    context = _gx_context()
    name = f"sample_{id(frame)}"
    batch = context.data_sources.add_or_update_pandas(name).add_dataframe_asset(name) \
        .add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite))
    try:
        result = definition.run(batch_parameters={"dataframe": _validation_copy(frame)})
    finally:
        context.validation_definitions.delete(name)
        context.suites.delete(name)
        context.data_sources.delete(name)
    return [r.expectation_config.type for r in result.results if not r.success]


def test_sample_release_is_an_exact_subset(csv25) -> None:
    path = SAMPLE / "PPRRVU2025_Oct.csv"
    pt = rvu.parse_pprrvu_csv(path.name, path.read_bytes())
    assert pt.release == "RVU25D" and pt.warnings == [] and 250 <= len(pt.frame) <= 400
    assert sum(p.stat().st_size for p in SAMPLE.iterdir()) < 150_000
    full = csv25.frame.drop(columns="source_row").set_index(["hcpcs", "modifier"])
    sample = pt.frame.drop(columns="source_row").set_index(["hcpcs", "modifier"])
    pd.testing.assert_frame_equal(sample, full.loc[sample.index])
    codes = set(pt.frame["hcpcs"])
    required = {f"{c}" for c in [*range(99202, 99206), *range(99211, 99216), 99291, 20553, 27447, 93000, 96372]}
    assert required | {"G0439", "J3301", "A4550", "36591", "0001F", "71046"} <= codes
    assert set(pt.frame.loc[pt.frame["hcpcs"] == "71046", "modifier"]) == {"", "26", "TC"}
    assert set(pt.frame.loc[pt.frame["modifier"] == "53", "hcpcs"]) == {"44388", "45378", "G0105", "G0121"}
    readme = (SAMPLE / "README.md").read_bytes()
    assert not any(p.sniff("README.md", readme) for p in ALL_PARSERS)
    assert _gx_failures(pt.frame, rvu.pprrvu_expectations(full_release=False)) == []
    assert _gx_failures(pt.frame, rvu.pprrvu_expectations()) == ["expect_table_row_count_to_be_between"]


@pytest.mark.parametrize(("source", "banner", "release", "effective", "variant"), [
    ("PPRRVU2025_Oct.txt", "", "RVU25D", date(2025, 10, 1), None),
    ("RVU25A/PPRRVU25_JAN.csv", "", "RVU25A", date(2025, 1, 1), None),
    ("PPRRVU25_APR.xlsx", "", "RVU25B", date(2025, 4, 1), None),
    ("rvu26c-updated-06-30-2026.zip!PPRRVU2026_Jul_nonQPP.txt", "", "RVU26C", date(2026, 7, 1), "nonQPP"),
    ("PPRRVU2026_Jan_QPP.csv", "", "RVU26A", date(2026, 1, 1), "QPP"),
    ("rvu25d.zip!data/PPRRVU.txt", "", "RVU25D", date(2025, 10, 1), None),
    ("upload.csv", "2025 National Physician Fee Schedule Relative Value File July Release\nRELEASED 06/02/2025",
     "RVU25C", date(2025, 7, 1), None),
])
def test_release_identity_from_banner_or_name(source, banner, release, effective, variant) -> None:
    warnings: list[str] = []
    identity = rvu.release_identity(source, banner, warnings)
    assert (identity.release, identity.effective_from, identity.meta.get("cf_variant")) == (release, effective, variant)
    assert warnings == []


def test_release_identity_banner_wins_over_a_misleading_name() -> None:
    warnings: list[str] = []
    identity = rvu.release_identity("PPRRVU2025_Oct.csv", "2025 National Physician Fee Schedule Relative Value "
                                    "File January Release", warnings)
    assert identity.release == "RVU25A" and "using the banner" in warnings[0]
    unknown = rvu.release_identity("upload.txt", "", warnings)
    assert unknown.release is None and unknown.effective_from is None and "release must be given" in warnings[-1]
