"""ZIP5 locality file: the real October 2025 file parses into one row per ZIP with its carrier and
locality, the release comes from the year/quarter field, and damaged files are refused with the
row and field."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from scrubber.errors import InputFileError, ValidationFailed
from scrubber.reference import gpci, rvu, zipcodes
from scrubber.reference.validate import validate_table
from scrubber.schemas import ZIP5_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "reference-data"
ZIP5 = SHARED / "cms-rvu" / "ZIP5_OCT2025" / "ZIP5_OCT2025.txt"
GPCI25 = SHARED / "cms-rvu" / "RVU25D_2025_Oct" / "GPCI2025.csv"
SAMPLE = REPO / "data" / "reference" / "sample-rvu25d" / "ZIP5_OCT2025.txt"


@pytest.fixture(scope="module")
def zip_bytes() -> bytes:
    if not ZIP5.exists():
        pytest.skip("ZIP5_OCT2025.txt is not available under ../shared/reference-data")
    return ZIP5.read_bytes()


@pytest.fixture(scope="module")
def zip5(zip_bytes: bytes):
    return zipcodes.parse_zip5("ZIP5_OCT2025.txt", zip_bytes)


def _raises(data: bytes) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        zipcodes.parse_zip5("ZIP5_OCT2025.txt", data)
    assert info.value.file == "ZIP5_OCT2025.txt"
    return info.value


def test_zip5_release_and_rows(zip5) -> None:
    assert zip5.release == "ZIP5-2025Q4" and zip5.effective_from == date(2025, 10, 1) and zip5.warnings == []
    f = zip5.frame
    assert list(f.columns)[:len(ZIP5_COLUMNS)] == ZIP5_COLUMNS and "source_row" in f.columns
    assert len(f) == 42_956 and f["zip5"].is_unique
    first = f.iloc[0]
    assert (first["state"], first["zip5"], first["mac"], first["locality"], first["locality_id"],
            first["rural_indicator"], first["plus_four_flag"], first["year_quarter"], first["source_row"]) == \
        ("AK", "99501", "02102", "01", "02102-01", "", "0", "20254", 1)
    assert f["rural_indicator"].value_counts().to_dict() == {"": 23_493, "R": 11_633, "B": 7_830}
    assert zip5.meta["zip_split_zips"] == 580 == int(f["plus_four_flag"].eq("1").sum())
    assert f.loc[f["zip5"] == "10001", "locality_id"].item() == "13202-01"     # Manhattan
    validate_table("zip5", f, zip5.source)


def test_every_zip_locality_has_gpcis(zip5) -> None:
    if not GPCI25.exists():
        pytest.skip("GPCI2025.csv is not available")
    localities = set(gpci.parse_gpci_csv(GPCI25.name, GPCI25.read_bytes()).frame["locality_id"])
    assert set(zip5.frame["locality_id"]) == localities


def test_damaged_files_name_row_and_field(zip_bytes: bytes) -> None:
    lines = zip_bytes.split(b"\r\n")
    err = _raises(zip_bytes[:-30])                                   # last record cut short
    assert (err.row, err.field) == (42_956, "Year/Quarter")
    err = _raises(zip_bytes[:-62])
    assert (err.row, err.field) == (42_956, "Plus Four Flag")
    other_quarter = b"\r\n".join([*lines[:500], lines[500][:75] + b"20261", *lines[501:]])
    err = _raises(other_quarter)
    assert (err.row, err.field) == (501, "Year/Quarter")
    bad_zip = b"\r\n".join([*lines[:9], lines[9][:2] + b"9950X" + lines[9][7:], *lines[10:]])
    err = _raises(bad_zip)
    assert (err.row, err.field) == (10, "Zip Code")
    err = _raises(b"")
    assert (err.row, err.field) == (1, "State")
    err = _raises(zip_bytes[:1000] + b"\x81" + zip_bytes[1001:2000])
    assert (err.row, err.field) == (13, "Bene Lab CB Locality")       # byte 1000 = line 13, position 17


def test_ctrl_z_and_duplicate_zip(zip_bytes: bytes) -> None:
    pt = zipcodes.parse_zip5("ZIP5_OCT2025.txt", zip_bytes[:82 * 100] + b"\x1a")
    assert len(pt.frame) == 100 and any("Ctrl-Z" in w for w in pt.warnings)
    lines = zip_bytes.split(b"\r\n")
    dup = zipcodes.parse_zip5("ZIP5_OCT2025.txt", b"\r\n".join([*lines, lines[0]]))
    with pytest.raises(ValidationFailed) as info:
        validate_table("zip5", dup.frame, dup.source)
    failure = next(f for f in info.value.failures if f["expectation"] == "expect_column_values_to_be_unique")
    assert set(failure["rows"]) == {1, len(lines) + 1}


def test_sniffed_by_content(zip_bytes: bytes) -> None:
    parsers = [*rvu.PARSERS, *gpci.PARSERS, *zipcodes.PARSERS]
    assert [p.name for p in parsers if p.sniff("upload.dat", zip_bytes[:65536])] == ["ZIP5 locality file"]
    layout = ZIP5.with_name("ZIP5lyout.txt").read_bytes()
    assert not zipcodes.sniff_zip5("ZIP5lyout.txt", layout)


def test_sample_zip5_is_a_byte_exact_subset(zip_bytes: bytes) -> None:
    sample = SAMPLE.read_bytes()
    pt = zipcodes.parse_zip5(SAMPLE.name, sample)
    assert pt.release == "ZIP5-2025Q4" and 150 <= len(pt.frame) <= 400
    full = set(zip_bytes.split(b"\r\n"))
    assert all(line in full for line in sample.split(b"\r\n") if line)
    assert {"10001", "94110", "53703", "99501"} <= set(pt.frame["zip5"])
