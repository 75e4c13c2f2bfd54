"""X12 837P intake through pyx12, on the open-source sample interchanges in ../shared/reference-data/x12."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scrubber.claims import intake
from scrubber.claims.readers import decode_text, sniff_format
from scrubber.claims.x12 import read_x12


@pytest.fixture(scope="module")
def x12_dir(shared_ref: Path) -> Path:
    path = shared_ref / "x12"
    if not path.is_dir():
        pytest.skip("../shared/reference-data/x12 is not present")
    return path


def segments(path: Path) -> list[list[str]]:
    """The file's segments split on '~' and '*' (a plain reading of the sample, to check values against)."""
    text = path.read_text()
    return [s.strip().split("*") for s in text.split("~") if s.strip()]


def raw_lines(path: Path) -> pd.DataFrame:
    text, _, _ = decode_text(path.name, path.read_bytes())
    return read_x12(path.name, text).frame


def assert_reconciles(result) -> None:
    assert result.input_rows == len(result.lines) + len(result.quarantine)
    assert sum(f["rows"] for f in result.files) == result.input_rows


def test_format_detection() -> None:
    assert sniff_format(b"ISA*00*          *00") == "x12"
    assert sniff_format(b"\r\n  ISA*00*") == "x12"
    assert sniff_format(b"GS*HC*SENDER*") == "x12"
    assert sniff_format(b"PAR1\x15\x04") == "parquet"
    assert sniff_format(b"claim_id,line_number\n") == "csv"


def test_clean_837p_lines_match_the_file(x12_dir: Path) -> None:
    path = x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.example1.837"
    result = intake([path])
    assert_reconciles(result)
    assert result.quarantine.empty and result.files[0]["format"] == "x12"
    segs = segments(path)
    sv1 = [(i + 1, s) for i, s in enumerate(segs) if s[0] == "SV1"]
    dtp = [s for s in segs if s[:2] == ["DTP", "472"]]
    clm = next(s for s in segs if s[0] == "CLM")
    subscriber = next(s for s in segs if s[:2] == ["NM1", "IL"])
    billing = next(s for s in segs if s[:2] == ["NM1", "85"])
    payer = next(s for s in segs if s[:2] == ["NM1", "PR"])
    lines = result.lines
    assert len(lines) == len(sv1) == 4
    assert lines["source_row"].tolist() == [n for n, _ in sv1]
    assert lines["hcpcs"].tolist() == [s[1].split(":")[1] for _, s in sv1] == ["99213", "87070", "99214", "86663"]
    assert lines["charge_amount"].tolist() == [float(s[2]) for _, s in sv1] == [40.0, 15.0, 35.0, 10.0]
    assert lines["units"].tolist() == [float(s[4]) for _, s in sv1]
    assert lines["service_date"].tolist() == [pd.Timestamp(d[3]) for d in dtp]
    assert set(lines["claim_id"]) == {clm[1]} == {"26463774"}
    assert lines["line_number"].tolist() == [1, 2, 3, 4]
    assert set(lines["patient_id"]) == {subscriber[9]}
    assert set(lines["rendering_npi"]) == set(lines["billing_npi"]) == {billing[9]} == {"1912301953"}
    assert set(lines["payer"]) == {payer[3].lower()} == {"key insurance company"}
    assert set(lines["place_of_service"]) == {clm[5].split(":")[0]} == {"11"}
    assert set(lines["service_zip"]) == {"33111"}          # billing provider N4 331110000, no 2310C
    assert set(lines["diagnosis_codes"]) == {"0340,V7389"}
    assert lines["modifiers"].tolist() == [""] * 4
    raw = result.lines  # the raw segments are only kept for quarantine; the line itself is canonical
    assert raw["source_file"].unique().tolist() == ["demo.example1.837"]


def test_range_date_takes_the_from_date(x12_dir: Path) -> None:
    path = x12_dir / "UHIN_x12-parser-library" / "837.edi"
    result = intake([path])
    assert_reconciles(result)
    line = result.lines.iloc[0]
    assert (line.claim_id, line.hcpcs, line.units, line.charge_amount) == ("1606", "90834", 1.0, 2.0)
    assert line.service_date == pd.Timestamp("2024-08-15")      # DTP*472*RD8*20240815-20240820
    assert (line.service_zip, line.diagnosis_codes, line.patient_id) == ("84106", "R69", "601239742")
    assert line.source_row == 24


