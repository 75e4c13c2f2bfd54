"""GPCI, LOCCO, ANES and OPPSCAP parsers on the real RVU25D/RVU26C files: keys keep their leading
zeros, values are exact Decimals, the files agree with each other and with the PPRRVU, and broken
files fail naming file, row and field."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scrubber.errors import InputFileError
from scrubber.money import CF_SCALE, GPCI_SCALE, RVU_SCALE, fee_cents
from scrubber.reference import gpci, rvu, zipcodes
from scrubber.reference.validate import validate_table
from scrubber.schemas import ANES_COLUMNS, GPCI_COLUMNS, LOCCO_COLUMNS, OPPSCAP_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "reference-data"
RVU25D = SHARED / "cms-rvu" / "RVU25D_2025_Oct"
RVU26C = SHARED / "cms-rvu" / "RVU26C_2026_Jul"
SAMPLE = REPO / "data" / "reference" / "sample-rvu25d"


def _bytes(path: Path) -> bytes:
    if not path.exists():
        pytest.skip(f"{path.name} is not available under ../shared/reference-data")
    return path.read_bytes()


@pytest.fixture(scope="module")
def gpci25():
    return gpci.parse_gpci_csv("GPCI2025.csv", _bytes(RVU25D / "GPCI2025.csv"))


def _loc(frame: pd.DataFrame, locality_id: str) -> pd.Series:
    hit = frame[frame["locality_id"] == locality_id]
    assert len(hit) == 1, locality_id
    return hit.iloc[0]


def _raises(parse, data: bytes, name: str) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        parse(name, data)
    assert info.value.file == name
    return info.value


# --- GPCI ----------------------------------------------------------------------------------------------


def test_gpci_2025_csv(gpci25) -> None:
    f = gpci25.frame
    assert list(f.columns) == [*GPCI_COLUMNS, "source_row"] and len(f) == 109 and gpci25.warnings == []
    assert gpci25.meta["year"] == 2025 and gpci25.meta["gpci_work_floor"] == "with 1.0 floor"
    assert any("MIPPA" in n for n in gpci25.meta["gpci_notes"])
    wi = _loc(f, "06302-00")
    assert (wi["state"], wi["locality_name"], wi["source_row"]) == ("WI", "WISCONSIN", 111)
    assert (wi["gpci_work"], wi["gpci_pe"], wi["gpci_mp"]) == (Decimal("1.000"), Decimal("0.957"), Decimal("0.331"))
    assert str(wi["gpci_work"]) == "1.000"              # printed "1" in the CSV: exact, 3 decimals
    ak = _loc(f, "02102-01")
    assert (ak["locality_name"], str(ak["gpci_work"])) == ("ALASKA", "1.500")
    assert (str(_loc(f, "05302-99")["gpci_pe"]), str(_loc(f, "05302-99")["gpci_mp"])) == ("0.859", "0.974")
    assert f["mac"].str.fullmatch(r"\d{5}").all() and f["locality"].str.fullmatch(r"\d{2}").all()
    assert all(type(v) is Decimal for c in ("gpci_work", "gpci_pe", "gpci_mp") for v in f[c])
    validate_table("gpci", f, gpci25.source)


def test_gpci_txt_and_xlsx_equal_csv(gpci25) -> None:
    txt = gpci.parse_gpci_txt("GPCI2025.txt", _bytes(RVU25D / "GPCI2025.txt"))
    xlsx = gpci.parse_gpci_xlsx("GPCI2025.xlsx", _bytes(RVU25D / "GPCI2025.xlsx"))
    for other in (txt, xlsx):
        assert other.meta["year"] == 2025 and other.warnings == []
        pd.testing.assert_frame_equal(other.frame.drop(columns="source_row"), gpci25.frame.drop(columns="source_row"))


def test_gpci_2026() -> None:
    pt = gpci.parse_gpci_csv("GPCI2026.csv", _bytes(RVU26C / "GPCI2026.csv"))
    assert pt.meta["year"] == 2026 and len(pt.frame) == 109
    al = _loc(pt.frame, "10112-00")
    assert (str(al["gpci_work"]), str(al["gpci_pe"]), str(al["gpci_mp"])) == ("1.000", "0.875", "0.566")
    assert any("H.R.7148" in n for n in pt.meta["gpci_notes"])
    validate_table("gpci", pt.frame, pt.source)


def test_gpci_with_and_without_floor_columns(tmp_path: Path) -> None:
    """Some releases print the work GPCI twice (billing-domain 1.9): use with-floor, keep the other."""
    rows = list(csv.reader(io.StringIO(_bytes(RVU26C / "GPCI2026.csv").decode("ascii"), newline="")))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for n, cells in enumerate(rows):
        if n == 2:
            cells.insert(4, "2026 PW GPCI (without 1.0 Floor)")
        elif cells and cells[0].isdigit():
            cells.insert(4, "0.987")
        elif cells:
            cells.insert(4, "")
        writer.writerow(cells)
    pt = gpci.parse_gpci_csv("GPCI2026.csv", out.getvalue().encode("ascii"))
    assert list(pt.frame.columns) == [*GPCI_COLUMNS, "gpci_work_no_floor", "source_row"]
    al = _loc(pt.frame, "10112-00")
    assert (str(al["gpci_work"]), str(al["gpci_work_no_floor"])) == ("1.000", "0.987")


def test_gpci_bad_rows_name_row_and_field() -> None:
    data = _bytes(RVU25D / "GPCI2025.csv")
    wi = data[:data.index(b"06302,WI")].count(b"\n") + 1
    err = _raises(gpci.parse_gpci_csv, data.replace(b"06302,WI,00,WISCONSIN,1,0.957,0.331", b"06302,WI,00,WISCONSIN,1"),
                  "GPCI2025.csv")
    assert (err.row, err.field) == (wi, "PE GPCI")
    err = _raises(gpci.parse_gpci_csv, data.replace(b",0.957,0.331", b",0.9571,0.331"), "GPCI2025.csv")
    assert (err.row, err.field) == (wi, "PE GPCI")
    err = _raises(gpci.parse_gpci_csv, data.replace(b"06302,WI", b"O6302,WI"), "GPCI2025.csv")
    assert (err.row, err.field) == (wi, "Medicare Administrative Contractor (MAC)")
    err = _raises(gpci.parse_gpci_csv, data.replace(b"2025 PE GPCI", b"2025 PX GPCI"), "GPCI2025.csv")
    assert (err.row, err.field) == (3, "PE GPCI")
    err = _raises(gpci.parse_gpci_csv, b"", "GPCI2025.csv")
    assert err.row == 1
    repaired = gpci.parse_gpci_csv("GPCI2025.csv", data.replace(b"\r\n02102,AK,01,", b"\r\n2102,AK,1,"))
    assert str(_loc(repaired.frame, "02102-01")["gpci_work"]) == "1.500"
    assert any("'Medicare Administrative Contractor (MAC)'" in w and "row 5" in w for w in repaired.warnings)
    assert any("'Locality Number'" in w for w in repaired.warnings)


# --- LOCCO --------------------------------------------------------------------------------------------


def test_locco_messy_csv(gpci25) -> None:
    pt = gpci.parse_locco_csv("25LOCCO.csv", _bytes(RVU25D / "25LOCCO.csv"))
    f = pt.frame
    assert list(f.columns) == [*LOCCO_COLUMNS, "source_row"] and pt.meta["year"] == 2025
    assert len(f) == 109 and pt.meta["locco_zero_padded"] > 100
    assert any("row(s) repeating an earlier row" in w and "97" in w for w in pt.warnings)
    ak = _loc(f, "02102-01")
    assert (ak["state"], ak["fee_schedule_area"], ak["counties"]) == ("ALASKA", "STATEWIDE", "ALL COUNTIES")
    marin = _loc(f, "01112-52")                           # state printed only on the first CA row
    assert (marin["state"], marin["counties"]) == ("CALIFORNIA", "MARIN")
    assert _loc(f, "01112-62")["counties"] == "SAN BERNARDINO, RIVERSIDE"
    assert set(f["locality_id"]) == set(gpci25.frame["locality_id"])
    xlsx = gpci.parse_locco_xlsx("25LOCCO.xlsx", _bytes(RVU25D / "25LOCCO.xlsx"))
    pd.testing.assert_frame_equal(xlsx.frame[["locality_id", "state"]], f[["locality_id", "state"]])
    validate_table("locco", f, pt.source)


# --- ANES ----------------------------------------------------------------------------------------------


def test_anes_csv_and_xlsx(gpci25) -> None:
    pt = gpci.parse_anes_csv("ANES2025.csv", _bytes(RVU25D / "ANES2025.csv"))
    f = pt.frame
    assert list(f.columns) == [*ANES_COLUMNS, "source_row"] and len(f) == 109
    assert pt.meta["national_anes_cf"] == "20.3178" and pt.meta["year"] == 2025
    al = _loc(f, "10112-00")                              # printed "10112 ,00 ,ALABAMA,19.31 "
    assert (al["mac"], al["locality"], al["locality_name"], al["anes_cf"]) == ("10112", "00", "ALABAMA",
                                                                             Decimal("19.31"))
    assert set(f["locality_id"]) == set(gpci25.frame["locality_id"])
    xlsx = gpci.parse_anes_xlsx("ANES2025.xlsx", _bytes(RVU25D / "ANES2025.xlsx"))
    assert xlsx.meta["national_anes_cf"] == "20.3178"
    pd.testing.assert_frame_equal(xlsx.frame[["locality_id", "anes_cf"]], f[["locality_id", "anes_cf"]])
    validate_table("anes", f, pt.source)


# --- OPPSCAP ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oppscap():
    return gpci.parse_oppscap_csv("OPPSCAP_Oct.csv", _bytes(RVU25D / "OPPSCAP_Oct.csv"))


def test_oppscap_csv(oppscap) -> None:
    f = oppscap.frame
    assert list(f.columns) == [*OPPSCAP_COLUMNS, "source_row"] and len(f) == 16_100
    assert f["proc_status"].value_counts().to_dict() == {"C": 9_430, "A": 6_670}
    assert len(f[["hcpcs", "modifier"]].drop_duplicates()) == 140
    first = f.iloc[0]
    assert (first["hcpcs"], first["modifier"], first["locality_id"], str(first["facility_price"]),
            first["source_row"]) == ("0633T", "TC", "01112-05", "150.69", 2)
    validate_table("oppscap", f, oppscap.source)


def test_oppscap_prices_are_capped_mpfs_amounts(oppscap, gpci25) -> None:
    """billing-domain 1.9: for status A the file price is the MPFS amount or, when lower, the OPPS cap.

    Recomputed here from the two parsed tables and the PPRRVU with scrubber.money: no status-A price
    exceeds the MPFS non-facility amount of its locality, and 70496 in 01112-05 is $364.27 vs $343.62.
    """
    pprrvu = rvu.parse_pprrvu_csv("PPRRVU2025_Oct.csv", _bytes(RVU25D / "PPRRVU2025_Oct.csv")).frame
    rows = oppscap.frame[oppscap.frame["proc_status"] == "A"].merge(
        gpci25.frame, on=["mac", "locality"]).merge(pprrvu, on=["hcpcs", "modifier"])
    assert len(rows) == 6_322

    def scaled(column: str, scale: int) -> np.ndarray:
        return np.array([int(v * scale) for v in rows[column]], dtype=np.int64)

    mpfs = fee_cents(scaled("work_rvu", RVU_SCALE), scaled("pe_rvu_nonfacility", RVU_SCALE),
                     scaled("mp_rvu", RVU_SCALE), scaled("gpci_work", GPCI_SCALE), scaled("gpci_pe", GPCI_SCALE),
                     scaled("gpci_mp", GPCI_SCALE), scaled("conversion_factor", CF_SCALE))
    price = scaled("nonfacility_price", 100)
    assert (price <= mpfs).all()
    i = np.nonzero(((rows["hcpcs"] == "70496") & (rows["modifier"] == "") &
                    (rows["locality_id_x"] == "01112-05")).to_numpy())[0][0]
    assert (int(mpfs[i]), int(price[i])) == (36427, 34362)


def test_oppscap_truncated_row() -> None:
    data = _bytes(RVU25D / "OPPSCAP_Oct.csv")
    cut = data[:data.index(b"\r\n0633T,TC,C,01112,17") + len(b"\r\n0633T,TC,C,01112,17")]
    err = _raises(gpci.parse_oppscap_csv, cut, "OPPSCAP_Oct.csv")
    assert (err.row, err.field) == (4, "FACILITY PRICE")


# --- sniffing and the demo sample --------------------------------------------------------------------------


ALL_PARSERS = [*rvu.PARSERS, *gpci.PARSERS, *zipcodes.PARSERS]


@pytest.mark.parametrize(("name", "expected"), [
    ("GPCI2025.csv", "GPCI CSV"), ("GPCI2025.txt", "GPCI TXT"), ("GPCI2025.xlsx", "GPCI XLSX"),
    ("25LOCCO.csv", "LOCCO CSV"), ("25LOCCO.xlsx", "LOCCO XLSX"), ("ANES2025.csv", "ANES CSV"),
    ("ANES2025.xlsx", "ANES XLSX"), ("OPPSCAP_Oct.csv", "OPPSCAP CSV"),
])
def test_recognised_by_content(name: str, expected: str) -> None:
    head = _bytes(RVU25D / name)[:65536]
    assert [p.name for p in ALL_PARSERS if p.sniff("upload.dat", head)] == [expected]


def test_sample_files(oppscap, gpci25) -> None:
    sample_gpci = gpci.parse_gpci_csv("GPCI2025.csv", (SAMPLE / "GPCI2025.csv").read_bytes())
    pd.testing.assert_frame_equal(sample_gpci.frame, gpci25.frame)
    sample = gpci.parse_oppscap_csv("OPPSCAP_Oct.csv", (SAMPLE / "OPPSCAP_Oct.csv").read_bytes())
    assert set(zip(sample.frame["hcpcs"], sample.frame["modifier"], strict=True)) == \
        {("70496", ""), ("70496", "TC"), ("70498", ""), ("70498", "TC"), ("0633T", "TC")}
    full = oppscap.frame.drop(columns="source_row")
    picked = full[full["hcpcs"].isin(["70496", "70498", "0633T"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample.frame.drop(columns="source_row"), picked)


def test_xlsx_written_as_a_stream_is_still_recognised() -> None:
    """Zips written to a pipe put sizes after the data (data descriptors); sniffing must still work."""
    import zipfile

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[override]
            self.buffer += b
            return len(b)

    source = zipfile.ZipFile(io.BytesIO(_bytes(RVU25D / "GPCI2025.xlsx")))
    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info))
    data = bytes(pipe.buffer)
    assert int.from_bytes(data[6:8], "little") & 0x08
    assert [p.name for p in ALL_PARSERS if p.sniff("upload.dat", data[:65536])] == ["GPCI XLSX"]
    assert len(gpci.parse_gpci_xlsx("GPCI2025.xlsx", data).frame) == 109
