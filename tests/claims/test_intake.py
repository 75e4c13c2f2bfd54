"""Claim intake from CSV and Parquet: canonical lines, validation, quarantine, reconciliation."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrubber import schemas
from scrubber.claims import QUARANTINE_COLUMNS, intake, load_modifier_sets
from scrubber.claims.intake import IntakeStream
from scrubber.claims.validate import known_modifiers, npi_check_digit_ok, parse_service_dates
from scrubber.errors import InputFileError, RulesError

REPO = Path(__file__).resolve().parents[2]
HEADER = ("claim_id,line_number,patient_id,rendering_npi,billing_npi,payer,service_date,hcpcs,modifiers,"
          "units,charge_amount,place_of_service,locality,service_zip,diagnosis_codes")
GOOD_NPI = "1234567893"
BAD_NPI = "1234567890"


def good_row(claim: str = "C1", line: int | str = 1, **over: str) -> str:
    values = {"claim_id": claim, "line_number": str(line), "patient_id": "1EG4TE5MK73", "rendering_npi": GOOD_NPI,
              "billing_npi": "", "payer": "", "service_date": "2025-03-04", "hcpcs": "99213", "modifiers": "",
              "units": "1", "charge_amount": "125.00", "place_of_service": "11", "locality": "",
              "service_zip": "", "diagnosis_codes": ""}
    values.update(over)
    return ",".join(f'"{v}"' if any(c in v for c in ", \n") else v for v in values.values())


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def assert_reconciles(result) -> None:
    assert result.input_rows == len(result.lines) + len(result.quarantine)
    assert sum(f["rows"] for f in result.files) == result.input_rows
    assert sum(f["accepted"] for f in result.files) == len(result.lines)
    assert sum(f["quarantined"] for f in result.files) == len(result.quarantine)
    assert list(result.lines.columns) == schemas.LINE_COLUMNS
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS


# --- good input ---------------------------------------------------------------------------------------

def test_good_csv_becomes_canonical_lines(tmp_path: Path) -> None:
    text = "\n".join([
        " Claim_ID ,LINE_NUMBER,Patient_ID,Rendering_NPI,Billing_NPI,Payer,Service_Date,HCPCS,Modifiers,Units,"
        "Charge_Amount,Place_Of_Service,Locality,Service_ZIP,Diagnosis_Codes",
        f"C1,1,P1,{GOOD_NPI},,Medicare,2025-03-04,99213,25,1,125.00,11,01112-05,94110-1234,I10;e11.9",
        f'C1,2,P1,{GOOD_NPI},{GOOD_NPI},AETNA ,2025-03-04,j3301,"59 rt;rt",2.5,$1,080.50,11,,,',
    ]) + "\n"
    # the second row's charge has a thousands comma, so quote it as a real export would
    text = text.replace("$1,080.50", '"$1,080.50"')
    result = intake([write(tmp_path, "claims.csv", text)], first_line_uid=100)
    assert_reconciles(result)
    assert result.quarantine.empty
    lines = result.lines
    assert lines["line_uid"].tolist() == [100, 101]
    assert lines["source_file"].tolist() == ["claims.csv", "claims.csv"]
    assert lines["source_row"].tolist() == [2, 3]
    first, second = lines.iloc[0], lines.iloc[1]
    assert (first.claim_id, first.line_number, first.patient_id) == ("C1", 1, "P1")
    assert first.payer == "medicare" and second.payer == "aetna"
    assert first.service_date == pd.Timestamp("2025-03-04")
    assert (first.hcpcs, second.hcpcs) == ("99213", "J3301")
    assert (first.modifiers, first.modifier_1, first.modifier_2) == ("25", "25", "")
    assert (second.modifiers, second.modifier_1, second.modifier_2, second.modifier_3) == ("59,RT", "59", "RT", "")
    assert (first.units, second.units) == (1.0, 2.5)
    assert (first.charge_amount, second.charge_amount) == (125.0, 1080.5)
    assert (first.locality, second.locality) == ("01112-05", "")
    assert (first.service_zip, second.service_zip) == ("94110", "")
    assert (first.billing_npi, second.billing_npi) == ("", GOOD_NPI)
    assert first.diagnosis_codes == "I10,E11.9"
    assert lines["service_date"].dtype == "datetime64[ns]"
    assert lines["line_uid"].dtype == np.int64 and lines["line_number"].dtype == np.int64
    assert lines["units"].dtype == np.float64 and lines["charge_amount"].dtype == np.float64
    assert result.files == [{"name": "claims.csv", "format": "csv", "rows": 2, "accepted": 2, "quarantined": 0,
                             "error": None, "warnings": [], "encoding": "utf-8"}]


def test_absent_optional_columns_get_defaults(tmp_path: Path) -> None:
    text = ("claim_id,line_number,patient_id,rendering_npi,service_date,hcpcs,units,place_of_service\n"
            f"C9,1,P,{GOOD_NPI},2025-01-02,99213,1,11\n")
    line = intake([write(tmp_path, "min.csv", text)]).lines.iloc[0]
    assert line.payer == "medicare"
    assert np.isnan(line.charge_amount)
    assert (line.modifiers, line.modifier_4, line.locality, line.service_zip, line.billing_npi) == ("",) * 5


def test_modifier_columns_and_us_dates(tmp_path: Path) -> None:
    text = ("claim_id,line_number,patient_id,rendering_npi,service_date,hcpcs,units,place_of_service,"
            "modifier_1,modifier_2,modifier_3,modifier_4\n"
            f"C1,1,P,{GOOD_NPI},03/04/2025,20552,1,11,lt,59,,\n"
            f"C1,2,P,{GOOD_NPI},3/5/2025,99213,1,11,25,25,,\n"
            f"C1,3,P,{GOOD_NPI},12/31/2024,20553,1,11,,,,\n")
    result = intake([write(tmp_path, "mods.csv", text)])
    assert_reconciles(result)
    assert result.quarantine.empty
    lines = result.lines
    assert lines["modifiers"].tolist() == ["LT,59", "25", ""]
    assert lines["modifier_1"].tolist() == ["LT", "25", ""]
    assert lines["modifier_2"].tolist() == ["59", "", ""]
    assert lines["service_date"].tolist() == [pd.Timestamp("2025-03-04"), pd.Timestamp("2025-03-05"),
                                              pd.Timestamp("2024-12-31")]


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    table = pa.table({
        "Claim_ID": ["A", "A", "B"],
        "line_number": pa.array([1, 2, 1], pa.int32()),
        "patient_id": ["p", "p", "q"],
        "rendering_npi": pa.array([int(GOOD_NPI)] * 3, pa.int64()),
        "service_date": pa.array([dt.date(2025, 1, 2)] * 3),
        "hcpcs": pa.array(["99213", "20552", "99214"]).dictionary_encode(),
        "modifiers": pa.array([["25"], [], None], pa.list_(pa.string())),
        "units": [1.0, 2.5, 0.0],
        "place_of_service": pa.array([11, 1, 22], pa.int16()),
        "service_zip": pa.array([2705, 94110, None], pa.int64()),
        "charge_amount": pa.array([None, 10.5, 3.0]),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    result = intake([("incoming/2025-11-28/batch.parquet", buffer.getvalue())])
    assert_reconciles(result)
    assert result.files[0]["format"] == "parquet"
    lines = result.lines
    assert lines["source_file"].tolist() == ["batch.parquet"] * 2
    assert lines["source_row"].tolist() == [1, 2]
    assert lines["place_of_service"].tolist() == ["11", "01"]       # integer POS 1 read from Parquet
    assert lines["service_zip"].tolist() == ["02705", "94110"]      # integer ZIP lost its leading zero
    assert lines["modifiers"].tolist() == ["25", ""]
    assert lines["service_date"].tolist() == [pd.Timestamp("2025-01-02")] * 2
    assert lines["rendering_npi"].tolist() == [GOOD_NPI] * 2
    assert np.isnan(lines["charge_amount"].iloc[0]) and lines["charge_amount"].iloc[1] == 10.5
    bad = result.quarantine.iloc[0]
    assert (bad.source_row, bad.field) == (3, "units")
    assert json.loads(bad.raw)["Claim_ID"] == "B"


# --- bad rows -----------------------------------------------------------------------------------------

BAD_CASES = {
    "npi check digit": ({"rendering_npi": BAD_NPI}, "rendering_npi", "check digit"),
    "npi length": ({"rendering_npi": "12345"}, "rendering_npi", "10 digits"),
    "billing npi check digit": ({"billing_npi": BAD_NPI}, "billing_npi", "check digit"),
    "impossible date": ({"service_date": "2025-02-30"}, "service_date", "not a real calendar date"),
    "impossible US date": ({"service_date": "02/30/2025"}, "service_date", "not a real calendar date"),
    "date format": ({"service_date": "2025/03/04"}, "service_date", "YYYY-MM-DD"),
    "future date": ({"service_date": "2999-01-01"}, "service_date", "in the future"),
    "date before 2000": ({"service_date": "1999-12-31"}, "service_date", "before 2000-01-01"),
    "negative units": ({"units": "-1"}, "units", "greater than 0"),
    "zero units": ({"units": "0"}, "units", "greater than 0"),
    "too many units": ({"units": "10000"}, "units", "at most 9999"),
    "text units": ({"units": "two"}, "units", "must be a number"),
    "unknown modifier": ({"modifiers": "ZZ"}, "modifiers", "not a known modifier"),
    "malformed modifier": ({"modifiers": "25,5"}, "modifiers", "exactly 2 letters or digits"),
    "five modifiers": ({"modifiers": "25,59,76,77,91"}, "modifiers", "5 modifiers"),
    "short hcpcs": ({"hcpcs": "9921"}, "hcpcs", "5 letters or digits"),
    "one-digit POS in text": ({"place_of_service": "1"}, "place_of_service", "2 digits"),
    "bad locality": ({"locality": "1112-5"}, "locality", "MAC-LOC"),
    "bad zip": ({"service_zip": "9411"}, "service_zip", "5 digits"),
    "negative charge": ({"charge_amount": "-5"}, "charge_amount", "must not be negative"),
    "missing patient": ({"patient_id": " "}, "patient_id", "required value is missing"),
    "zero line number": ({"line_number": "0"}, "line_number", "between 1 and"),
}


@pytest.fixture(scope="module")
def bad_file_result(tmp_path_factory: pytest.TempPathFactory):
    """One file holding every bad case (claim B<i>) between good rows: one intake for all cases."""
    rows = [HEADER, good_row("G0", 1)]
    for i, case in enumerate(BAD_CASES):
        rows += [good_row(f"B{i}", 1, **BAD_CASES[case][0]), good_row(f"G{i + 1}", 1)]
    path = tmp_path_factory.mktemp("bad") / "bad.csv"
    path.write_text("\n".join(rows) + "\n")
    return intake([path])


def test_bad_file_reconciles(bad_file_result) -> None:
    assert_reconciles(bad_file_result)
    assert bad_file_result.lines["claim_id"].tolist() == [f"G{i}" for i in range(len(BAD_CASES) + 1)]
    assert len(bad_file_result.quarantine) == len(BAD_CASES)


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_row_is_quarantined_with_field_and_reason(bad_file_result, case: str) -> None:
    override, field, reason = BAD_CASES[case]
    i = list(BAD_CASES).index(case)
    rows = bad_file_result.quarantine[bad_file_result.quarantine["claim_id"] == f"B{i}"]
    assert len(rows) == 1
    row = rows.iloc[0]
    expected_line = override.get("line_number", "1")
    assert (row.source_file, row.source_row, row.line_number) == ("bad.csv", 3 + 2 * i, expected_line)
    assert row.field == field
    assert reason in row.reason
    assert row.reason.startswith(field)
    assert json.loads(row.raw)["claim_id"] == f"B{i}"


def test_duplicate_line_numbers_quarantine_every_copy(tmp_path: Path) -> None:
    text = "\n".join([HEADER, good_row("C1", 1), good_row("C1", 2), good_row("C1", 2, hcpcs="20552"),
                      good_row("C2", 2)]) + "\n"
    result = intake([write(tmp_path, "dup.csv", text)])
    assert_reconciles(result)
    assert result.lines[["claim_id", "line_number"]].values.tolist() == [["C1", 1], ["C2", 2]]
    assert result.quarantine["source_row"].tolist() == [3, 4]
    assert set(result.quarantine["field"]) == {"line_number"}
    assert all("appears 2 times in claim 'C1'" in r for r in result.quarantine["reason"])


def test_row_with_several_problems_is_one_quarantine_row(tmp_path: Path) -> None:
    text = "\n".join([HEADER, good_row("C1", 1, rendering_npi=BAD_NPI, service_date="2025-02-30",
                                       units="-1", modifiers="25 ZZ")]) + "\n"
    result = intake([write(tmp_path, "multi.csv", text)])
    assert_reconciles(result)
    assert len(result.quarantine) == 1
    row = result.quarantine.iloc[0]
    assert set(row.field.split("; ")) == {"rendering_npi", "service_date", "units", "modifiers"}
    reasons = row.reason.split("; ")
    assert len(reasons) == 4
    assert any("check digit" in r for r in reasons) and any("'ZZ'" in r for r in reasons)


def test_known_modifiers_can_be_narrowed(tmp_path: Path) -> None:
    text = "\n".join([HEADER, good_row("C1", 1, modifiers="25"), good_row("C2", 1, modifiers="59")]) + "\n"
    result = intake([write(tmp_path, "k.csv", text)], known_modifiers={"25"})
    assert result.lines["claim_id"].tolist() == ["C1"]
    assert "not a known modifier" in result.quarantine.iloc[0].reason


def test_formula_like_values_are_kept_as_is(tmp_path: Path) -> None:
    text = "\n".join([HEADER, good_row("C1", 1, patient_id='=HYPERLINK("http://x")'.replace('"', "'"))]) + "\n"
    line = intake([write(tmp_path, "inj.csv", text)]).lines.iloc[0]
    assert line.patient_id == "=HYPERLINK('http://x')"


# --- whole files --------------------------------------------------------------------------------------

def test_missing_required_columns_quarantines_each_row(tmp_path: Path) -> None:
    text = "claim_id,patient_id,hcpcs\nC1,P1,99213\nC2,P2,99214\n"
    result = intake([write(tmp_path, "cols.csv", text)])
    assert_reconciles(result)
    assert result.input_rows == 2 and result.lines.empty
    assert result.quarantine["source_row"].tolist() == [2, 3]
    assert result.quarantine["claim_id"].tolist() == ["C1", "C2"]
    fields = result.quarantine.iloc[0].field.split("; ")
    assert fields == ["line_number", "rendering_npi", "service_date", "units", "place_of_service"]
    assert "missing required column(s): line_number, rendering_npi" in result.files[0]["error"]


def test_header_without_required_columns_and_no_rows(tmp_path: Path) -> None:
    result = intake([write(tmp_path, "h.csv", "foo,bar\n")])
    assert_reconciles(result)
    assert result.input_rows == 1
    row = result.quarantine.iloc[0]
    assert row.source_row == 0 and "missing required column(s)" in row.reason


def test_cp1252_export_is_decoded_with_a_warning(tmp_path: Path) -> None:
    text = "\n".join([HEADER, good_row("C1", 1, patient_id="José Peña")]) + "\n"
    result = intake([write(tmp_path, "win.csv", text, encoding="cp1252")])
    assert_reconciles(result)
    assert result.lines.iloc[0].patient_id == "José Peña"
    info = result.files[0]
    assert info["encoding"] == "cp1252" and info["error"] is None
    assert "Windows-1252" in info["warnings"][0] and "line 2" in info["warnings"][0]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join([HEADER, good_row()]) + "\n").encode())
    result = intake([path])
    assert result.lines["claim_id"].tolist() == ["C1"] and result.files[0]["warnings"] == []


def test_utf16_tab_export_is_decoded(tmp_path: Path) -> None:
    """Excel's "Unicode text" export: UTF-16 with a byte-order mark, tab-delimited."""
    text = "\r\n".join([HEADER.replace(",", "\t"), good_row(patient_id="Zoë").replace(",", "\t")]) + "\r\n"
    result = intake([write(tmp_path, "unicode.txt", text, encoding="utf-16")])
    assert_reconciles(result)
    assert result.lines["patient_id"].tolist() == ["Zoë"]
    assert result.files[0]["encoding"] == "utf-16" and "UTF-16" in result.files[0]["warnings"][0]


