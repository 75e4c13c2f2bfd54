"""Code status (billing-domain 1.5) and modifier validity against PPRRVU indicators (1.6, 3.2-3.5).

Indicators of 20553/20610/99213 are the RVU25D rows (factory.PPRRVU_ROWS); other codes get the
indicator each test states (the values billing-domain 1.6 and 3.3-3.5 quote, e.g. 71046 PC/TC 1,
93010 PC/TC 2, 27447 assistant 2).
"""

from __future__ import annotations

import pandas as pd
from factory import make_context, make_lines

from scrubber.checks import code_status


def flags(rows: list[dict]) -> pd.DataFrame:
    return code_status.check(make_context(make_lines(rows)))


def rules_of(res: pd.DataFrame) -> dict[int, list[str]]:
    return {uid: sorted(g["rule_id"]) for uid, g in res.groupby("line_uid")}


def test_active_and_drug_codes_are_clean():
    # A (active) and E (Part B drug, paid outside the fee schedule) are not flagged
    assert flags([{"hcpcs": "99213"}, {"hcpcs": "J3301"}, {"hcpcs": "20610", "modifiers": "RT"}]).empty


def test_code_not_in_release_is_unknown():
    res = flags([{"hcpcs": "0001X", "status_code": None}])
    assert res["rule_id"].tolist() == ["CODE-UNKNOWN"]
    assert res["detail"].tolist() == ["release RVU25D"]
    assert "severity" not in res or res["severity"].isna().all()      # the catalog severity (deny) applies


def test_no_release_for_the_date_is_review():
    res = flags([{"hcpcs": "99213", "status_code": None, "rvu_release": None}])
    assert res["rule_id"].tolist() == ["CODE-UNKNOWN"]
    assert res["severity"].tolist() == ["review"]
    assert "no loaded fee-schedule release" in res["detail"].iloc[0]


def test_not_payable_statuses_explain_the_status():
    res = flags([{"hcpcs": "99243"}, {"hcpcs": "99397"}, {"hcpcs": "36415"}])   # I, N, X
    assert res["rule_id"].tolist() == ["CODE-NOT-PAYABLE"] * 3
    detail = dict(zip(res["line_uid"], res["detail"], strict=True))
    assert detail[0].startswith("I (not valid for Medicare")
    assert detail[1].startswith("N (non-covered")
    assert detail[2].startswith("X (statutory exclusion")


def test_informational_statuses():
    res = flags([{"hcpcs": "0001F", "status_code": "C"}, {"hcpcs": "D0120", "status_code": "R"},
                 {"hcpcs": "G8553", "status_code": "M"}, {"hcpcs": "00100", "status_code": "J"}])
    assert rules_of(res) == {0: ["CODE-CARRIER-PRICED"], 1: ["CODE-RESTRICTED"], 2: ["CODE-MEASUREMENT"],
                             3: ["CODE-ANESTHESIA"]}


def test_bundled_statuses_are_left_to_the_bundling_family():
    assert flags([{"hcpcs": "99070"}, {"hcpcs": "96523"}]).empty     # B and T


def test_26_on_pctc_0_code_is_invalid():
    res = flags([{"hcpcs": "20553", "modifiers": "26"}])
    assert res["rule_id"].tolist() == ["MOD-PCTC-INVALID"]
    assert res["detail"].iloc[0].startswith("0 (physician service")


def test_26_and_tc_by_pctc_indicator():
    res = flags([
        {"hcpcs": "71046", "modifiers": "26", "pctc_indicator": "1"},      # ok
        {"hcpcs": "71046", "modifiers": "TC", "pctc_indicator": "1"},      # ok
        {"hcpcs": "88305", "modifiers": "26", "pctc_indicator": "6"},      # ok: lab interpretation
        {"hcpcs": "88305", "modifiers": "TC", "pctc_indicator": "6"},      # TC never on 6
        {"hcpcs": "93010", "modifiers": "26", "pctc_indicator": "2"},      # PC-only code
        {"hcpcs": "93000", "modifiers": "TC", "pctc_indicator": "4"},      # global-test-only code
    ])
    assert rules_of(res) == {3: ["MOD-PCTC-INVALID"], 4: ["MOD-PCTC-INVALID"], 5: ["MOD-PCTC-INVALID"]}


def test_50_on_bilateral_0_code_20553():
    res = flags([{"hcpcs": "20553", "modifiers": "50"}, {"hcpcs": "20610", "modifiers": "50"}])
    assert rules_of(res) == {0: ["MOD-BILAT-INVALID"]}      # 20610 has bilateral indicator 1
    assert res["detail"].iloc[0].startswith("0 (150% bilateral adjustment does not apply")


def test_assistant_at_surgery_on_asst_1_code():
    res = flags([{"hcpcs": "20553", "modifiers": "80"}, {"hcpcs": "20553", "modifiers": "AS", "claim_id": "B"},
                 {"hcpcs": "27447", "modifiers": "80", "asst_surg": "2"}])
    assert rules_of(res) == {0: ["MOD-ASST-NOT-PAID"], 1: ["MOD-ASST-NOT-PAID"]}


def test_co_and_team_surgery():
    res = flags([{"hcpcs": "20553", "modifiers": "62"},
                 {"hcpcs": "27447", "modifiers": "62", "co_surg": "1"},
                 {"hcpcs": "27447", "modifiers": "66", "team_surg": "0", "claim_id": "B"},
                 {"hcpcs": "27447", "modifiers": "62,66", "co_surg": "9", "team_surg": "9", "claim_id": "C"}])
    got = res.set_index("line_uid")
    assert sorted(got.index) == [0, 2, 3]
    assert got.loc[0, "detail"] == "the co-surgery indicator is 0 (62 not permitted)"
    assert got.loc[2, "detail"] == "the team-surgery indicator is 0 (66 not permitted)"
    assert " and " in got.loc[3, "detail"]


def test_modifier_rules_skip_unknown_codes():
    # an unknown code is reported once (CODE-UNKNOWN), not again for its modifiers
    res = flags([{"hcpcs": "0001X", "status_code": None, "pctc_indicator": None, "modifiers": "26,50"}])
    assert res["rule_id"].tolist() == ["CODE-UNKNOWN"]
