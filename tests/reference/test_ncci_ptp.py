"""NCCI practitioner PTP parser: the real v32.2 excerpt, the full real table in CMS layout, bad input."""

from __future__ import annotations

import zipfile
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from scrubber.devtools.cms_layouts import (
    ptp_placeholder_effective,
    write_ptp_file,
    write_ptp_parts,
)
from scrubber.errors import InputFileError, ValidationFailed
from scrubber.reference.ncci_ptp import (
    CHECK_DELETION,
    PARSERS,
    infer_year_quarter,
    parse_txt,
    release_identity,
    sniff_txt,
)
from scrubber.schemas import PTP_COLUMNS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference-data"
EXCERPT = SHARED / "ncci-ptp" / "v322r0_excerpt_reuven-ops_Biller" / "ccipra-v322r0-f1.excerpt.txt"
FULL = SHARED / "ncci-ptp" / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"
MUE_EXCERPT = (SHARED / "ncci-mue" / "2026Q3_excerpt_reuven-ops_Biller"
               / "MCR_MUE_PractitionerServices_Eff_07-01-2026.excerpt.csv")
FULL_ROWS = 2_545_089


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} not present in ../shared/reference-data")
    return path


@pytest.fixture(scope="module")
def excerpt_bytes() -> bytes:
    return _need(EXCERPT).read_bytes()