def test_binary_file_is_quarantined_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20
    result = intake([("scan.pdf", data)])
    assert_reconciles(result)
    assert result.input_rows == 1 and result.lines.empty
    row = result.quarantine.iloc[0]
    assert (row.source_file, row.source_row, row.field) == ("scan.pdf", 0, "file")
    assert "binary" in row.reason
    assert result.files[0]["error"] == row.reason


def test_zip_file_is_rejected_with_a_hint(tmp_path: Path) -> None:
    result = intake([("claims.xlsx", b"PK\x03\x04" + b"\x00" * 100)])
    assert "Excel" in result.quarantine.iloc[0].reason


def test_empty_file_is_quarantined(tmp_path: Path) -> None:
    result = intake([write(tmp_path, "empty.csv", "")])
    assert_reconciles(result)
    assert result.input_rows == 1
    assert "empty file" in result.quarantine.iloc[0].reason


def test_header_only_file_has_no_rows_and_no_error(tmp_path: Path) -> None:
    result = intake([write(tmp_path, "header.csv", HEADER + "\n")])
    assert_reconciles(result)
    assert result.input_rows == 0 and result.lines.empty and result.quarantine.empty
    assert result.files[0]["error"] is None and "no data rows" in result.files[0]["warnings"][0]


def test_physical_rows_with_blank_lines_ragged_rows_and_quoted_newlines(tmp_path: Path) -> None:
    rows = [HEADER, "", good_row("C1", 1), "C1,2,P,1234567893", "", good_row("C1", 3, patient_id="two\nlines"),
            good_row("C1", 4) + ",extra", good_row("C1", 5)]
    text = "\r\n".join(rows) + "\r\n"
    # physical lines: 1 header, 2 blank, 3 C1/1, 4 ragged, 5 blank, 6-7 C1/3, 8 ragged, 9 C1/5
    result = intake([write(tmp_path, "messy.csv", text)])
    assert_reconciles(result)
    assert result.lines["source_row"].tolist() == [3, 6, 9]
    assert result.lines["patient_id"].tolist()[1] == "two\nlines"
    assert result.quarantine["source_row"].tolist() == [4, 8]
    assert result.quarantine["field"].tolist() == ["row", "row"]
    assert "row has 4 fields, the header has 15" in result.quarantine.iloc[0].reason
    assert result.quarantine.iloc[1].raw.endswith(",extra")


