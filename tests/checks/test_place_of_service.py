"""Place of service (billing-domain 7): the POS table, facility_setting and the POS checks."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from factory import make_context, make_lines, rulebook

from scrubber.checks import place_of_service
from scrubber.checks.engine import run_checks
from scrubber.checks.place_of_service import facility_setting, load_pos_table
from scrubber.errors import RulesError

RULES = Path(__file__).resolve().parents[2] / "rules"
F_CODES = {"02", "19", "21", "22", "23", "24", "26", "31", "34", "41", "42", "51", "52", "53", "56", "61"}
NF_CODES = {"01", "03", "04", "09", "10", "11", "12", "13", "14", "15", "16", "17", "18", "20", "25", "27", "32", "33",
            "49", "50", "54", "55", "57", "58", "60", "62", "65", "71", "72", "81", "99"}
#: 27447 and 99221 carry NON-FAC NA in RVU25D; 96372 carries FACILITY NA and PC/TC 5
TKA = {"hcpcs": "27447", "global_days": "090", "nonfacility_na": True}


def run(lines: pd.DataFrame, **kw) -> pd.DataFrame:
    return place_of_service.check(make_context(lines, **kw))


def rules_of(res: pd.DataFrame, uid: int) -> list[str]:
    return sorted(res.loc[res["line_uid"] == uid, "rule_id"])


# --- rules/pos.yaml and facility_setting -----------------------------------------------------------------

def test_real_pos_table_rates() -> None:
    table = load_pos_table(RULES / "pos.yaml")
    assert list(table.columns[:5]) == ["pos", "name", "rate", "effective_from", "effective_to"]
    current = table[table["effective_to"].isna()]
    rate = dict(zip(current["pos"], current["rate"], strict=True))
    assert {p for p, r in rate.items() if r == "F"} == F_CODES
    assert {p for p, r in rate.items() if r == "NF"} == NF_CODES
    assert {p for p, r in rate.items() if r == "none"} == {"05", "06", "07", "08", "66"}
    assert set(table.loc[table["hospital"], "pos"]) == {"19", "21", "22", "23"}
    assert table.attrs["price_undesignated_as"] == "NF"


def test_pos_names_follow_the_cms_code_set(shared_ref: Path) -> None:
    path = shared_ref / "pos" / "terminology__place_of_service.csv"
    if not path.is_file():
        pytest.skip("pos/terminology__place_of_service.csv missing from shared reference data")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        cms = {r["place_of_service_code"]: r["place_of_service_description"] for r in csv.DictReader(fh)}
    table = load_pos_table(RULES / "pos.yaml")
    ours = dict(zip(table["pos"], table["name"], strict=False))
    assert set(cms) <= set(ours)                       # every CMS code is in the table
    assert set(ours) - set(cms) == {"27", "66"}        # plus the two added after April 2023
    assert all(ours[c] == name for c, name in cms.items())


def test_facility_setting_is_dated() -> None:
    table = load_pos_table(RULES / "pos.yaml")
    pos = pd.Series(["10", "10", "02", "11", "22", "05", "00", "10"], index=list("abcdefgh"))
    dates = pd.Series(pd.to_datetime(["2023-12-31", "2024-01-01", "2025-05-01", "2025-05-01", "2025-05-01",
                                      "2025-05-01", "2025-05-01", "2021-06-01"]), index=pos.index)
    got = facility_setting(pos, dates, table)
    assert got.index.tolist() == list("abcdefgh")
    # POS 10: facility rate before 2024, non-facility since; 02 facility; none (05), invalid (00) and
    # POS 10 before it existed price at the non-facility rate
    assert got.tolist() == [True, False, True, False, True, False, False, False]


def test_facility_setting_without_a_table() -> None:
    pos = pd.Series(["22"])
    assert facility_setting(pos, pd.Series(pd.to_datetime(["2025-01-01"])), None).tolist() == [False]


# --- the checks ------------------------------------------------------------------------------------------

def test_pos_11_on_codes_with_non_facility_na() -> None:
    lines = make_lines([{**TKA, "place_of_service": "11"}, {"hcpcs": "99221", "nonfacility_na": True},
                        {**TKA, "place_of_service": "21"}])
    res = run(lines)
    assert rules_of(res, 0) == ["POS-NF-NA"]
    assert rules_of(res, 1) == ["POS-EM-SETTING", "POS-NF-NA"]   # hospital E/M from the office, too
    assert rules_of(res, 2) == []
    detail = res[(res["line_uid"] == 0)].iloc[0]["detail"]
    assert "27447" in detail and "POS 11 (Office)" in detail


def test_96372_in_pos_22_is_facility_na_and_incident_to() -> None:
    lines = make_lines([{"hcpcs": "96372", "place_of_service": "22"}, {"hcpcs": "96372", "place_of_service": "11"},
                        {"hcpcs": "96372", "place_of_service": "24"}])
    res = run(lines)
    assert rules_of(res, 0) == ["POS-FAC-NA", "POS-INCIDENT-TO-HOSP"]
    assert rules_of(res, 1) == []
    assert rules_of(res, 2) == ["POS-FAC-NA"]          # ASC: facility rate, but not a hospital
    flags = run_checks(make_context(lines), run_id="r1", families=["place_of_service"])
    assert set(flags.loc[flags["line_uid"] == 0, "severity"]) == {"deny"}


@pytest.mark.parametrize(("pos", "dos", "needle"), [
    ("00", "2025-03-14", "POS '00' is not a valid place-of-service code"),
    ("AB", "2025-03-14", "not a valid"),
    ("", "2025-03-14", "not a valid"),
    ("30", "2025-03-14", "not a valid"),               # unassigned in the CMS code set
    ("10", "2021-06-01", "POS 10 is not in force on 2021-06-01"),
    ("27", "2023-09-30", "POS 27 is not in force"),
])
def test_invalid_pos(pos: str, dos: str, needle: str) -> None:
    res = run(make_lines([{"hcpcs": "99213", "place_of_service": pos, "service_date": dos}]))
    assert res["rule_id"].tolist() == ["POS-INVALID"]
    assert needle in res.iloc[0]["detail"]


def test_a_valid_pos_27_after_its_start() -> None:
    assert run(make_lines([{"hcpcs": "99213", "place_of_service": "27", "service_date": "2023-10-01"}])).empty


@pytest.mark.parametrize(("hcpcs", "pos", "flagged"), [
    ("99213", "21", True), ("99203", "31", True), ("99213", "11", False), ("99213", "22", False),
    ("99223", "11", True), ("99223", "21", False), ("99238", "11", True),
    ("99283", "11", True), ("99283", "22", True), ("99283", "23", False),
    ("99291", "11", False), ("20553", "23", False),
])
def test_em_family_vs_setting(hcpcs: str, pos: str, flagged: bool) -> None:
    res = run(make_lines([{"hcpcs": hcpcs, "place_of_service": pos}]))
    assert ("POS-EM-SETTING" in res["rule_id"].tolist()) is flagged


def test_em_setting_detail_names_the_group_and_expected_pos() -> None:
    res = run(make_lines([{"hcpcs": "99284", "place_of_service": "11"}]))
    detail = res.loc[res["rule_id"] == "POS-EM-SETTING", "detail"].iloc[0]
    assert "ed visit" in detail and "expected POS 23" in detail and "POS 11 (Office)" in detail


def test_facility_rate_difference_from_pricing() -> None:
    # 2025 national 20553: $58.55 non-facility vs $40.11 facility (billing-domain 7.2)
    lines = make_lines([{"hcpcs": "20553", "place_of_service": "22"}, {"hcpcs": "20553", "place_of_service": "11"},
                        {"hcpcs": "20553", "place_of_service": "22"}])
    lines["allowed_nonfacility"] = [58.55, 58.55, float("nan")]
    lines["allowed_facility"] = [40.11, 40.11, float("nan")]
    res = run(lines)
    assert res["rule_id"].tolist() == ["POS-FACILITY-RATE"] and res.iloc[0]["line_uid"] == 0
    assert res.iloc[0]["amount_basis"] == "pos_difference"
    assert "non-facility $58.55 vs facility $40.11" in res.iloc[0]["detail"]
    assert "$18.44 less" in res.iloc[0]["detail"]


def test_facility_rate_falls_back_to_rvu_totals() -> None:
    # RVU25D 20553: work 0.75, PE non-facility 0.98 / facility 0.41, MP 0.08
    pprrvu = pd.DataFrame({"release": ["RVU25D"], "hcpcs": ["20553"], "modifier": [""],
                           "total_nonfacility": [Decimal("1.81")], "total_facility": [Decimal("1.24")]})
    lines = make_lines([{"hcpcs": "20553", "place_of_service": "19"}])
    res = run(lines, pprrvu=pprrvu)
    assert res["rule_id"].tolist() == ["POS-FACILITY-RATE"]
    assert "1.81 RVUs vs facility 1.24 RVUs" in res.iloc[0]["detail"]


def test_telehealth_home_switch(tmp_path: Path) -> None:
    text = (RULES / "pos.yaml").read_text().replace(
        "telehealth_home_payable: null",
        "telehealth_home_payable:\n  - {effective_from: 2024-01-01, effective_to: 2025-10-01}\n"
        "  - {effective_from: 2025-11-13, effective_to: null}")
    (tmp_path / "pos.yaml").write_text(text)
    rb = rulebook()
    rules = type(rb)(**{**rb.__dict__, "pos": load_pos_table(tmp_path / "pos.yaml")})
    lines = make_lines([{"hcpcs": "99213", "place_of_service": "10", "service_date": d}
                        for d in ("2025-09-30", "2025-10-15", "2025-11-13")])
    res = run(lines, rules=rules)
    assert res["rule_id"].tolist() == ["POS-TELEHEALTH-HOME"] and res.iloc[0]["line_uid"] == 1
    assert run(lines).empty                             # the shipped table does not check it


# --- malformed rules/pos.yaml ------------------------------------------------------------------------------

GOOD = "codes:\n  - {pos: \"11\", name: Office, rate: NF, effective_from: 2000-01-01}\n"


@pytest.mark.parametrize(("text", "needles"), [
    (GOOD.replace("rate: NF", "rate: X"), ["line 2", "key 'codes[0].rate'", "rate must be F, NF or none"]),
    (GOOD.replace('pos: "11"', "pos: 11"), ["key 'codes[0].pos'", "quoted 2-digit"]),
    (GOOD.replace("effective_from: 2000-01-01", "effective_from: soon"), ["codes[0].effective_from", "YYYY-MM-DD"]),
    (GOOD + "  - {pos: \"11\", name: Office, rate: F, effective_from: 2020-01-01}\n",
     ["overlapping periods", "codes[0].effective_to"]),
    (GOOD.replace("name: Office", "name: Office, colour: red"), ["unknown key 'colour'", "line 2"]),
    ("codes: []\n", ["key 'codes'", "non-empty list"]),
    ("price_undesignated_as: maybe\n" + GOOD, ["line 1", "must be F or NF"]),
    (GOOD + "  - {pos: \"12\"\n", ["not valid YAML"]),
])
def test_malformed_pos_yaml_names_file_key_and_line(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "rules" / "pos.yaml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_pos_table(path)
    msg = str(err.value)
    assert msg.startswith("rules/pos.yaml")
    for needle in needles:
        assert needle in msg


# --- with the real RVU25D indicators -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def rvu25d_rows(rvu25d_dir: Path) -> pd.DataFrame:
    from scrubber.reference.rvu import parse_pprrvu_csv

    path = rvu25d_dir / "PPRRVU2025_Oct.csv"
    if not path.is_file():
        pytest.skip("PPRRVU2025_Oct.csv missing from the RVU25D folder")
    parsed = parse_pprrvu_csv(path.name, path.read_bytes())
    frame = parsed.frame
    rows = frame[frame["hcpcs"].isin(["27447", "99221", "96372", "20553"]) & (frame["modifier"] == "")]
    return rows.assign(release=parsed.release or "RVU25D")


def test_pos_checks_with_real_rvu25d_indicators(rvu25d_rows: pd.DataFrame) -> None:
    ind = rvu25d_rows.set_index("hcpcs")
    cols = ["global_days", "pctc_indicator", "nonfacility_na", "facility_na", "status_code"]
    release = str(rvu25d_rows["release"].iloc[0])
    lines = make_lines([{"hcpcs": code, "place_of_service": pos, "rvu_release": release,
                         **{c: ind.at[code, c] for c in cols}}
                        for code, pos in (("27447", "11"), ("99221", "11"), ("96372", "22"), ("20553", "22"))])
    res = run(lines, pprrvu=rvu25d_rows)
    assert rules_of(res, 0) == ["POS-NF-NA"]                               # 27447 NON-FAC NA
    assert rules_of(res, 1) == ["POS-EM-SETTING", "POS-NF-NA"]             # 99221 NON-FAC NA, hospital E/M
    assert rules_of(res, 2) == ["POS-FAC-NA", "POS-INCIDENT-TO-HOSP"]      # 96372 FACILITY NA, PC/TC 5
    assert rules_of(res, 3) == ["POS-FACILITY-RATE"]                       # 20553: 1.81 vs 1.24 RVUs
    assert "1.81 RVUs vs facility 1.24 RVUs" in res.loc[res["line_uid"] == 3, "detail"].iloc[0]
