"""Frequency limits (billing-domain 8): rule schema, Medicare month counting, history + batch counting."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest
from factory import make_context, make_history, make_lines, rulebook

from scrubber.checks import frequency
from scrubber.checks.engine import run_checks
from scrubber.checks.frequency import load_frequency_rules, lookback_start
from scrubber.errors import RulesError
from scrubber.history import append_history, read_history
from scrubber.rules import RuleBook
from scrubber.store import LocalStore

RULES = Path(__file__).resolve().parents[2] / "rules"


def run(lines: pd.DataFrame, history: pd.DataFrame | None = None, rules=None) -> pd.DataFrame:
    return frequency.check(make_context(lines, history=history, rules=rules))


def with_rules(tmp_path: Path, body: str):
    """The real rule book with rules/frequency.yaml replaced by ``body`` (a list of rules)."""
    path = tmp_path / "frequency.yaml"
    path.write_text("rules:\n" + body)
    rb = rulebook()
    return type(rb)(**{**rb.__dict__, "frequency": load_frequency_rules(path)})


def flagged(res: pd.DataFrame) -> list[int]:
    return sorted(res["line_uid"].tolist())


# --- the shipped rules ---------------------------------------------------------------------------------------

def test_seed_rules_load() -> None:
    rules = {r.id: r for r in load_frequency_rules(RULES / "frequency.yaml")}
    awv = rules["medicare_awv_subsequent"]
    assert awv.applies_to_codes == ("G0439",) and awv.counts_codes == ("G0438", "G0439")
    assert (awv.window.type, awv.window.n, awv.max_count, awv.severity) == ("months_after_month", 11, 1, "deny")
    assert rules["medicare_ippe"].window.type == "lifetime"
    assert rules["medicare_awv_initial"].blocks_if_codes == ("G0402",)
    assert rules["medicare_screening_colonoscopy_average_risk"].window.n == 119
    assert rules["medicare_screening_colonoscopy_average_risk"].blocks_window.n == 47
    assert rules["medicare_screening_colonoscopy_high_risk"].window.n == 23
    assert rules["medicare_screening_sigmoidoscopy"].window.n == 47
    assert rules["medicare_screening_pelvic_breast"].window.n == 23
    tpi = rules["mac_trigger_point_sessions"]
    assert (tpi.max_count, tpi.window.type, tpi.window.n, tpi.severity) == (3, "rolling_months", 12, "review")
    assert rules["acme_advantage_trigger_point_60_days"].payer == "acme_advantage"
    new = rules["medicare_new_patient_office"]
    assert new.applies_to_codes == ("99202", "99203", "99204", "99205") and new.counts_codes == ()
    assert (new.blocks_window.type, new.blocks_window.n, new.blocks_same_day) == ("rolling_months", 36, False)
    assert (new.scope, new.severity, new.report_as) == ("beneficiary+rendering_npi", "review", "FREQ-NEW-PATIENT")
    assert "99215" in new.blocks_if_codes and "20610" in new.blocks_if_codes and "93010" not in new.blocks_if_codes
    assert all(r.source for r in rules.values())


# --- Medicare month counting (8.2) -------------------------------------------------------------------------

@pytest.mark.parametrize(("dos", "hit"), [("2026-02-28", True), ("2026-03-01", False), ("2025-12-01", True)])
def test_awv_march_2025_next_allowed_2026_03_01(dos: str, hit: bool) -> None:
    history = make_history([{"hcpcs": "G0439", "service_date": "2025-03-14"}], run_id="run-2025-03")
    res = run(make_lines([{"hcpcs": "G0439", "service_date": dos}]), history)
    assert bool(len(res)) is hit
    if hit:
        row = res.iloc[0]
        assert row["rule_id"] == "FREQ-LIMIT" and row["severity"] == "deny"
        assert "medicare_awv_subsequent" in row["detail"]
        assert "G0439 on 2025-03-14 (earlier run run-2025-03, claim C1 line 1)" in row["detail"]
        assert "next allowed on or after 2026-03-01" in row["detail"]
        assert row["related_source"] == "history" and row["related_run_id"] == "run-2025-03"


def test_initial_awv_counts_for_the_subsequent_one() -> None:
    history = make_history([{"hcpcs": "G0438", "service_date": "2025-06-02"}])
    assert flagged(run(make_lines([{"hcpcs": "G0439", "service_date": "2026-05-31"}]), history)) == [0]
    assert run(make_lines([{"hcpcs": "G0439", "service_date": "2026-06-01"}]), history).empty


def test_colonoscopy_47_full_months_after_a_sigmoidoscopy() -> None:
    history = make_history([{"hcpcs": "G0104", "service_date": "2021-01-20"}])
    res = run(make_lines([{"hcpcs": "G0121", "service_date": "2024-12-31"}]), history)
    assert "not allowed within 47 full months" in res.iloc[0]["detail"]
    assert run(make_lines([{"hcpcs": "G0121", "service_date": "2025-01-01"}]), history).empty


def test_initial_awv_lifetime_and_ippe_block() -> None:
    history = make_history([{"hcpcs": "G0402", "service_date": "2025-02-10"}])
    blocked = run(make_lines([{"hcpcs": "G0438", "service_date": "2026-01-31"}]), history)
    assert "not allowed within 11 full months after the month of the last service of G0402" in \
        blocked.iloc[0]["detail"]
    assert run(make_lines([{"hcpcs": "G0438", "service_date": "2026-02-01"}]), history).empty
    twice = make_history([{"hcpcs": "G0438", "service_date": "2015-05-05"}])
    res = run(make_lines([{"hcpcs": "G0438", "service_date": "2025-05-05"}]), twice)
    assert "once per lifetime" in res.iloc[0]["detail"]


def test_several_reasons_make_one_flag() -> None:
    history = make_history([{"hcpcs": "G0402", "service_date": "2025-01-10"},
                            {"hcpcs": "G0438", "service_date": "2025-02-10"}])
    res = run(make_lines([{"hcpcs": "G0439", "service_date": "2025-06-02"}]), history)
    assert len(res) == 1
    detail = res.iloc[0]["detail"]
    assert "not allowed within 11 full months after the month of the last service of G0402 on 2025-01-10" in detail
    assert "; frequency rule medicare_awv_subsequent (at most 1 service" in detail
    assert "the latest G0438 on 2025-02-10" in detail


# --- new vs established patient (billing-domain 6.5) ---------------------------------------------------------

OTHER_NPI = "1999999992"


@pytest.mark.parametrize(("earlier", "hit"), [
    ({"hcpcs": "99213", "service_date": "2023-03-15"}, True),                          # 2 years before
    ({"hcpcs": "20610", "service_date": "2025-01-06"}, True),                          # a procedure counts
    ({"hcpcs": "99213", "service_date": "2022-03-14"}, False),                         # 3 years before: new
    ({"hcpcs": "99213", "service_date": "2023-03-15", "rendering_npi": OTHER_NPI}, False),   # another doctor
    ({"hcpcs": "93010", "service_date": "2024-06-01"}, False),                         # an ECG read only
    ({"hcpcs": "99213", "service_date": "2024-06-01", "patient_id": "P2"}, False),    # another patient
])
def test_new_patient_visit_after_a_service_within_3_years(earlier: dict, hit: bool) -> None:
    history = make_history([earlier], run_id="run-earlier")
    res = run(make_lines([{"hcpcs": "99203", "service_date": "2025-03-14"}]), history)
    assert bool(len(res)) is hit
    if hit:
        row = res.iloc[0]
        assert (row["rule_id"], row["severity"]) == ("FREQ-NEW-PATIENT", "review")
        assert "medicare_new_patient_office" in row["detail"] and "36 months" in row["detail"]
        assert f"{earlier['hcpcs']} on {earlier['service_date']} (earlier run run-earlier" in row["detail"]


def test_new_patient_visit_with_a_procedure_the_same_day_passes() -> None:
    lines = make_lines([{"hcpcs": "99203", "modifiers": "25"}, {"hcpcs": "20610"}])
    assert run(lines).empty


def test_new_patient_codes_within_one_batch_and_the_report_row() -> None:
    """The second new-patient visit of a batch is flagged against the first; the flag reads as a B16 risk
    with the established code as the fix, and the whole line is at risk."""
    lines = make_lines([{"hcpcs": "99204", "service_date": "2025-03-03", "claim_id": "A"},
                        {"hcpcs": "99203", "service_date": "2025-03-14", "claim_id": "B"},
                        {"hcpcs": "99202", "service_date": "2025-03-20", "claim_id": "D", "patient_id": "P3"}])
    assert flagged(run(lines)) == [1]
    flags = run_checks(make_context(lines), run_id="r", families=["frequency"])
    flag = flags.iloc[0]
    assert (flag["claim_id"], flag["related_claim_id"], flag["rule_family"]) == ("B", "A", "frequency")
    assert flag["carc"] == "CO-B16" and flag["amount_basis"] == "line"
    assert "99203 on 2025-03-14 is a new-patient visit" in flag["message"]
    assert "99204 on 2025-03-03 (this batch, claim A line 1)" in flag["message"]
    assert "99203 -> 99213" in flag["fix"]


def test_report_as_must_name_a_frequency_rule_of_the_catalog(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    path = rules_dir / "frequency.yaml"
    for wrong, needle in (("FREQ-NOPE", "is not a rule of rules/catalog"), ("EM-NO25", "is a modifier25 rule")):
        body = rule().replace("    source: test\n", f"    report_as: {wrong}\n    source: test\n")
        path.write_text("rules:\n" + body)
        with pytest.raises(RulesError, match=needle):
            RuleBook.load(rules_dir)


# --- counting across runs and within a batch ------------------------------------------------------------------

def test_frequency_across_two_nightly_runs_through_the_history_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    night1 = make_lines([{"hcpcs": "G0402", "patient_id": "P9", "service_date": "2025-01-06", "claim_id": "N1"}])
    assert run(night1).empty
    append_history(store, night1, run_id="night-1")

    night2 = make_lines([{"hcpcs": "G0402", "patient_id": "P9", "service_date": "2025-04-01", "claim_id": "N2"},
                         {"hcpcs": "G0402", "patient_id": "P8", "service_date": "2025-04-01", "claim_id": "N3"}])
    history = read_history(store, patient_ids=night2["patient_id"].unique(),
                           start=lookback_start(rulebook().frequency, dt.date(2025, 4, 1)), end=dt.date(2025, 4, 2),
                           exclude_run_id="night-2")
    flags = run_checks(make_context(night2, history=history), run_id="night-2", families=["frequency"])
    assert flags["claim_id"].tolist() == ["N2"]
    flag = flags.iloc[0]
    assert flag["rule_id"] == "FREQ-LIMIT" and flag["severity"] == "deny" and flag["related_claim_id"] == "N1"
    assert "medicare_ippe" in flag["message"] and "2025-01-06" in flag["message"]
    assert "CO-119" in flag["carc"]


def test_two_lines_of_one_batch_conflict() -> None:
    lines = make_lines([{"hcpcs": "G0402", "service_date": "2025-05-02"},
                        {"hcpcs": "G0402", "service_date": "2025-03-01"}])
    res = run(lines)
    assert flagged(res) == [0]                           # the later date of service, not the later line
    assert res.iloc[0]["related_line_uid"] == 1 and res.iloc[0]["related_source"] == "batch"
    assert "this batch, claim C2 line 1" in res.iloc[0]["detail"]


def test_same_day_lines_are_one_session() -> None:
    lines = make_lines([{"hcpcs": "G0402"}, {"hcpcs": "G0402"}])
    assert run(lines).empty                              # a duplicate, not a second session (DUP-BATCH's job)


def test_a_line_this_rule_denies_does_not_use_up_the_allowance() -> None:
    history = make_history([{"hcpcs": "G0439", "service_date": "2025-03-14"}])
    lines = make_lines([{"hcpcs": "G0439", "service_date": "2025-06-02"},
                        {"hcpcs": "G0439", "service_date": "2026-04-01"}])
    # June 2025 is too soon (denied); April 2026 is 13 months after March 2025 and is fine
    assert flagged(run(lines, history)) == [0]


def test_other_patients_and_denied_history_scope() -> None:
    history = make_history([{"hcpcs": "G0402", "patient_id": "P2", "service_date": "2024-01-01"}])
    assert run(make_lines([{"hcpcs": "G0402"}]), history).empty


# --- trigger points: sessions per rolling 12 months, review ------------------------------------------------------

def test_trigger_point_fourth_session_in_rolling_12_months_is_review() -> None:
    history = make_history([{"hcpcs": "20553", "service_date": d} for d in ("2024-03-10", "2024-06-01")]
                           + [{"hcpcs": "20552", "service_date": "2024-09-01", "units": 2.0}])
    on_anniversary = run(make_lines([{"hcpcs": "20553", "service_date": "2025-03-10"}]), history)
    assert on_anniversary.empty                         # 2024-03-10 has left the window
    res = run(make_lines([{"hcpcs": "20553", "service_date": "2025-03-09"}]), history)
    assert res.iloc[0]["severity"] == "review" and "mac_trigger_point_sessions" in res.iloc[0]["detail"]
    assert "3 already counted" in res.iloc[0]["detail"]
    flags = run_checks(make_context(make_lines([{"hcpcs": "20553", "service_date": "2025-03-09"}]), history=history),
                       run_id="r", families=["frequency"])
    assert flags.iloc[0]["severity"] == "review" and flags.iloc[0]["rule_id"] == "FREQ-LIMIT"


def test_review_lines_still_count_for_later_lines() -> None:
    lines = make_lines([{"hcpcs": "20553", "service_date": d}
                        for d in ("2025-01-06", "2025-02-03", "2025-03-03", "2025-04-07", "2025-05-05")])
    assert flagged(run(lines)) == [3, 4]
    assert "4 already counted" in run(lines).set_index("line_uid").loc[4, "detail"]


# --- payer scope ----------------------------------------------------------------------------------------------

def test_payer_specific_rule_applies_only_to_its_payer() -> None:
    acme = make_lines([{"hcpcs": "20553", "service_date": "2025-03-03", "payer": "acme_advantage"},
                       {"hcpcs": "20552", "service_date": "2025-04-01", "payer": "ACME_Advantage"}])
    res = run(acme)
    assert flagged(res) == [1] and "acme_advantage_trigger_point_60_days" in res.iloc[0]["detail"]
    assert res.iloc[0]["severity"] == "deny"
    assert "next allowed on or after 2025-05-02" in res.iloc[0]["detail"]
    medicare = make_lines([{"hcpcs": "20553", "service_date": "2025-03-03"},
                           {"hcpcs": "20552", "service_date": "2025-04-01", "payer": ""}])
    assert run(medicare).empty                            # 2 sessions: within Medicare's 3 per 12 months
    # and Medicare history does not count for the Advantage plan
    history = make_history([{"hcpcs": "20553", "service_date": "2025-03-03"}])
    assert run(make_lines([{"hcpcs": "20553", "service_date": "2025-03-20", "payer": "acme_advantage"}]),
               history).empty


# --- schema options with custom rules ----------------------------------------------------------------------------

RULE = """  - id: {id}
    payer: medicare
    effective: {{from: {start}, to: {end}}}
    applies_to_codes: ["J3301"]
    max_count: {max}
    window: {window}
    scope: {scope}
    per_side: {per_side}
    count_units: {units}
    source: test