def test_rendering_from_2310b_and_zip_from_2310c(x12_dir: Path) -> None:
    frame = raw_lines(x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.autoaccident.837")
    assert frame["rendering_npi"].tolist() == ["2366552595"] * 2      # 2310B NM1*82
    assert frame["billing_npi"].tolist() == ["1253695747"] * 2        # 2010AA NM1*85
    assert frame["service_zip"].tolist() == ["99622"] * 2             # 2310C N4
    assert frame["payer"].tolist() == ["heisman insurance company"] * 2
    assert frame["hcpcs"].tolist() == ["99201", "26010"]


def test_medicare_part_b_payer_and_line_modifiers(x12_dir: Path) -> None:
    path = x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.ambulance.example5.837"
    frame = raw_lines(path)
    assert set(frame["payer"]) == {"medicare"}                         # SBR09 = MB
    first_sv1 = next(s for s in segments(path) if s[0] == "SV1")
    assert frame["hcpcs"].iloc[0] == first_sv1[1].split(":")[1] == "A0427"
    assert frame["modifiers"].iloc[0] == first_sv1[1].split(":")[2] == "RH"
    result = intake([path])
    assert_reconciles(result)
    # the sample's NPI is not a real one: the lines are quarantined for that and nothing else
    assert set(result.quarantine["field"]) == {"rendering_npi; billing_npi"}
    assert all("check digit" in r for r in result.quarantine["reason"])
    assert "CLM05-02" in result.files[0]["warnings"][0]                 # unmapped element error: a warning


def build_837p(x12_dir: Path) -> str:
    """demo.example1 made Medicare, with modifiers, SV105, a line rendering provider, a service
    facility (2310C) and a date range; SE01 adjusted so pyx12 finds no error."""
    original = (x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.example1.837").read_text()
    text = original.replace("~\n", "~")
    text = text.replace("SBR*P**2222-SJ******CI", "SBR*P**2222-SJ******MB")
    text = text.replace("HI*BK:0340*BF:V7389~",
                        "HI*BK:0340*BF:V7389~NM1*77*2*CLINIC*****XX*1234567893~N3*1 MAIN ST~"
                        "N4*MIAMI*FL*331301234~")
    text = text.replace("SV1*HC:99213*40.00*UN*1.00***1", "SV1*HC:99213:25*40.00*UN*1.00*22**1")
    text = text.replace("SV1*HC:87070*15.00*UN*1.00***1", "SV1*HC:87070:59:XU:91:76*15.00*UN*1.00***1")
    text = text.replace("SV1*HC:99214*35.00*UN*1.00***2~DTP*472*D8*20061010~",
                        "SV1*HC:99214*35.00*UN*1.00***2~DTP*472*D8*20061010~NM1*82*1*DOE*JANE****XX*1245319599~")
    text = text.replace("DTP*472*D8*20061010~SE", "DTP*472*RD8*20061010-20061012~SE")
    text = text.replace("SE*40*0021", "SE*44*0021")
    assert text.count("~") == original.count("~") + 4 and "RD8" in text
    return text


def test_every_mapping_rule_on_a_clean_interchange(x12_dir: Path) -> None:
    text = build_837p(x12_dir)
    result = intake([("medicare.837", text.encode())])
    assert_reconciles(result)
    assert result.quarantine.empty, result.quarantine["reason"].tolist()
    assert result.files[0]["warnings"] == []
    lines = result.lines
    assert set(lines["payer"]) == {"medicare"}
    assert lines["modifiers"].tolist() == ["25", "59,XU,91,76", "", ""]
    assert lines[["modifier_1", "modifier_2", "modifier_3", "modifier_4"]].iloc[1].tolist() == ["59", "XU", "91", "76"]
    assert lines["place_of_service"].tolist() == ["22", "11", "11", "11"]          # SV105 else CLM05-1
    assert lines["rendering_npi"].tolist() == ["1912301953", "1912301953", "1245319599", "1912301953"]
    assert set(lines["service_zip"]) == {"33130"}                                  # 2310C N4, first 5
    assert lines["service_date"].iloc[3] == pd.Timestamp("2006-10-10")             # RD8 from-date
    sv1_numbers = [i + 1 for i, s in enumerate(text.split("~")) if s.strip().startswith("SV1*")]
    assert lines["source_row"].tolist() == sv1_numbers


def test_truncated_interchanges(x12_dir: Path) -> None:
    text = (x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.example1.837").read_text()
    before_claim = text[: text.index("CLM*")]
    mid_claim = text[: text.index("LX*3")]
    result = intake([("cut-early.837", before_claim.encode()), ("cut-late.837", mid_claim.encode())])
    assert_reconciles(result)
    assert result.lines.empty
    # whole file either way: lines read before the cut are not trustworthy, and the claim being
    # read when the data ended would otherwise vanish
    assert result.quarantine["source_row"].tolist() == [0, 0]
    assert result.quarantine["reason"].str.contains("truncated or unterminated").all()
    assert result.quarantine["reason"].str.contains("Transaction Set Trailer").all()


def test_missing_final_terminator_is_tolerated(x12_dir: Path) -> None:
    text = (x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.example1.837").read_text()
    result = intake([("no-final-tilde.837", ("\n" + text.rstrip().removesuffix("~")).encode())])
    assert len(result.lines) == 4 and result.quarantine.empty
    assert "no terminator" in result.files[0]["warnings"][0]


def test_lf_samples_with_wrong_component_separator_are_quarantined_with_a_hint(x12_dir: Path) -> None:
    path = x12_dir / "LinuxForHealth_x12" / "837_005010X222A2" / "demo.example6.837"
    result = intake([path])
    assert_reconciles(result)
    assert result.lines.empty and len(result.quarantine) == 1     # one service line, not split in two
    row = result.quarantine.iloc[0]
    assert row.field.startswith("x12") and row.claim_id == "125WILL"
    assert "SV1*HC>98940 not found" in row.reason
    assert "component separator" in row.reason
    assert "SV1*HC>98940" in row.raw


def test_sample_with_structural_errors_maps_values_and_quarantines(x12_dir: Path) -> None:
    path = x12_dir / "imsweb_x12-parser" / "837_5010" / "x12_valid.txt"
    frame = raw_lines(path)
    first = frame.iloc[0]
    assert (first.claim_id, first.line_number, first.hcpcs, first.modifiers) == ("A37YH556", "1", "99211", "25")
    assert (first.service_date, first.units, first.charge_amount) == ("2005-03-14", "1", "12.25")
    assert (first.patient_id, first.payer, first.place_of_service) == ("123456", "health insurance company", "11")
    assert first.rendering_npi == first.billing_npi == "1234567890"   # no 2310B/2420A: billing provider
    assert first.service_zip == "20705"
    assert frame["hcpcs"].tolist() == ["99211", "478331"]
    result = intake([path])
    assert_reconciles(result)
    assert result.lines.empty and len(result.quarantine) == 2
    first_q, second_q = result.quarantine.iloc[0], result.quarantine.iloc[1]
    assert "HI01-02" in first_q.reason and "check digit" in first_q.reason     # malformed HI, fake NPI
    assert "HL" in second_q.reason and "hcpcs '478331'" in second_q.reason
    assert first_q.raw.startswith("CLM*A37YH556*500") and "SV1*HC:99211:25" in first_q.raw


def test_claim_without_service_line_is_not_lost(x12_dir: Path) -> None:
    path = x12_dir / "imsweb_x12-parser" / "837_5010" / "x12_missing_required_loops_mult_repeats.txt"
    ids = [s[0] for s in segments(path)]
    # CLM segments followed by another CLM, HL or SE before any LX: claims without a service line
    empty_claims = [i + 1 for i, seg in enumerate(ids) if seg == "CLM"
                    and next(x for x in ids[i + 1:] if x in ("LX", "CLM", "HL", "SE")) != "LX"]
    assert empty_claims
    result = intake([path])
    assert_reconciles(result)
    flagged = result.quarantine[result.quarantine["reason"].str.contains("has no service line")]
    assert flagged["source_row"].tolist() == empty_claims


def test_many_claims(x12_dir: Path) -> None:
    path = x12_dir / "imsweb_x12-parser" / "837_5010" / "x12_many_claims.txt"
    result = intake([path])
    assert_reconciles(result)
    assert result.input_rows == sum(1 for s in segments(path) if s[0] == "SV1") == 820
    assert result.quarantine["field"].str.startswith("x12").all()   # every claim has the malformed HI


MALFORMED = ["x12_bad_first_line.txt", "x12_bad_segment_identifier.txt", "x12_bad_valid_code.txt",
             "x12_missing_elements.txt", "x12_missing_required_loop_in_one_repeat.txt", "x12_no_isa_line.txt",
             "x12_segment_errors.txt", "x12_segments_out_of_order.txt", "x12_loop_errors3_missing_loops.txt"]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_samples_are_quarantined_with_a_reason(x12_dir: Path, name: str) -> None:
    result = intake([x12_dir / "imsweb_x12-parser" / "837_5010" / name])
    assert_reconciles(result)
    assert result.lines.empty
    assert len(result.quarantine) >= 1
    assert (result.quarantine["reason"].str.len() > 0).all()
    assert (result.quarantine["reason"].str.contains("X12|not a readable")).all()


@pytest.mark.parametrize(("relative", "expected"), [
    ("imsweb_x12-parser/837_5010/x12_bad_first_line.txt", "not a readable X12 interchange"),
    ("imsweb_x12-parser/837_5010/x12_no_isa_line.txt", "does not begin with 'ISA'"),
    ("imsweb_x12-parser/837_5010/x223-test.txt", "not an 837P"),
    ("imsweb_x12-parser/837_5010/x12_999_accepted.txt", "not an 837P"),
    ("LinuxForHealth_x12/835_005010X221A1/managed-care.835", "not an 837P"),
])
def test_unusable_interchanges_are_quarantined_whole(x12_dir: Path, relative: str, expected: str) -> None:
    result = intake([x12_dir / relative])
    assert_reconciles(result)
    assert result.input_rows == 1 and len(result.quarantine) == 1
    row = result.quarantine.iloc[0]
    assert row.source_row == 0 and expected in row.reason
    assert result.files[0]["error"] == row.reason and result.files[0]["format"] == "x12"


def test_wrong_segment_placement_is_scoped_to_the_billing_provider(x12_dir: Path) -> None:
    result = intake([x12_dir / "imsweb_x12-parser" / "837_5010" / "x12_bad_valid_code.txt"])
    # NM1*117 in the 2000A loop cannot be placed: both claims under that billing provider are held back
    assert len(result.quarantine) == 2
    assert result.quarantine["reason"].str.contains("Segment NM1\\*117 not found").all()