def test_tab_delimited_file(tmp_path: Path) -> None:
    text = "\n".join([HEADER.replace(",", "\t"), good_row().replace(",", "\t")]) + "\n"
    assert intake([write(tmp_path, "tabs.txt", text)]).lines["claim_id"].tolist() == ["C1"]


def test_several_sources_keep_line_uid_unique(tmp_path: Path) -> None:
    a = write(tmp_path, "a.csv", "\n".join([HEADER, good_row("A", 1), good_row("A", 2)]) + "\n")
    b = ("remote/b.csv", ("\n".join([HEADER, good_row("B", 1, units="x")]) + "\n").encode())
    c = write(tmp_path, "c.csv", "\n".join([HEADER, good_row("C", 1)]) + "\n")
    result = intake([a, b, c], first_line_uid=10)
    assert_reconciles(result)
    assert result.lines["line_uid"].tolist() == [10, 11, 12]
    assert result.lines["source_file"].tolist() == ["a.csv", "a.csv", "c.csv"]
    assert [f["name"] for f in result.files] == ["a.csv", "b.csv", "c.csv"]
    assert result.quarantine["source_file"].tolist() == ["b.csv"]


def test_unopenable_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot open"):
        intake([tmp_path / "nope.csv"])


# --- building blocks ------------------------------------------------------------------------------------

