"""Duplicate lines (billing-domain 9.4): key = patient + DOS + HCPCS + modifier set + rendering NPI."""

from __future__ import annotations

import pandas as pd
from factory import make_context, make_history, make_lines

from scrubber.checks import duplicate
from scrubber.checks.engine import run_checks


def flags(lines: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    return duplicate.check(make_context(lines, history=history))


def test_second_and_later_copies_in_the_batch_point_at_the_first():
    lines = make_lines([{"hcpcs": "20610", "modifiers": "RT", "claim_id": "A"},
                        {"hcpcs": "99213", "claim_id": "A"},
                        {"hcpcs": "20610", "modifiers": "RT", "claim_id": "B"},
                        {"hcpcs": "20610", "modifiers": "RT", "claim_id": "C", "units": 2}])
    res = flags(lines)
    assert res["rule_id"].tolist() == ["DUP-BATCH", "DUP-BATCH"]
    assert res["line_uid"].tolist() == [2, 3]
    assert res["related_line_uid"].tolist() == [0, 0]
    assert res["detail"].tolist() == ["same service as claim A line 1, an exact copy",
                                      "same service as claim A line 1, different units"]


def test_modifier_order_does_not_matter():
    lines = make_lines([{"hcpcs": "20610", "modifiers": "RT,GA"}, {"hcpcs": "20610", "modifiers": "GA,RT"}])
    assert flags(lines)["line_uid"].tolist() == [1]


def test_repeat_and_distinct_modifiers_make_repeats_legitimate():
    lines = make_lines([
        {"hcpcs": "93010"}, {"hcpcs": "93010", "modifiers": "76"},                   # 76 distinguishes
        {"hcpcs": "85025"}, {"hcpcs": "85025", "modifiers": "91"}, {"hcpcs": "85025", "modifiers": "91"},
        {"hcpcs": "11042", "modifiers": "XS"}, {"hcpcs": "11042", "modifiers": "XS"},
    ])
    assert flags(lines).empty


def test_different_anatomic_modifiers_npis_or_days_are_not_duplicates():
    lines = make_lines([
        {"hcpcs": "20610", "modifiers": "RT"}, {"hcpcs": "20610", "modifiers": "LT"},
        {"hcpcs": "99213"}, {"hcpcs": "99213", "rendering_npi": "1999999992"},
        {"hcpcs": "17000"}, {"hcpcs": "17000", "service_date": "2025-03-15"},
        {"hcpcs": "11042"}, {"hcpcs": "11042", "patient_id": "P2"},
    ])
    assert flags(lines).empty


def test_same_key_in_history_is_dup_history():
    hist = make_history([{"hcpcs": "20553", "claim_id": "OLD7", "line_number": 2}], run_id="20250310-aaa",
                        start_uid=40)
    lines = make_lines([{"hcpcs": "20553", "claim_id": "NEW1"}, {"hcpcs": "99213", "claim_id": "NEW1"}])
    res = flags(lines, hist)
    assert res["rule_id"].tolist() == ["DUP-HISTORY"]
    assert res["line_uid"].tolist() == [0]
    assert res["related_source"].tolist() == ["history"]
    assert res["related_run_id"].tolist() == ["20250310-aaa"]
    assert res["related_line_uid"].tolist() == [40]
    assert res["detail"].iloc[0] == "sent in run 20250310-aaa as claim OLD7 line 2"


def test_same_line_sent_two_nights_running():
    night1 = make_lines([{"hcpcs": "20610", "modifiers": "LT", "claim_id": "CLM-9", "charge_amount": 120.0}])
    history = night1.assign(run_id="20250314-night1")          # what the history store keeps of night 1
    night2 = make_lines([{"hcpcs": "20610", "modifiers": "LT", "claim_id": "CLM-9", "charge_amount": 120.0}])
    ctx = make_context(night2, history=history)
    out = run_checks(ctx, run_id="20250315-night2", families=["duplicate"])
    assert out["rule_id"].tolist() == ["DUP-HISTORY"]
    row = out.iloc[0]
    assert (row["related_claim_id"], row["related_line_number"]) == ("CLM-9", 1)
    assert pd.isna(row["related_line_uid"])        # a history line is not a line of this run
    assert "sent in run 20250314-night1 as claim CLM-9 line 1" in row["message"]
    assert row["severity"] == "deny"


def test_history_earliest_run_is_the_reference_and_exempt_lines_stay_clean():
    hist = pd.concat([make_history([{"hcpcs": "99213", "claim_id": "H2"}], run_id="20250312-b", start_uid=5),
                      make_history([{"hcpcs": "99213", "claim_id": "H1"}], run_id="20250311-a", start_uid=5)],
                     ignore_index=True)
    lines = make_lines([{"hcpcs": "99213"}, {"hcpcs": "85025", "modifiers": "91"}])
    res = flags(lines, pd.concat([hist, make_history([{"hcpcs": "85025", "modifiers": "91"}])], ignore_index=True))
    assert res["line_uid"].tolist() == [0]
    assert res["related_run_id"].tolist() == ["20250311-a"]


def test_batch_and_history_duplicates_together():
    hist = make_history([{"hcpcs": "17000"}])
    lines = make_lines([{"hcpcs": "17000"}, {"hcpcs": "17000"}])
    res = flags(lines, hist)
    assert sorted(zip(res["line_uid"], res["rule_id"], strict=True)) == [
        (0, "DUP-HISTORY"), (1, "DUP-BATCH"), (1, "DUP-HISTORY")]