"""


def rule(**kw) -> str:
    base = {"id": "t", "start": "2020-01-01", "end": "null", "max": 1, "window": "{type: calendar_year}",
            "scope": "beneficiary", "per_side": "false", "units": "false"}
    return RULE.format(**{**base, **kw})


def test_count_units_same_day_order(tmp_path: Path) -> None:
    rules = with_rules(tmp_path, rule(max=4, units="true", window="{type: same_day}"))
    lines = make_lines([{"hcpcs": "J3301", "units": 2.0}, {"hcpcs": "J3301", "units": 2.0},
                        {"hcpcs": "J3301", "units": 1.0}])
    res = run(lines, rules=rules)
    assert flagged(res) == [2]                            # 2 + 2 + 1 > 4 at the third line


def test_calendar_year_and_effective_to_exclusive(tmp_path: Path) -> None:
    rules = with_rules(tmp_path, rule(end="2026-01-01"))
    lines = make_lines([{"hcpcs": "J3301", "service_date": "2025-01-02"},
                        {"hcpcs": "J3301", "service_date": "2025-12-31"},
                        {"hcpcs": "J3301", "service_date": "2026-01-01", "patient_id": "P1"}])
    res = run(lines, rules=rules)
    assert flagged(res) == [1]                            # 2026-01-01: new year, and the rule has ended
    assert "next allowed on or after 2026-01-01" in res.iloc[0]["detail"]


def test_per_side(tmp_path: Path) -> None:
    rules = with_rules(tmp_path, rule(per_side="true", window="{type: rolling_days, n: 30}"))
    lines = make_lines([{"hcpcs": "J3301", "service_date": "2025-03-01", "modifiers": "RT"},
                        {"hcpcs": "J3301", "service_date": "2025-03-05", "modifiers": "LT"},
                        {"hcpcs": "J3301", "service_date": "2025-03-10", "modifiers": "50"},
                        {"hcpcs": "J3301", "service_date": "2025-03-10", "modifiers": "RT", "patient_id": "P2"}])
    assert flagged(run(lines, rules=rules)) == [2]        # 50 = one of each side: both already used


def test_scope_rendering_npi(tmp_path: Path) -> None:
    rules = with_rules(tmp_path, rule(scope="beneficiary+rendering_npi"))
    lines = make_lines([{"hcpcs": "J3301", "service_date": "2025-03-01"},
                        {"hcpcs": "J3301", "service_date": "2025-04-01", "rendering_npi": "1999999992"},
                        {"hcpcs": "J3301", "service_date": "2025-05-01"}])
    assert flagged(run(lines, rules=rules)) == [2]


def test_lookback_start() -> None:
    rules = load_frequency_rules(RULES / "frequency.yaml")
    assert lookback_start(rules, dt.date(2025, 3, 10)) == dt.date(1900, 1, 1)  # lifetime rules
    tpi = [r for r in rules if r.id == "mac_trigger_point_sessions"]
    assert lookback_start(tpi, dt.date(2025, 3, 10)) <= dt.date(2024, 3, 11)


# --- malformed rules/frequency.yaml ----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "needles"), [
    (rule(window="{type: fortnightly}"), ["line 7", "rules[0].window.type", "window type must be one of",
                                          "rule 't'"]),
    (rule(window="{type: rolling_days}"), ["rules[0].window.n", "positive integer n"]),
    (rule(max=0), ["rules[0].max_count"]),
    (rule(scope="household"), ["rules[0].scope"]),
    (rule().replace("    source: test\n", ""), ["missing required key 'source'"]),
    (rule().replace('["J3301"]', '["J33"]'), ["rules[0].applies_to_codes[0]", "5-character"]),
    (rule().replace('["J3301"]', "[00100]"), ["quoted string"]),
    (rule() + rule(), ["duplicate rule id 't'", "rules[1].id"]),
    (rule().replace("payer: medicare", "payer: medicare\n    colour: red"), ["unknown key 'colour'", "line 4"]),
    (rule(end="2019-01-01"), ["effective.to"]),
    (rule() + "  - [\n", ["not valid YAML"]),
])
def test_malformed_frequency_yaml_names_file_key_and_line(tmp_path: Path, body: str, needles: list[str]) -> None:
    path = tmp_path / "rules" / "frequency.yaml"
    path.parent.mkdir()
    path.write_text("rules:\n" + body)
    with pytest.raises(RulesError) as err:
        load_frequency_rules(path)
    msg = str(err.value)
    assert msg.startswith("rules/frequency.yaml")
    for needle in needles:
        assert needle in msg