def _edit(frame: pd.DataFrame, col1: str, col2: str) -> pd.Series:
    rows = frame[(frame["column_1"] == col1) & (frame["column_2"] == col2)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# --- the real excerpt ------------------------------------------------------------------------------

def test_excerpt_parses_with_exact_values(excerpt_bytes: bytes) -> None:
    assert sniff_txt(EXCERPT.name, excerpt_bytes[:65536])
    parsed = parse_txt(EXCERPT.name, excerpt_bytes)
    frame = parsed.frame
    assert parsed.table == "ptp"
    assert list(frame.columns[: len(PTP_COLUMNS)]) == PTP_COLUMNS
    assert len(frame) == 154
    assert frame["source_row"].tolist() == list(range(7, 161))
    assert set(frame["part"]) == {"f1"}
    assert str(frame["effective_date"].dtype).startswith("datetime64")

    bypass = _edit(frame, "0001A", "99213")   # E/M as column 2, bypassable
    assert (bypass["modifier_indicator"], bypass["effective_date"], bypass["deletion_date"]) == (
        "1", pd.Timestamp("2022-01-01"), pd.Timestamp("2023-12-31"))
    never = _edit(frame, "0001A", "36591")
    assert never["modifier_indicator"] == "0"
    assert never["rationale"] == "CPT Manual or CMS manual coding instruction"
    assert never["prior_1996"] == ""
    assert never["source_row"] == 10
    retro = _edit(frame, "0001A", "90473")    # deleted retroactively
    assert retro["modifier_indicator"] == "9"
    assert retro["effective_date"] == retro["deletion_date"] == pd.Timestamp("2022-01-01")
    assert pd.isna(retro[CHECK_DELETION])
    later = _edit(frame, "0001U", "0029U")
    assert later["deletion_date"] == pd.Timestamp("2026-06-30")
    active = _edit(frame, "0001U", "0417U")   # "*" = no deletion date
    assert active["effective_date"] == pd.Timestamp("2025-01-01")
    assert pd.isna(active["deletion_date"])
    stars = sum(1 for line in excerpt_bytes.split(b"\r\n")[6:] if line.split(b"\t")[4:5] == [b"*"])
    assert frame["deletion_date"].isna().sum() == stars > 0
    assert frame["modifier_indicator"].isin({"0", "1", "9"}).all()
    assert frame.iloc[-1][["column_1", "column_2", "source_row"]].tolist() == ["0001U", "81166", 160]


def test_excerpt_release_is_inferred_from_version_with_a_warning(excerpt_bytes: bytes) -> None:
    parsed = parse_txt(EXCERPT.name, excerpt_bytes)
    assert parsed.release == "PTP-2026Q3"
    assert parsed.effective_from == date(2026, 7, 1)
    assert parsed.meta["version"] == "v322r0" and parsed.meta["part"] == "f1"
    assert any("inferred from version v322r0" in w for w in parsed.warnings)


def test_writer_reproduces_the_excerpt_byte_for_byte(excerpt_bytes: bytes, tmp_path: Path) -> None:
    parsed = parse_txt(EXCERPT.name, excerpt_bytes)
    out = write_ptp_file(parsed.frame, tmp_path / "copy.txt", copyright_year=2025)
    assert out.read_bytes() == excerpt_bytes


def test_excerpt_passes_validation(excerpt_bytes: bytes) -> None:
    from scrubber.reference.validate import validate_table

    parsed = parse_txt(EXCERPT.name, excerpt_bytes)
    validate_table("ptp", parsed.frame, parsed.source)


def test_validation_names_bad_rows(excerpt_bytes: bytes) -> None:
    from scrubber.reference.validate import validate_table

    text = excerpt_bytes.decode("ascii")
    text = text.replace("0001A\t36592\t\t20220101\t20231231\t0", "0001A\t3659\t\t20220101\t20231231\t0")
    text = text.replace("0001A\t96523\t\t20220101\t20231231\t0", "0001A\t96523\t\t20220101\t20211231\t0")
    parsed = parse_txt(EXCERPT.name, text.encode("ascii"))
    with pytest.raises(ValidationFailed) as failed:
        validate_table("ptp", parsed.frame, parsed.source)
    by_expectation = {f["expectation"]: f["rows"] for f in failed.value.failures}
    assert by_expectation["expect_column_values_to_match_regex"] == [11]
    assert by_expectation["expect_column_pair_values_a_to_be_greater_than_b"] == [15]


def test_sniff_rejects_other_files(excerpt_bytes: bytes) -> None:
    assert not sniff_txt("x.csv", _need(MUE_EXCERPT).read_bytes()[:65536])
    assert not sniff_txt("x.zip", b"PK\x03\x04" + excerpt_bytes[:1000])
    assert not sniff_txt("x.txt", b"HCPCS\tMOD\tDESCRIPTION\r\n99213\t\tOffice visit\r\n")
    assert [p.table for p in PARSERS] == ["ptp"]


# --- release identity --------------------------------------------------------------------------------

def test_release_from_cms_file_name() -> None:
    release, start, meta, warnings = release_identity(
        "medicare-ncci-2025q4-practitioner-ptp-edits-ccipra-v313r0-f1.txt")
    assert (release, start, warnings) == ("PTP-2025Q4", date(2025, 10, 1), [])
    assert meta == {"version": "v313r0", "part": "f1", "year": 2025, "quarter": 4}


def test_release_from_zip_name_and_member() -> None:
    release, start, meta, warnings = release_identity(
        "medicare-ncci-2026q2-practitioner-ptp-edits-ccipra-v321r0-f3.zip!ccipra-v321r0-f3.TXT")
    assert (release, start, meta["part"], warnings) == ("PTP-2026Q2", date(2026, 4, 1), "f3", [])


def test_release_name_and_version_disagree_warns_and_uses_name() -> None:
    release, _, _, warnings = release_identity("medicare-ncci-2025q4-practitioner-ptp-edits-ccipra-v301r0-f1.txt")
    assert release == "PTP-2025Q4"
    assert "v301r0 would mean 2024Q2" in warnings[0]


def test_release_unknown_without_name_hints() -> None:
    release, start, _, warnings = release_identity("edits.txt")
    assert release is None and start is None
    assert "no release quarter" in warnings[0]


@pytest.mark.parametrize(("digits", "expected"), [("301", (2024, 2)), ("313", (2025, 4)), ("320", (2026, 1)),
                                                  ("322", (2026, 3)), ("314", None), ("32", None)])
def test_version_pattern(digits: str, expected: tuple[int, int] | None) -> None:
    assert infer_year_quarter(digits) == expected


# --- bad input ---------------------------------------------------------------------------------------

def _lines(excerpt_bytes: bytes) -> list[str]:
    return excerpt_bytes.decode("ascii").split("\r\n")


def _join(lines: list[str]) -> bytes:
    return "\r\n".join(lines).encode("ascii")


def _error(content: bytes, name: str = EXCERPT.name) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        parse_txt(name, content)
    return caught.value


def test_truncated_row_names_line_and_field(excerpt_bytes: bytes) -> None:
    lines = _lines(excerpt_bytes)
    lines[9] = "0001A\t36591\t"                      # physical line 10, cut after Column 2
    err = _error(_join(lines))
    assert (err.file, err.row, err.field) == (EXCERPT.name, 10, "Effective Date")
    assert "truncated" in str(err)


def test_truncated_last_line(excerpt_bytes: bytes) -> None:
    cut = excerpt_bytes[: excerpt_bytes.rindex(b"\t1\t")]   # the file stops mid-line 160
    err = _error(cut)
    assert (err.row, err.field) == (160, "Modifier")


def test_too_many_fields(excerpt_bytes: bytes) -> None:
    lines = _lines(excerpt_bytes)
    lines[20] += "\textra"
    err = _error(_join(lines))
    assert err.row == 21


def test_bad_indicator(excerpt_bytes: bytes) -> None:
    lines = _lines(excerpt_bytes)
    lines[11] = lines[11].replace("\t9\t", "\t7\t")   # 0001A/90473 on line 12
    err = _error(_join(lines))
    assert (err.row, err.field) == (12, "Modifier")
    assert "'7'" in str(err)


@pytest.mark.parametrize(("bad", "field"), [("20221301", "Effective Date"), ("2022011", "Effective Date"),
                                            ("*", "Effective Date"), ("", "Effective Date")])
def test_bad_effective_date(excerpt_bytes: bytes, bad: str, field: str) -> None:
    lines = _lines(excerpt_bytes)
    cells = lines[29].split("\t")
    cells[3] = bad
    lines[29] = "\t".join(cells)
    err = _error(_join(lines))
    assert (err.row, err.field) == (30, field)


@pytest.mark.parametrize("bad", ["2023-12-31", "99999999", "none", "17760704"])
def test_bad_deletion_date(excerpt_bytes: bytes, bad: str) -> None:
    lines = _lines(excerpt_bytes)
    cells = lines[40].split("\t")
    cells[4] = bad
    lines[40] = "\t".join(cells)
    err = _error(_join(lines))
    assert (err.row, err.field) == (41, "Deletion Date")


def test_bad_prior_1996_flag_and_empty_code(excerpt_bytes: bytes) -> None:
    lines = _lines(excerpt_bytes)
    cells = lines[50].split("\t")
    cells[2] = "Y"
    lines[50] = "\t".join(cells)
    assert _error(_join(lines)).row == 51
    lines = _lines(excerpt_bytes)
    lines[60] = "\t" + lines[60].split("\t", 1)[1]
    err = _error(_join(lines))
    assert (err.row, err.field) == (61, "Column 1")


def test_missing_header(excerpt_bytes: bytes) -> None:
    data_only = _join(_lines(excerpt_bytes)[6:])
    assert not sniff_txt(EXCERPT.name, data_only)
    err = _error(data_only)
    assert err.row == 2 and "Column1/Column2 Edits" in str(err)


def test_wrong_header_cell(excerpt_bytes: bytes) -> None:
    lines = _lines(excerpt_bytes)
    lines[2] = lines[2].replace("Effective", "Start")
    err = _error(_join(lines))
    assert (err.row, err.field) == (3, "Effective")


def test_empty_and_header_only_files(excerpt_bytes: bytes) -> None:
    assert "empty" in str(_error(b""))
    assert "empty" in str(_error(b" \r\n"))
    header_only = _join(_lines(excerpt_bytes)[:6]) + b"\r\n"
    err = _error(header_only)
    assert err.row == 7 and "no PTP edits" in str(err)
    err = _error(_join(_lines(excerpt_bytes)[:4]))
    assert "header" in str(err)


def test_blank_lines_keep_physical_row_numbers(excerpt_bytes: bytes) -> None:
    lines = _lines(excerpt_bytes)
    lines.insert(8, "")                                  # blank physical line 9
    lines.insert(20, "")
    parsed = parse_txt(EXCERPT.name, _join(lines))
    assert len(parsed.frame) == 154
    assert _edit(parsed.frame, "0001A", "36591")["source_row"] == 11
    lines[30] = lines[30].replace("\t1\t", "\tX\t")
    assert _error(_join(lines)).row == 31


def test_no_final_newline_and_whitespace_line(excerpt_bytes: bytes) -> None:
    parsed = parse_txt(EXCERPT.name, excerpt_bytes.rstrip(b"\r\n"))
    assert len(parsed.frame) == 154 and parsed.frame["source_row"].iloc[-1] == 160
    lines = _lines(excerpt_bytes)
    lines[70] = "   "
    err = _error(_join(lines))
    assert (err.row, err.field) == (71, "Column 2")


def test_lf_line_endings_and_cp1252_bytes(excerpt_bytes: bytes) -> None:
    text = excerpt_bytes.replace(b"\r\n", b"\n").replace(b"Misuse of Column", b"Misuse\xa0of Column")
    parsed = parse_txt(EXCERPT.name, text)
    assert len(parsed.frame) == 154
    assert parsed.frame["source_row"].iloc[-1] == 160
    assert parsed.frame["rationale"].str.contains("Misuse\u00a0of", regex=False).sum() > 0


def test_outpatient_hospital_table_is_refused(excerpt_bytes: bytes) -> None:
    err = _error(excerpt_bytes, name="ccioph-v322r0-f1.txt")
    assert "outpatient-hospital" in str(err)


# --- the full real table in CMS layout ------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_source() -> pd.DataFrame:
    return pd.read_parquet(_need(FULL))


@pytest.fixture(scope="module")
def full_parts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_ptp_parts(_need(FULL), tmp_path_factory.mktemp("ptp_parts"), year=2025, quarter=4,
                           version="v313r0", parts=4)


@pytest.mark.slow
def test_full_table_round_trips(full_parts: list[Path], full_source: pd.DataFrame) -> None:
    assert [p.name for p in full_parts] == [
        f"medicare-ncci-2025q4-practitioner-ptp-edits-ccipra-v313r0-f{n}.txt" for n in range(1, 5)]
    parsed = [parse_txt(p.name, p.read_bytes()) for p in full_parts]
    assert {p.release for p in parsed} == {"PTP-2025Q4"}
    assert [p.meta["part"] for p in parsed] == ["f1", "f2", "f3", "f4"]
    assert all(p.warnings == [] for p in parsed)
    # consecutive column 1 ranges; no column 1 code in two parts
    ranges = [(p.frame["column_1"].iloc[0], p.frame["column_1"].iloc[-1]) for p in parsed]
    assert ranges[0][0] == "0001A"
    assert all(ranges[i][1] < ranges[i + 1][0] for i in range(3))
    assert all(abs(len(p.frame) - FULL_ROWS / 4) < FULL_ROWS / 40 for p in parsed)

    got = pd.concat([p.frame for p in parsed], ignore_index=True)
    src = full_source
    assert len(got) == FULL_ROWS
    for column in ("column_1", "column_2", "rationale"):
        assert got[column].eq(src[column]).all(), column
    assert got["prior_1996"].eq(src["prior_1996"].fillna("")).all()
    assert got["modifier_indicator"].eq(src["modifier_indicator"].astype(str)).all()
    active = src["deletion_date"].eq("9999-12-31")
    assert got["deletion_date"].isna().eq(active).all()
    expected_deletion = pd.to_datetime(src["deletion_date"].where(~active), format="%Y-%m-%d")
    assert got.loc[~active, "deletion_date"].eq(expected_deletion[~active]).all()
    assert got["modifier_indicator"].value_counts().to_dict() == {"1": 1_707_255, "0": 738_981, "9": 98_853}

    # placeholder effective dates: as documented, and never after a real deletion
    expected_eff = pd.to_datetime(ptp_placeholder_effective(
        src["prior_1996"], src["deletion_date"], src["modifier_indicator"], year=2025, quarter=4), format="%Y%m%d")
    assert got["effective_date"].eq(expected_eff).all()
    real = got["modifier_indicator"] != "9"
    assert (got.loc[real & got["deletion_date"].notna(), "deletion_date"]
            >= got.loc[real & got["deletion_date"].notna(), "effective_date"]).all()
    assert (got.loc[got["prior_1996"] == "*", "effective_date"] == pd.Timestamp("1996-01-01")).all()
    assert (got.loc[got["deletion_date"].isna() & (got["prior_1996"] == ""), "effective_date"]
            == pd.Timestamp("2025-10-01")).all()

    key = got[(got["column_1"] == "20553") & (got["column_2"] == "20552")]
    assert key[["modifier_indicator", "rationale"]].values.tolist() == [["0", "More extensive procedure"]]
    assert key["deletion_date"].isna().all()


@pytest.mark.slow
def test_loader_publishes_every_row_from_zipped_parts(tmp_path: Path) -> None:
    from scrubber.reference.loader import load_paths
    from scrubber.store import LocalStore

    zips = write_ptp_parts(_need(FULL), tmp_path / "in", zipped=True)
    with zipfile.ZipFile(zips[0]) as zf:
        assert zf.namelist() == ["ccipra-v313r0-f1.txt"]
    store = LocalStore(tmp_path / "store")
    report = load_paths(store, zips)
    published = [p for p in report.published if p["table"] == "ptp"]
    assert [(p["release"], p["rows"]) for p in published] == [("PTP-2025Q4", FULL_ROWS)]
    key = next(k for k in store.list("reference/ptp/PTP-2025Q4/") if k.endswith(".parquet"))
    frame = store.read_parquet(key)
    assert len(frame) == FULL_ROWS
    assert CHECK_DELETION not in frame.columns
    assert frame.groupby("part").size().sum() == FULL_ROWS
    assert sorted(frame["part"].unique()) == ["f1", "f2", "f3", "f4"]
    assert frame["deletion_date"].isna().sum() == 1_669_187