def test_npi_check_digit() -> None:
    values = pd.Series([GOOD_NPI, BAD_NPI, "1245319599", "1912301953", "123456789", None, "12345678A3"],
                       dtype="str")
    assert npi_check_digit_ok(values).tolist() == [True, False, True, True, False, False, False]


def test_parse_service_dates() -> None:
    parsed = parse_service_dates(pd.Series(["2025-02-28", "2025-02-29", "2024-02-29", "1/2/2025", "x", None],
                                           dtype="str"))
    assert parsed.tolist()[0] == pd.Timestamp("2025-02-28")
    assert pd.isna(parsed.iloc[1]) and parsed.iloc[2] == pd.Timestamp("2024-02-29")
    assert parsed.iloc[3] == pd.Timestamp("2025-01-02") and parsed.iloc[4:].isna().all()


def test_shipped_modifier_sets() -> None:
    sets = load_modifier_sets(REPO / "rules")
    assert {"26", "TC", "50", "52", "53", "54", "55", "56", "62", "66", "80", "81", "82", "AS"} <= sets["payment"]
    ncci = {"59", "XE", "XS", "XP", "XU", "25", "57", "LT", "RT", "F9", "T9", "RI", "91", "27"}
    assert ncci <= sets["ncci_associated"]
    assert sets["x_modifiers"] == {"59", "XE", "XS", "XP", "XU"}
    assert sets["repeat"] == {"76", "77", "91"}
    assert {"51", "GA", "GY", "GZ", "KX", "JW", "JZ", "95", "GT"} <= sets["informational"]
    known = known_modifiers(sets)
    assert all(re.fullmatch(r"[A-Z0-9]{2}", m) for m in known)
    assert len(known) > 200


