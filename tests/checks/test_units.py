"""MUE checks (billing-domain 5.2). MUE values are real 2024Q3 practitioner rows: 20553 1/MAI 2,
20610 2/MAI 3, 96372 4/MAI 3, G0514 1/MAI 1 (ncci-mue/2024Q3_northstar_qs)."""

from __future__ import annotations

import pandas as pd
from factory import make_context, make_history, make_lines, make_mue

from scrubber.checks import units
from scrubber.settings import Settings

MUE = make_mue([
    {"hcpcs": "20553", "mue_value": 1, "mai": 2, "rationale": "Code Descriptor / CPT Instruction"},
    {"hcpcs": "20610", "mue_value": 2, "mai": 3},
    {"hcpcs": "96372", "mue_value": 4, "mai": 3},
    {"hcpcs": "G0514", "mue_value": 1, "mai": 1, "rationale": "Clinical: CMS Workgroup"},
])


def flags(lines: pd.DataFrame, **kw) -> pd.DataFrame:
    return units.check(make_context(lines, mue=kw.pop("mue", MUE), **kw))


def by_rule(res: pd.DataFrame, rule: str) -> list[int]:
    return sorted(res.loc[res["rule_id"] == rule, "line_uid"].tolist())


def test_mai2_sums_across_two_claims_of_one_day():
    lines = make_lines([{"hcpcs": "20553", "claim_id": "A"}, {"hcpcs": "20553", "claim_id": "B"},
                        {"hcpcs": "20553", "claim_id": "C", "service_date": "2025-03-15"}])
    res = flags(lines)
    assert by_rule(res, "MUE-DOS") == [0, 1]          # both lines of the day; the next day is alone
    detail = res.loc[res["line_uid"] == 0, "detail"].iloc[0]
    assert "2 units that day" in detail and "MUE 1 per day" in detail and "MAI 2" in detail


def test_mai2_single_line_within_limit_is_clean():
    assert flags(make_lines([{"hcpcs": "20553"}])).empty


def test_mai3_different_providers_are_not_summed():
    lines = make_lines([{"hcpcs": "20610", "units": 2}, {"hcpcs": "20610", "units": 2, "rendering_npi": "1999999992"}])
    assert by_rule(flags(lines), "MUE-DOS") == []


def test_provider_key_billing_npi_sums_across_rendering_npis():
    lines = make_lines([{"hcpcs": "20610", "units": 2, "billing_npi": "1111111112"},
                        {"hcpcs": "20610", "units": 1, "rendering_npi": "1999999992", "billing_npi": "1111111112"}])
    assert by_rule(flags(lines), "MUE-DOS") == []
    res = flags(lines, settings=Settings(provider_key="billing_npi"))
    assert by_rule(res, "MUE-DOS") == [0, 1]


def test_mai1_line_over_is_flagged_per_line():
    lines = make_lines([{"hcpcs": "G0514", "units": 2}, {"hcpcs": "G0514", "units": 1},
                        {"hcpcs": "G0514", "units": 1}])
    res = flags(lines)
    # MAI 1 never sums lines: only the 2-unit line is over
    assert by_rule(res, "MUE-LINE") == [0]
    assert by_rule(res, "MUE-DOS") == []
    assert "MUE 1 per line" in res["detail"].iloc[0]


def test_history_counts_toward_the_day_but_is_never_flagged():
    hist = make_history([{"hcpcs": "20610", "units": 1, "claim_id": "OLD"}], start_uid=0)
    lines = make_lines([{"hcpcs": "20610", "units": 2, "claim_id": "NEW"}])
    res = flags(lines, history=hist)
    assert by_rule(res, "MUE-DOS") == [0]
    assert "3 units that day: 2 in this batch, 1 sent earlier" in res["detail"].iloc[0]
    # history on another day or another provider does not count
    other = make_history([{"hcpcs": "20610", "units": 1, "service_date": "2025-03-13"},
                          {"hcpcs": "20610", "units": 1, "rendering_npi": "1999999992"}])
    assert flags(lines, history=other).empty


def test_resent_line_is_not_counted_twice():
    hist = make_history([{"hcpcs": "20610", "units": 2, "claim_id": "C1", "line_number": 1}])
    lines = make_lines([{"hcpcs": "20610", "units": 2, "claim_id": "C1", "line_number": 1}])
    # the resend is a duplicate (DUP-HISTORY), not 4 units on the day
    assert by_rule(flags(lines, history=hist), "MUE-DOS") == []


def test_history_sent_in_two_runs_counts_once():
    hist = pd.concat([make_history([{"hcpcs": "20610", "units": 1, "claim_id": "H1"}], run_id="R1"),
                      make_history([{"hcpcs": "20610", "units": 1, "claim_id": "H1"}], run_id="R2")],
                     ignore_index=True)
    lines = make_lines([{"hcpcs": "20610", "units": 1, "claim_id": "NEW"}])
    assert flags(lines, history=hist).empty                     # 1 + 1 = 2, at the limit
    lines2 = make_lines([{"hcpcs": "20610", "units": 2, "claim_id": "NEW"}])
    assert by_rule(flags(lines2, history=hist), "MUE-DOS") == [0]


def test_mue_of_another_release_does_not_apply():
    other = make_mue([{"hcpcs": "20553", "mue_value": 1, "mai": 2, "release": "MUE-2024Q3"}])
    lines = make_lines([{"hcpcs": "20553", "units": 3}])
    res = flags(lines, mue=other)
    assert by_rule(res, "MUE-DOS") == []
    assert by_rule(res, "MUE-NONE") == [0]


def test_no_published_mue_only_when_units_above_one():
    lines = make_lines([{"hcpcs": "99070", "units": 3}, {"hcpcs": "99070", "units": 1, "claim_id": "X"}])
    res = flags(lines)
    assert by_rule(res, "MUE-NONE") == [0]
    assert res["detail"].iloc[0] == "not in MUE release MUE-2025Q4"


def test_no_mue_release_for_the_date():
    lines = make_lines([{"hcpcs": "20553", "units": 2, "mue_release": None}])
    res = flags(lines)
    assert res["rule_id"].tolist() == ["MUE-NONE"]
    assert "no loaded MUE release" in res["detail"].iloc[0]


def test_fractional_units_are_summed_exactly():
    lines = make_lines([{"hcpcs": "96372", "units": 2.5}, {"hcpcs": "96372", "units": 1.5, "claim_id": "B"}])
    assert flags(lines).empty                                   # 4.0 is not above 4
    lines = make_lines([{"hcpcs": "96372", "units": 2.5}, {"hcpcs": "96372", "units": 2, "claim_id": "B"}])
    res = flags(lines)
    assert by_rule(res, "MUE-DOS") == [0, 1]
    assert res["detail"].iloc[0].startswith("4.5 units that day")
