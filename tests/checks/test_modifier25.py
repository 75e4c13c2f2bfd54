"""Modifier 25 / 57 / 24 and global surgery (billing-domain 6), on hand-built lines with the real rules/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from factory import make_context, make_history, make_lines

from scrubber.checks import modifier25
from scrubber.checks.engine import run_checks
from scrubber.checks.modifier25 import EmCodes, load_em_codes
from scrubber.errors import RulesError
from scrubber.settings import Settings

RULES = Path(__file__).resolve().parents[2] / "rules"
OTHER_NPI = "1999999992"
#: 27447 total knee: 090 global, NON-FAC NA (RVU25D)
TKA = {"hcpcs": "27447", "global_days": "090", "nonfacility_na": True, "place_of_service": "21"}


def hits(lines: pd.DataFrame, history: pd.DataFrame | None = None, **settings) -> pd.DataFrame:
    ctx = make_context(lines, history=history, settings=Settings(**settings) if settings else None)
    return modifier25.check(ctx)


def rules_of(result: pd.DataFrame, uid: int) -> list[str]:
    return sorted(result.loc[result["line_uid"] == uid, "rule_id"])


# --- same day, 000/010 procedure (EM-NO25) -----------------------------------------------------------------

def test_em_with_20553_same_day_without_25_is_denied_with_the_procedure_as_related() -> None:
    lines = make_lines([{"hcpcs": "99213"}, {"hcpcs": "20553"}])  # billing-domain 6.4
    res = hits(lines)
    assert res["rule_id"].tolist() == ["EM-NO25"]
    row = res.iloc[0]
    assert row["line_uid"] == 0 and row["related_line_uid"] == 1 and row["related_source"] == "batch"
    assert "20553 (global 000) on 2025-03-14" in row["detail"]

    flags = run_checks(make_context(lines), run_id="r1", families=["modifier25"])
    flag = flags[flags["rule_id"] == "EM-NO25"].iloc[0]
    assert flag["severity"] == "deny" and flag["rule_family"] == "modifier25"
    assert flag["related_claim_id"] == "C2" and flag["hcpcs"] == "99213"
    assert "CO-97" in flag["carc"]


def test_em_with_25_and_same_day_procedure_passes() -> None:
    res = hits(make_lines([{"hcpcs": "99213", "modifiers": "25"}, {"hcpcs": "20553"}]))
    assert res.empty


def test_different_npi_is_not_the_same_provider() -> None:
    res = hits(make_lines([{"hcpcs": "99213"}, {"hcpcs": "20553", "rendering_npi": OTHER_NPI}]))
    assert res.empty
    # with 25 and the procedure only by someone else, the 25 has nothing to describe
    res = hits(make_lines([{"hcpcs": "99213", "modifiers": "25"}, {"hcpcs": "20553", "rendering_npi": OTHER_NPI}]))
    assert res["rule_id"].tolist() == ["EM-25-NOPROC"]


def test_provider_key_billing_npi_groups_two_rendering_npis_of_one_group() -> None:
    lines = make_lines([{"hcpcs": "99213", "billing_npi": "1111111112"},
                        {"hcpcs": "20553", "rendering_npi": OTHER_NPI, "billing_npi": "1111111112"}])
    assert hits(lines).empty
    assert hits(lines, provider_key="billing_npi")["rule_id"].tolist() == ["EM-NO25"]


def test_one_flag_per_em_line_naming_the_first_procedure_and_counting_the_rest() -> None:
    lines = make_lines([{"hcpcs": "99214"}, {"hcpcs": "20552"}, {"hcpcs": "17000"}])
    res = hits(lines)
    assert res["rule_id"].tolist() == ["EM-NO25"]
    detail = res.iloc[0]["detail"]
    assert "20552 (global 000) on 2025-03-14, claim C2 line 1 (and 1 more the same way)" in detail
    assert res.iloc[0]["related_line_uid"] == 1  # the first procedure line of the batch


def test_procedure_in_history_on_the_same_day_counts() -> None:
    history = make_history([{"hcpcs": "20553"}], run_id="run-0313", start_uid=0)
    res = hits(make_lines([{"hcpcs": "99213"}]), history)
    assert res["rule_id"].tolist() == ["EM-NO25"]
    assert res.iloc[0]["related_source"] == "history" and res.iloc[0]["related_run_id"] == "run-0313"
    flags = run_checks(make_context(make_lines([{"hcpcs": "99213"}]), history=history), run_id="r2",
                       families=["modifier25"])
    assert flags.iloc[0]["related_claim_id"] == "C1" and pd.isna(flags.iloc[0]["related_line_uid"])


def test_preventive_visit_is_not_subject_to_the_global_rules() -> None:
    # G0439 (AWV) the same day as 20553: the preventive group has global_surgery: false in em_codes.yaml
    assert hits(make_lines([{"hcpcs": "G0439"}, {"hcpcs": "20553"}])).empty


# --- modifier 25 placement (EM-25-NOPROC, MOD25-NON-EM) -----------------------------------------------------

def test_25_on_99213_alone_is_review() -> None:
    lines = make_lines([{"hcpcs": "99213", "modifiers": "25"}])
    res = hits(lines)
    assert res["rule_id"].tolist() == ["EM-25-NOPROC"]
    assert "rendering NPI 1234567893" in res.iloc[0]["detail"]
    flags = run_checks(make_context(lines), run_id="r1", families=["modifier25"])
    assert flags.iloc[0]["severity"] == "review"


@pytest.mark.parametrize(("other", "flagged"), [("96372", False), ("G0439", False), ("G2211", True),
                                                ("99214", True)])
def test_what_counts_as_another_service_for_25(other: str, flagged: bool) -> None:
    res = hits(make_lines([{"hcpcs": "99213", "modifiers": "25"}, {"hcpcs": other}]))
    assert ("EM-25-NOPROC" in rules_of(res, 0)) is flagged


def test_25_on_20553_is_denied_and_on_an_eye_exam_is_accepted() -> None:
    res = hits(make_lines([{"hcpcs": "20553", "modifiers": "25"}, {"hcpcs": "92012", "modifiers": "25"},
                           {"hcpcs": "99213"}]))
    assert rules_of(res, 0) == ["MOD25-NON-EM"]
    assert rules_of(res, 1) == []
    flags = run_checks(make_context(make_lines([{"hcpcs": "20553", "modifiers": "25"}])), run_id="r1",
                       families=["modifier25"])
    assert flags["rule_id"].tolist() == ["MOD25-NON-EM"] and flags.iloc[0]["severity"] == "deny"


# --- 090 procedures: decision for surgery (EM-NO57) -----------------------------------------------------------

def test_em_the_day_before_27447_without_57() -> None:
    lines = make_lines([{"hcpcs": "99213", "service_date": "2025-03-13"}, TKA])
    res = hits(lines)
    assert res["rule_id"].tolist() == ["EM-NO57"]
    assert "the day before 27447 (global 090)" in res.iloc[0]["detail"]
    assert res.iloc[0]["related_line_uid"] == 1


@pytest.mark.parametrize(("date", "mods", "expected"), [
    ("2025-03-13", "57", []),                # decision for surgery
    ("2025-03-13", "25", ["EM-25-NOPROC", "EM-NO57"]),  # 25 does not cover the day before (nor mean anything)
    ("2025-03-14", "25", []),                # on the day, 25 is accepted
    ("2025-03-14", "", ["EM-NO57"]),
    ("2025-03-12", "", []),                  # two days before: outside the package
])
def test_57_window(date: str, mods: str, expected: list[str]) -> None:
    res = hits(make_lines([{"hcpcs": "99214", "service_date": date, "modifiers": mods}, TKA]))
    assert rules_of(res, 0) == expected


def test_surgery_billed_in_an_earlier_run_with_a_later_date() -> None:
    history = make_history([{**TKA, "service_date": "2025-03-15"}], run_id="run-a")
    res = hits(make_lines([{"hcpcs": "99213", "service_date": "2025-03-14"}]), history)
    assert res["rule_id"].tolist() == ["EM-NO57"] and res.iloc[0]["related_source"] == "history"


# --- post-operative windows (EM-IN-POSTOP) --------------------------------------------------------------------

def test_em_5_days_after_17000_without_24_from_history() -> None:
    history = make_history([{"hcpcs": "17000", "service_date": "2025-03-09"}], run_id="run-0309")
    lines = make_lines([{"hcpcs": "99213", "service_date": "2025-03-14"}])
    res = hits(lines, history)
    assert res["rule_id"].tolist() == ["EM-IN-POSTOP"]
    assert "day 5 of the post-operative period of 17000 (global 010) on 2025-03-09" in res.iloc[0]["detail"]
    assert "earlier run run-0309" in res.iloc[0]["detail"]
    flags = run_checks(make_context(lines, history=history), run_id="r2", families=["modifier25"])
    assert flags.iloc[0]["related_claim_id"] == "C1" and flags.iloc[0]["severity"] == "review"


@pytest.mark.parametrize(("proc", "gap", "mods", "flagged"), [
    ({"hcpcs": "17000"}, 10, "", True),
    ({"hcpcs": "17000"}, 11, "", False),
    ({"hcpcs": "17000"}, 5, "24", False),
    (TKA, 90, "", True),
    (TKA, 91, "", False),
    ({**TKA, "modifiers": "54"}, 30, "", False),   # surgical care only: no post-op care by this surgeon
    ({"hcpcs": "20553"}, 1, "", False),            # 000: nothing after the day
])
def test_postop_window_edges(proc: dict, gap: int, mods: str, flagged: bool) -> None:
    dos = pd.Timestamp("2025-01-02")
    lines = make_lines([{**proc, "service_date": dos},
                        {"hcpcs": "99213", "service_date": dos + pd.Timedelta(days=gap), "modifiers": mods}])
    assert ("EM-IN-POSTOP" in rules_of(hits(lines), 1)) is flagged


def test_postop_by_another_npi_is_not_flagged() -> None:
    lines = make_lines([{"hcpcs": "17000", "service_date": "2025-03-09"},
                        {"hcpcs": "99213", "rendering_npi": OTHER_NPI}])
    assert hits(lines).empty


def test_other_patients_do_not_mix() -> None:
    lines = make_lines([{"hcpcs": "99213", "patient_id": "P1"}, {"hcpcs": "20553", "patient_id": "P2"}])
    assert hits(lines).empty


# --- rules/em_codes.yaml ---------------------------------------------------------------------------------------

def test_real_em_code_list() -> None:
    em = load_em_codes(RULES / "em_codes.yaml")
    assert isinstance(em, EmCodes) and isinstance(em, frozenset)
    assert {"99202", "99215", "99221", "99239", "99285", "99291", "99310", "99350", "G0439"} <= em
    assert "99343" not in em and "99242" not in em and "99201" not in em
    assert em.groups["office_established"] == frozenset({"99211", "99212", "99213", "99214", "99215"})
    assert "G0439" not in em.global_surgery and "G0439" in em.supports_25
    setting = em.settings
    assert set(setting.loc[setting["hcpcs"] == "99283", "pos"]) == {"23"}


@pytest.mark.parametrize(("text", "needle"), [
    ("groups:\n  office:\n    codes: [99213]\n  other:\n    codes: ['99213']\n", "already in group office"),
    ("groups:\n  office:\n    codes: ['9921']\n", "not a 5-character"),
    ("groups:\n  office:\n    codes: ['99213']\n    pos_expected: [11]\n", "2-digit POS"),
    ("groups:\n  office:\n    codes: ['99213']\n    colour: red\n", "unknown key 'colour'"),
    ("groups:\n  office:\n    codes: ['99213']\n  bad: [\n", "not valid YAML"),
])
def test_malformed_em_codes_name_file_key_and_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "rules" / "em_codes.yaml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_em_codes(path)
    msg = str(err.value)
    assert "rules/em_codes.yaml" in msg and needle in msg and "line " in msg