@pytest.mark.parametrize(("yaml_text", "key"), [
    ("groups:\n  payment:\n    modifiers: [26, NO]\n", "groups.payment.modifiers[1]"),
    ("groups:\n  payment:\n    modifiers: [\"265\"]\n", "groups.payment.modifiers[0]"),
    ("groups:\n  payment:\n    modifers: [\"26\"]\n", "groups.payment.modifers"),
    ("groups:\n  Payment: [\"26\"]\n", "groups.Payment"),
    ("groups: []\n", "groups"),
    ("grups: {}\n", "grups"),
    ("groups:\n  payment:\n    modifiers: []\n", "groups.payment.modifiers"),
])
def test_malformed_modifier_yaml_names_file_and_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    (tmp_path / "modifiers.yaml").write_text(yaml_text)
    with pytest.raises(RulesError) as err:
        load_modifier_sets(tmp_path)
    assert "modifiers.yaml" in str(err.value) and key in str(err.value)


def test_modifier_yaml_missing_or_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="file not found"):
        load_modifier_sets(tmp_path)
    (tmp_path / "modifiers.yaml").write_text("groups: [unclosed\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_modifier_sets(tmp_path)


def test_integer_modifiers_in_yaml_are_read_as_codes(tmp_path: Path) -> None:
    (tmp_path / "modifiers.yaml").write_text("groups:\n  extra: [26, 59, xu]\n")
    assert load_modifier_sets(tmp_path) == {"extra": {"26", "59", "XU"}}


# --- intake in chunks of rows (how big files are read) --------------------------------------------------

def _chunk_rows() -> list[str]:
    rows = [good_row(f"C{i // 3}", i % 3 + 1, patient_id=f"P{i % 7}") for i in range(20)]
    rows[4] = good_row("C1", 2, rendering_npi=BAD_NPI)            # bad NPI check digit
    rows[17] = good_row("C0", 2, patient_id="P9")                  # C0 line 2 again, 16 rows later
    rows[11] = good_row("C3", 3, units="-1")                       # negative units
    return rows


@pytest.fixture(params=["csv", "parquet"])
def chunked_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    csv_path = write(tmp_path, "claims.csv", HEADER + "\n" + "\n".join(_chunk_rows()) + "\n")
    if request.param == "csv":
        return csv_path
    path = tmp_path / "claims.parquet"
    pd.read_csv(csv_path, dtype=str, keep_default_na=False).to_parquet(path, index=False, row_group_size=5)
    return path


def test_chunked_intake_matches_one_pass(chunked_file: Path) -> None:
    whole = intake([chunked_file])
    chunked = intake([chunked_file], chunk_rows=4)
    pd.testing.assert_frame_equal(chunked.lines, whole.lines)
    pd.testing.assert_frame_equal(chunked.quarantine, whole.quarantine)
    assert chunked.input_rows == whole.input_rows == 20
    assert chunked.files[0]["accepted"] == whole.files[0]["accepted"]


def test_a_line_number_repeated_across_chunks_is_quarantined_on_both_rows(chunked_file: Path) -> None:
    result = intake([chunked_file], chunk_rows=4)
    repeated = result.quarantine[result.quarantine["field"].str.contains("line_number")]
    assert repeated["claim_id"].tolist() == ["C0", "C0"]
    assert repeated["reason"].str.contains("appears 2 times in claim 'C0'").all()
    assert set(result.quarantine["claim_id"]) == {"C0", "C1", "C3"}


def test_file_wide_line_counts_of_typed_parquet_read_as_text_would(tmp_path: Path) -> None:
    """A big Parquet file's line numbers are counted file-wide before its chunks are validated; typed as
    integers they are taken as they are, claim ids are trimmed per distinct value. The result must be
    what the same file with text columns gives: repeats across chunks quarantined on every row,
    negative and missing line numbers never counted as repeats."""
    rows = [good_row(f"C{i // 2}", i % 2 + 1) for i in range(16)]
    rows[9] = good_row(" C1 ", 1)                  # C1 line 1 again (once trimmed), in another chunk
    rows[12] = good_row("C2", -1)                  # a negative line number: its own reason, no repeat
    rows[13] = good_row("C2", -1)
    rows[14] = good_row("C7", "")                  # no line number: its own reason, no repeat
    text = pd.read_csv(write(tmp_path, "claims.csv", HEADER + "\n" + "\n".join(rows) + "\n"), dtype=str,
                       keep_default_na=False)
    typed = text.assign(line_number=pd.to_numeric(text["line_number"]).astype("Int64"))
    results = {}
    for name, frame in (("text", text), ("typed", typed)):
        path = tmp_path / f"{name}.parquet"
        frame.to_parquet(path, index=False, row_group_size=5)
        results[name] = intake([path], chunk_rows=4)
    assert pd.api.types.is_integer_dtype(pd.read_parquet(tmp_path / "typed.parquet")["line_number"].dtype)
    repeated = results["typed"].quarantine[results["typed"].quarantine["reason"].str.contains("times in claim")]
    assert repeated["source_row"].tolist() == [3, 10]
    assert repeated["reason"].str.contains("appears 2 times").all()
    for frame in ("lines", "quarantine"):
        text_result, typed_result = getattr(results["text"], frame), getattr(results["typed"], frame)
        text_result, typed_result = (f.drop(columns=["source_file", "raw"], errors="ignore")
                                     for f in (text_result, typed_result))
        pd.testing.assert_frame_equal(typed_result, text_result)


def test_a_big_parquet_file_whose_line_numbers_cannot_be_counted_is_quarantined_whole(tmp_path: Path) -> None:
    """The file-wide line count of a big Parquet file is still running while its first chunk is
    validated; when the count cannot read the file (a damaged claim_id page in the last row group),
    the file is one quarantine row with the reason, as for a file that cannot be read at all."""
    rows = [good_row(f"C{i // 2}", i % 2 + 1) for i in range(20)]
    frame = pd.read_csv(write(tmp_path, "claims.csv", HEADER + "\n" + "\n".join(rows) + "\n"), dtype=str,
                        keep_default_na=False)
    path = tmp_path / "claims.parquet"
    frame.to_parquet(path, index=False, row_group_size=5, compression=None)
    column = pq.ParquetFile(path).metadata.row_group(3).column(0)
    assert column.path_in_schema == "claim_id"
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(bytes(data))

    result = intake([damaged], chunk_rows=4)
    assert len(result.lines) == 0 and result.input_rows == len(result.quarantine) == 1
    row = result.quarantine.iloc[0]
    assert row["source_row"] == 0 and row["field"] == "file"
    assert row["reason"].startswith("cannot read Parquet")
    assert result.files[0]["error"].startswith("cannot read Parquet")


def _as_parquet_rows(result):
    """A CSV intake's result numbered as the same rows in Parquet (no header row: one less)."""
    for frame in (result.lines, result.quarantine):
        frame["source_row"] -= 1
    return result


def _damaged_parquet(tmp_path: Path, column: str, row_group: int) -> Path:
    """The chunked test claims as Parquet (row groups of 5 rows) with one column page of one row group
    overwritten, as a truncated copy or a bad disk leaves a file."""
    path = tmp_path / "claims.parquet"
    pd.read_csv(write(tmp_path, "claims.csv", HEADER + "\n" + "\n".join(_chunk_rows()) + "\n"), dtype=str,
                keep_default_na=False).to_parquet(path, index=False, row_group_size=5, compression=None)
    group = pq.ParquetFile(path).metadata.row_group(row_group)
    chunk = next(group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == column)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(bytes(data))
    return damaged


def test_a_big_parquet_file_that_breaks_part_way_keeps_the_chunks_before_the_break(tmp_path: Path) -> None:
    """A damaged page in a column the line-number count does not read (row group 4 of 4): the chunks
    read before it are scrubbed as usual, the unreadable rest is one quarantine row naming the row
    where reading stopped, and the counts reconcile."""
    result = intake([_damaged_parquet(tmp_path, "hcpcs", 3)], chunk_rows=4)
    whole = _as_parquet_rows(intake([write(tmp_path, "claims.csv", HEADER + "\n" + "\n".join(_chunk_rows()) + "\n")]))
    rows = result.quarantine[result.quarantine["field"] != "file"]
    handed_out = max(result.lines["source_row"].max(), rows["source_row"].max())
    assert handed_out % 4 == 0 and 8 <= handed_out < 16            # whole chunks before row group 4
    pd.testing.assert_frame_equal(result.lines.drop(columns="source_file"),
                                  whole.lines[whole.lines["source_row"] <= handed_out].drop(columns="source_file"))
    broken = result.quarantine[result.quarantine["field"] == "file"]
    assert len(broken) == 1 and broken.iloc[0]["reason"].startswith("cannot read Parquet from row ")
    assert len(result.quarantine) == 1 + (whole.quarantine["source_row"] <= handed_out).sum()
    assert result.files[0]["error"].startswith("cannot read Parquet")
    assert_reconciles(result)


def test_the_next_chunk_is_validated_while_the_file_wide_line_count_runs(tmp_path: Path, monkeypatch) -> None:
    """A big Parquet file's first chunk is handed out only once the file-wide line-number count is in;
    meanwhile the second chunk is read and validated (the count is held until that has begun). The
    chunks come out in order, with the same lines and quarantine as the whole file validated at once."""
    import threading

    from scrubber.claims import readers, validate

    path = tmp_path / "claims.parquet"
    csv = write(tmp_path, "claims.csv", HEADER + "\n" + "\n".join(_chunk_rows()) + "\n")
    pd.read_csv(csv, dtype=str, keep_default_na=False).to_parquet(path, index=False, row_group_size=5)
    counted, events = threading.Event(), []
    count_file, begin = readers._file_line_counts, validate.begin_validation

    def held_count(columns):
        counted.wait(timeout=20)   # without validating ahead, the first chunk waits these 20 s out
        return count_file(columns)

    def begin_and_note(table, known, **options):
        events.append(f"begin {table.frame['source_row'].iloc[0]}")
        if len(events) == 2:
            counted.set()
        return begin(table, known, **options)

    monkeypatch.setattr(readers, "_file_line_counts", held_count)
    monkeypatch.setattr(validate, "begin_validation", begin_and_note)
    stream = IntakeStream([path], chunk_rows=4)
    chunks = []
    for chunk in stream:
        events.append(f"out {chunk['source_row'].iloc[0]}")
        chunks.append(chunk)
    assert events[:3] == ["begin 1", "begin 5", "out 1"]
    assert [e for e in events if e.startswith("out")] == sorted((e for e in events if e.startswith("out")),
                                                                key=lambda e: int(e.split()[1]))
    whole = _as_parquet_rows(intake([csv]))
    lines = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(lines.drop(columns="source_file"), whole.lines.drop(columns="source_file"))
    pd.testing.assert_frame_equal(stream.quarantine.drop(columns=["source_file", "raw"]),
                                  whole.quarantine.drop(columns=["source_file", "raw"]))


def test_stream_hands_out_chunks_with_running_line_uids(chunked_file: Path) -> None:
    stream = IntakeStream([chunked_file], chunk_rows=4)
    chunks = list(stream)
    assert len(chunks) == 5
    uids = pd.concat(chunks)["line_uid"].tolist()
    assert uids == list(range(len(uids)))
    assert stream.input_rows == len(uids) + len(stream.quarantine) == 20
