"""MUE practitioner parser: the real 07-01-2026 excerpt, full real tables in the CMS layout, bad input."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from scrubber.devtools.cms_layouts import read_mue_source, write_mue_csv, write_mue_xlsx
from scrubber.errors import InputFileError, ValidationFailed
from scrubber.reference.mue import PARSERS, parse_csv, parse_xlsx, release_identity, sniff_csv, sniff_xlsx
from scrubber.schemas import MUE_COLUMNS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference-data"
EXCERPT = (SHARED / "ncci-mue" / "2026Q3_excerpt_reuven-ops_Biller"
           / "MCR_MUE_PractitionerServices_Eff_07-01-2026.excerpt.csv")
FULL_2024Q3 = SHARED / "ncci-mue" / "2024Q3_northstar_qs" / "mue_practitioner_2024q3.parquet"
FULL_2026 = SHARED / "ncci-mue" / "2026Q1-Q2_RaidenExn_cpt-validator-webapp" / "mue.json"
PTP_EXCERPT = SHARED / "ncci-ptp" / "v322r0_excerpt_reuven-ops_Biller" / "ccipra-v322r0-f1.excerpt.txt"
NAME = EXCERPT.name


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} not present in ../shared/reference-data")
    return path


@pytest.fixture(scope="module")
def excerpt_bytes() -> bytes:
    return _need(EXCERPT).read_bytes()


def _row(frame: pd.DataFrame, code: str) -> list:
    hit = frame[frame["hcpcs"] == code]
    assert len(hit) == 1, hit
    return hit.iloc[0][[*MUE_COLUMNS, "source_row"]].tolist()


# --- the real excerpt ------------------------------------------------------------------------------

def test_excerpt_parses_with_exact_values(excerpt_bytes: bytes) -> None:
    assert b"\xae" in excerpt_bytes                      # Latin-1 (R) sign in the notice
    assert sniff_csv(NAME, excerpt_bytes[:65536])
    parsed = parse_csv(NAME, excerpt_bytes)
    frame = parsed.frame
    assert (parsed.table, parsed.release, parsed.effective_from) == ("mue", "MUE-2026Q3", date(2026, 7, 1))
    assert parsed.meta["format"] == "csv" and parsed.warnings == []
    assert list(frame.columns) == [*MUE_COLUMNS, "source_row"]
    assert len(frame) == 44
    # 7 physical lines of notice + 2 of header: data starts on line 10
    assert _row(frame, "0001U") == ["0001U", 1, 2, "Code Descriptor / CPT Instruction", 10]
    assert _row(frame, "0002M") == ["0002M", 1, 3, "Nature of Analyte", 11]
    assert _row(frame, "0022U") == ["0022U", 2, 3, "Clinical: CMS Workgroup", 38]
    assert _row(frame, "0041U") == ["0041U", 1, 2, "Code Descriptor / CPT Instruction", 53]
    assert frame["mue_value"].dtype == "int64" and frame["mai"].dtype == "int64"
    assert frame["mai"].value_counts().to_dict() == {2: 30, 3: 14}


def test_writer_reproduces_the_excerpt_byte_for_byte(excerpt_bytes: bytes, tmp_path: Path) -> None:
    parsed = parse_csv(NAME, excerpt_bytes)
    out = write_mue_csv(parsed.frame, tmp_path, eff="07-01-2026")
    assert out.name == "MCR_MUE_PractitionerServices_Eff_07-01-2026.csv"
    assert out.read_bytes() == excerpt_bytes


def test_excerpt_passes_validation(excerpt_bytes: bytes) -> None:
    from scrubber.reference.validate import validate_table

    parsed = parse_csv(NAME, excerpt_bytes)
    validate_table("mue", parsed.frame, parsed.source)


def test_validation_names_bad_rows(excerpt_bytes: bytes) -> None:
    from scrubber.reference.validate import validate_table

    text = excerpt_bytes.decode("latin-1")
    text = text.replace("0003M,1,3 Date", "0002M,1,3 Date")           # duplicate code on line 13
    text = text.replace("0005U,1,2 Date", "0005U,-1,2 Date")          # negative value on line 16
    text = text.replace("0006M,1,2 Date", "0006M,1,4 Date")           # MAI 4 on line 17
    text = text.replace("0007M,1,2", "007M,1,2")                      # bad code on line 18
    parsed = parse_csv(NAME, text.encode("latin-1"))
    with pytest.raises(ValidationFailed) as failed:
        validate_table("mue", parsed.frame, parsed.source)
    rows = {f["expectation"]: sorted(f["rows"]) for f in failed.value.failures}
    assert rows["expect_column_values_to_be_unique"] == [11, 13]
    assert rows["expect_column_values_to_be_between"] == [16]
    assert rows["expect_column_values_to_be_in_set"] == [17]
    assert rows["expect_column_values_to_match_regex"] == [18]


def test_sniff_only_mue_files(excerpt_bytes: bytes) -> None:
    assert not sniff_csv("x.txt", _need(PTP_EXCERPT).read_bytes()[:65536])
    assert not sniff_csv("x.csv", b"HCPCS,MOD,DESCRIPTION\r\n99213,,Office visit\r\n")
    assert not sniff_xlsx(NAME, excerpt_bytes[:65536])
    assert [p.table for p in PARSERS] == ["mue", "mue"]


# --- release identity --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "release", "start"), [
    ("MCR_MUE_PractitionerServices_Eff_07-01-2026.csv", "MUE-2026Q3", date(2026, 7, 1)),
    ("MCR_MUE_PractitionerServices_Eff_10-01-2025.xlsx", "MUE-2025Q4", date(2025, 10, 1)),
    ("mue_2026.zip!MCR_MUE_PractitionerServices_Eff_01-01-2026.csv", "MUE-2026Q1", date(2026, 1, 1)),
    ("mue-2025q2-practitioner.csv", "MUE-2025Q2", date(2025, 4, 1)),
])
def test_release_from_name(name: str, release: str, start: date) -> None:
    got = release_identity(name)
    assert (got[0], got[1], got[3]) == (release, start, [])


def test_off_cycle_and_unknown_names_warn() -> None:
    release, start, _, warnings = release_identity("MCR_MUE_PractitionerServices_Eff_08-15-2026.csv")
    assert (release, start) == ("MUE-2026Q3", date(2026, 8, 15))
    assert "off-cycle" in warnings[0]
    release, start, _, warnings = release_identity("mue.csv")
    assert release is None and start is None and "no effective date" in warnings[0]
    with pytest.raises(InputFileError, match="not a date"):
        release_identity("MCR_MUE_PractitionerServices_Eff_13-01-2026.csv")


# --- bad input ---------------------------------------------------------------------------------------

def _error(content: bytes, name: str = NAME, parse=parse_csv) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        parse(name, content)
    return caught.value


def _edit(excerpt_bytes: bytes, old: str, new: str) -> bytes:
    text = excerpt_bytes.decode("latin-1")
    assert old in text
    return text.replace(old, new, 1).encode("latin-1")


def test_truncated_record(excerpt_bytes: bytes) -> None:
    err = _error(_edit(excerpt_bytes, "0009U,2,3 Date of Service Edit: Clinical,Nature of Analyte", "0009U,2"))
    assert (err.file, err.row, err.field) == (NAME, 21, "MUE Adjudication Indicator")


def test_bad_value(excerpt_bytes: bytes) -> None:
    err = _error(_edit(excerpt_bytes, "0010U,2,", "0010U,two,"))
    assert (err.row, err.field) == (22, "Practitioner Services MUE Values")
    assert _error(_edit(excerpt_bytes, "0010U,2,", "0010U,2.5,")).row == 22


def test_bad_adjudication_indicator(excerpt_bytes: bytes) -> None:
    err = _error(_edit(excerpt_bytes, "0011M,1,2 Date", "0011M,1,Date"))
    assert (err.row, err.field) == (23, "MUE Adjudication Indicator")


def test_empty_code(excerpt_bytes: bytes) -> None:
    err = _error(_edit(excerpt_bytes, "0012M,1,2", ",1,2"))
    assert (err.row, err.field) == (25, "HCPCS/CPT Code")


def test_missing_or_wrong_header(excerpt_bytes: bytes) -> None:
    no_header = _edit(excerpt_bytes, '"HCPCS/\nCPT Code",Practitioner Services MUE Values,MUE Adjudication '
                      'Indicator,MUE Rationale\r\n', "")
    err = _error(no_header)
    assert "no MUE header" in str(err) and err.field == "HCPCS/CPT Code"
    err = _error(_edit(excerpt_bytes, ",MUE Rationale\r\n", ",Reason\r\n"))
    assert (err.row, err.field) == (9, "MUE Rationale")


def test_other_mue_tables_are_refused(excerpt_bytes: bytes) -> None:
    dme = _edit(excerpt_bytes, "Practitioner Services MUE Values", "DME Supplier Services MUE Values")
    assert sniff_csv(NAME, dme)
    err = _error(dme)
    assert "DME Supplier Services" in str(err) and err.row == 9


def test_empty_and_notice_only(excerpt_bytes: bytes) -> None:
    assert "empty" in str(_error(b""))
    header_end = excerpt_bytes.index(b"MUE Rationale\r\n") + len(b"MUE Rationale\r\n")
    err = _error(excerpt_bytes[:header_end])
    assert "no MUE rows" in str(err) and err.row == 10


def test_malformed_quoting(excerpt_bytes: bytes) -> None:
    err = _error(_edit(excerpt_bytes, "0013M,1,2 Date of Service Edit: Policy,Code",
                       '0013M,1,"2 Date of Service" Edit: Policy,Code'))
    assert (err.file, err.row) == (NAME, 26)
    assert "malformed CSV" in str(err)


def test_utf8_and_blank_records_are_tolerated(excerpt_bytes: bytes) -> None:
    text = excerpt_bytes.decode("latin-1").replace("0041U", ",,,\r\n0041U")
    parsed = parse_csv(NAME, b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert len(parsed.frame) == 44
    assert _row(parsed.frame, "0041U")[-1] == 54


# --- full real tables in the CMS layouts -----------------------------------------------------------------

@pytest.mark.parametrize("source", [FULL_2024Q3, FULL_2026], ids=["2024Q3-parquet", "2026-json"])
def test_full_table_round_trips_csv(source: Path, tmp_path: Path) -> None:
    expected = read_mue_source(_need(source))
    path = write_mue_csv(source, tmp_path, eff="10-01-2025")
    assert path.name == "MCR_MUE_PractitionerServices_Eff_10-01-2025.csv"
    raw = path.read_bytes()
    assert raw.count(b"\xae") == 1 and b"\r\n0001U," in raw
    parsed = parse_csv(path.name, raw)
    assert (parsed.release, parsed.effective_from) == ("MUE-2025Q4", date(2025, 10, 1))
    got = parsed.frame
    assert len(got) == len(expected) > 14_000
    pd.testing.assert_frame_equal(got[MUE_COLUMNS], expected, check_dtype=False)
    assert got["source_row"].iloc[0] == 10 and got["source_row"].iloc[-1] == len(expected) + 9
    for code, value, mai in [("20552", 1, 2), ("20553", 1, 2), ("96372", 4, 3), ("99213", 2, 3)]:
        assert _row(got, code)[1:3] == [value, mai]


def test_full_table_round_trips_xlsx(tmp_path: Path) -> None:
    expected = read_mue_source(_need(FULL_2024Q3))
    path = write_mue_xlsx(FULL_2024Q3, tmp_path, eff="04-01-2026")
    head = path.read_bytes()[:65536]
    assert sniff_xlsx(path.name, head) and not sniff_csv(path.name, head)
    parsed = parse_xlsx(path.name, path.read_bytes())
    assert (parsed.release, parsed.meta["format"]) == ("MUE-2026Q2", "xlsx")
    pd.testing.assert_frame_equal(parsed.frame[MUE_COLUMNS], expected, check_dtype=False)
    assert parsed.frame["source_row"].iloc[0] == 3


def test_xlsx_bad_cells_and_numeric_codes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"hcpcs": ["20552", "0001U"], "mue_value": [1, 2], "mai": [2, 3],
                          "rationale": ["Code Descriptor / CPT Instruction", "Nature of Analyte"]})
    import openpyxl

    path = write_mue_xlsx(frame, tmp_path, eff="07-01-2026")
    book = openpyxl.load_workbook(path)
    book.active["A3"] = 20552                           # Excel typed the CPT code as a number
    book.save(path)
    parsed = parse_xlsx(path.name, path.read_bytes())
    assert parsed.frame["hcpcs"].tolist() == ["20552", "0001U"]
    book.active["B4"] = "lots"
    book.save(path)
    err = _error(path.read_bytes(), name=path.name, parse=parse_xlsx)
    assert (err.row, err.field) == (4, "Practitioner Services MUE Values")
    assert "not a readable XLSX" in str(_error(b"PK\x03\x04broken", name="x.xlsx", parse=parse_xlsx))


def test_loader_prefers_csv_over_xlsx_and_publishes_all_rows(tmp_path: Path) -> None:
    from scrubber.reference.loader import load_paths
    from scrubber.store import LocalStore

    folder = tmp_path / "mue"
    write_mue_csv(_need(FULL_2026), folder, eff="04-01-2026")
    write_mue_xlsx(FULL_2026, folder, eff="04-01-2026")
    store = LocalStore(tmp_path / "store")
    report = load_paths(store, [folder])
    assert [(p["release"], p["rows"], p["source"]) for p in report.published] == [
        ("MUE-2026Q2", 15_095, "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv")]
    assert any("xlsx" in s for s in report.skipped)
    key = next(k for k in store.list("reference/mue/") if k.endswith(".parquet"))
    published = store.read_parquet(key)
    pd.testing.assert_frame_equal(published[MUE_COLUMNS], read_mue_source(FULL_2026), check_dtype=False)
