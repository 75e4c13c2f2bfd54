"""NCCI PTP edits (billing-domain 4) and bundled codes (1.5, 9.3).

Edits used below are real practitioner PTP rows (v30.1, 2024Q2; ncci-ptp/SOURCES.md "Key rows"):
20553/20552 indicator 0 "More extensive procedure", 20553/96372 and 20553/99213 indicator 1,
20610/20553 indicator 1, 20553/J2001 indicator 1. Dates are set per test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from factory import make_context, make_history, make_lines, make_ptp

from scrubber.checks import bundling
from scrubber.checks.engine import run_checks
from scrubber.settings import Settings

PTP = make_ptp([
    {"column_1": "20553", "column_2": "20552", "modifier_indicator": "0", "rationale": "More extensive procedure"},
    {"column_1": "20553", "column_2": "96372", "modifier_indicator": "1"},
    {"column_1": "20553", "column_2": "99213", "modifier_indicator": "1",
     "rationale": "CPT Manual or CMS manual coding instruction"},
    {"column_1": "20610", "column_2": "20553", "modifier_indicator": "1",
     "rationale": "Misuse of Column Two code with Column One code"},
])


def flags(lines: pd.DataFrame, ptp: pd.DataFrame = PTP, **kw) -> pd.DataFrame:
    return bundling.check(make_context(lines, ptp=ptp, **kw))


def hits(res: pd.DataFrame) -> list[tuple[int, str, object]]:
    """(line, rule, related line) triples, sorted."""
    return sorted((int(u), r, None if pd.isna(x) else int(x))
                  for u, r, x in zip(res["line_uid"], res["rule_id"], res["related_line_uid"], strict=True))


def test_indicator_0_denies_column_2_whatever_the_modifiers():
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552"}]))
    assert hits(res) == [(1, "PTP-IND0", 0)]
    assert res["detail"].iloc[0] == "modifier indicator 0; edit rationale: More extensive procedure"
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552", "modifiers": "59"}]))
    assert hits(res) == [(1, "PTP-IND0", 0)]


def test_indicator_1_without_modifier_denies_column_2_only():
    res = flags(make_lines([{"hcpcs": "96372"}, {"hcpcs": "20553"}]))
    assert hits(res) == [(0, "PTP-IND1", 1)]


def test_indicator_1_with_59_on_column_2_is_bypassed_info():
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "96372", "modifiers": "59"}]))
    assert hits(res) == [(1, "PTP-BYPASS", 0)]
    assert "bypassed by modifier(s) 59 on this line" in res["detail"].iloc[0]


def test_25_on_the_em_column_2_bypasses():
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "99213", "modifiers": "25"}]))
    assert hits(res) == [(1, "PTP-BYPASS", 0)]


@pytest.mark.parametrize(("dos", "rule"), [("2019-07-01", "PTP-BYPASS"), ("2019-09-30", "PTP-BYPASS"),
                                          ("2019-06-28", "PTP-IND1")])
def test_xs_on_column_1_counts_only_from_2019_07_01(dos: str, rule: str):
    release = "PTP-2019Q3" if dos >= "2019-07-01" else "PTP-2019Q2"
    ptp = make_ptp([{"column_1": "20553", "column_2": "96372", "modifier_indicator": "1", "release": release,
                     "effective_date": "2010-01-01"}])
    lines = make_lines([{"hcpcs": "20553", "modifiers": "XS", "service_date": dos, "ptp_release": release},
                        {"hcpcs": "96372", "service_date": dos, "ptp_release": release}])
    res = flags(lines, ptp)
    assert hits(res) == [(1, rule, 0)]
    if rule == "PTP-IND1":
        assert "counts only from 2019-07-01" in res["detail"].iloc[0]
    else:
        assert "bypassed by XS on the 20553 line" in res["detail"].iloc[0]


def test_anatomic_bypass_and_its_warning():
    # RT on the column 2 line only: bypassed, with a warning that some MACs want both lines marked
    res = flags(make_lines([{"hcpcs": "20610"}, {"hcpcs": "20553", "modifiers": "RT"}]))
    assert hits(res) == [(1, "PTP-BYPASS", 0)]
    assert "some MACs also require a different anatomic modifier on the 20610 line" in res["detail"].iloc[0]
    # LT on one line and RT on the other: bypassed, no warning
    res = flags(make_lines([{"hcpcs": "20610", "modifiers": "LT"}, {"hcpcs": "20553", "modifiers": "RT"}]))
    assert hits(res) == [(1, "PTP-BYPASS", 0)]
    assert "some MACs" not in res["detail"].iloc[0]


def test_repeat_modifiers_do_not_bypass():
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "96372", "modifiers": "76"}]))
    assert hits(res) == [(1, "PTP-IND1", 0)]


@pytest.mark.parametrize(("deletion", "inclusive", "flagged"), [
    ("2025-03-13", True, False),    # deleted before the DOS
    ("2025-03-14", True, True),     # deleted on the DOS: still in force (inclusive, the data pattern)
    ("2025-03-14", False, False),   # ... unless configured exclusive
    ("2025-03-31", False, True),
])
def test_deletion_date(deletion: str, inclusive: bool, flagged: bool):
    ptp = make_ptp([{"column_1": "20553", "column_2": "96372", "deletion_date": deletion}])
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "96372"}]), ptp,
                settings=Settings(ptp_deletion_inclusive=inclusive))
    assert hits(res) == ([(1, "PTP-IND1", 0)] if flagged else [])


def test_effective_after_dos_indicator_9_and_other_release_do_not_apply():
    lines = make_lines([{"hcpcs": "20553"}, {"hcpcs": "96372"}])
    assert flags(lines, make_ptp([{"column_1": "20553", "column_2": "96372", "effective_date": "2025-04-01"}])).empty
    assert flags(lines, make_ptp([{"column_1": "20553", "column_2": "96372", "modifier_indicator": "9",
                                   "effective_date": "2025-01-01", "deletion_date": "2025-01-01"}])).empty
    assert flags(lines, make_ptp([{"column_1": "20553", "column_2": "96372", "release": "PTP-2024Q2"}])).empty


def test_indicator_0_row_wins_over_an_indicator_1_row_of_the_same_pair():
    ptp = make_ptp([{"column_1": "20553", "column_2": "96372", "modifier_indicator": "1"},
                    {"column_1": "20553", "column_2": "96372", "modifier_indicator": "0",
                     "effective_date": "2025-01-01"}])
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "96372", "modifiers": "59"}]), ptp)
    assert hits(res) == [(1, "PTP-IND0", 0)]


def test_different_npis_patients_or_days_are_not_paired():
    assert flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552", "rendering_npi": "1999999992"}])).empty
    assert flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552", "patient_id": "P2"}])).empty
    assert flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552", "service_date": "2025-03-15"}])).empty


def test_provider_key_billing_npi_pairs_across_rendering_npis():
    lines = make_lines([{"hcpcs": "20553", "billing_npi": "1111111112"},
                        {"hcpcs": "20552", "rendering_npi": "1999999992", "billing_npi": "1111111112"}])
    assert flags(lines).empty
    assert hits(flags(lines, settings=Settings(provider_key="billing_npi"))) == [(1, "PTP-IND0", 0)]


def test_history_line_same_day_flags_the_current_column_2_line():
    hist = make_history([{"hcpcs": "20553", "claim_id": "SENT1"}], run_id="20250313-x", start_uid=7)
    res = flags(make_lines([{"hcpcs": "96372", "claim_id": "NEW"}]), history=hist)
    assert hits(res) == [(0, "PTP-IND1", 7)]
    assert res["related_source"].tolist() == ["history"]
    assert res["related_run_id"].tolist() == ["20250313-x"]
    assert "the 20553 line was sent in an earlier batch" in res["detail"].iloc[0]
    # the column 2 code already sent earlier: the history line is never flagged, the batch column 1 line is fine
    hist2 = make_history([{"hcpcs": "96372"}])
    assert flags(make_lines([{"hcpcs": "20553"}]), history=hist2).empty


def test_one_flag_per_line_and_rule_prefers_a_batch_partner():
    hist = make_history([{"hcpcs": "20553", "claim_id": "SENT1"}], start_uid=0)
    lines = make_lines([{"hcpcs": "96372", "claim_id": "N"}, {"hcpcs": "20553", "claim_id": "N"},
                        {"hcpcs": "20553", "claim_id": "M"}])
    res = flags(lines, history=hist)
    ind1 = res[res["line_uid"] == 0]
    assert ind1["rule_id"].tolist() == ["PTP-IND1"]
    assert ind1["related_line_uid"].tolist() == [1] and ind1["related_source"].tolist() == ["batch"]


def test_bundled_status_b_and_p():
    res = flags(make_lines([{"hcpcs": "99070"}, {"hcpcs": "A4550"}, {"hcpcs": "A4565", "status_code": "P"}]),
                make_ptp([]))
    assert hits(res) == [(0, "BUNDLED-STATUS", None), (1, "BUNDLED-STATUS", None), (2, "BUNDLED-STATUS", None)]
    assert res["detail"].iloc[0].startswith("B (bundled")


def test_lidocaine_with_trigger_point_injection_is_bundled_supply():
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "J2003", "units": 20}, {"hcpcs": "J3301", "units": 4}]),
                make_ptp([]))
    assert hits(res) == [(1, "BUNDLED-SUPPLY", 0)]          # the steroid stays billable
    assert res["detail"].iloc[0] == "local anaesthetic with injection (billing-domain 9.3)"
    # another day or another provider: nothing
    assert flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "J2003", "service_date": "2025-03-15"}]),
                 make_ptp([])).empty


def test_supply_with_procedure_sent_earlier_that_day():
    hist = make_history([{"hcpcs": "20610", "claim_id": "SENT"}], start_uid=3)
    res = flags(make_lines([{"hcpcs": "J2002", "units": 10}]), make_ptp([]), history=hist)
    assert hits(res) == [(0, "BUNDLED-SUPPLY", 3)]
    assert res["related_source"].tolist() == ["history"]


def test_supply_already_denied_by_a_ptp_edit_is_not_flagged_twice():
    ptp = make_ptp([{"column_1": "20553", "column_2": "J2001", "modifier_indicator": "1",
                     "rationale": "Misuse of Column Two code with Column One code"}])
    res = flags(make_lines([{"hcpcs": "20553"}, {"hcpcs": "J2001"}]), ptp)
    assert hits(res) == [(1, "PTP-IND1", 0)]


def test_status_t_with_another_payable_service():
    res = flags(make_lines([{"hcpcs": "96523"}, {"hcpcs": "99213"}]), make_ptp([]))
    assert hits(res) == [(0, "STATUS-T-BUNDLED", 1)]
    assert res["detail"].iloc[0] == "the other service has status A"
    # alone, or only with another status T service: paid
    assert flags(make_lines([{"hcpcs": "96523"}]), make_ptp([])).empty
    assert flags(make_lines([{"hcpcs": "96523"}, {"hcpcs": "36591"}]), make_ptp([])).empty


def test_add_on_code_needs_a_primary_service_by_the_same_provider_that_day():
    """ADDON-NO-PRIMARY (billing-domain 4.4): 11045, 99292 and G2211 are add-ons (global ZZZ, RVU25D)."""
    none = make_ptp([])
    # with its primary, or with any other service of the day (the acceptable-primary file is not loaded)
    assert flags(make_lines([{"hcpcs": "11042"}, {"hcpcs": "11045"}]), none).empty
    assert flags(make_lines([{"hcpcs": "99291"}, {"hcpcs": "99292", "units": 2}]), none).empty
    assert flags(make_lines([{"hcpcs": "99213"}, {"hcpcs": "G2211"}]), none).empty
    # alone; only add-ons that day; the primary by another provider or on another day
    res = flags(make_lines([{"hcpcs": "99292"}]), none)
    assert hits(res) == [(0, "ADDON-NO-PRIMARY", None)]
    assert res["detail"].tolist() == ["no other service is billed that day"]
    res = flags(make_lines([{"hcpcs": "11045"}, {"hcpcs": "G2211"}]), none)
    assert hits(res) == [(0, "ADDON-NO-PRIMARY", None), (1, "ADDON-NO-PRIMARY", None)]
    assert set(res["detail"]) == {"only add-on codes are billed that day"}
    other_npi = make_lines([{"hcpcs": "11042", "rendering_npi": "1245319599"}, {"hcpcs": "11045"}])
    assert hits(flags(other_npi, none)) == [(1, "ADDON-NO-PRIMARY", None)]
    other_day = make_lines([{"hcpcs": "99291", "service_date": "2025-03-13"}, {"hcpcs": "99292"}])
    assert hits(flags(other_day, none)) == [(1, "ADDON-NO-PRIMARY", None)]


def test_add_on_whose_primary_was_sent_earlier_that_day_is_paid():
    none = make_ptp([])
    hist = make_history([{"hcpcs": "11042", "claim_id": "SENT"}], start_uid=5)
    assert flags(make_lines([{"hcpcs": "11045"}]), none, history=hist).empty
    # an add-on sent earlier is no primary
    hist = make_history([{"hcpcs": "11045", "claim_id": "SENT"}], start_uid=5)
    res = flags(make_lines([{"hcpcs": "11045", "units": 2}]), none, history=hist)
    assert hits(res) == [(0, "ADDON-NO-PRIMARY", None)]
    assert res["detail"].tolist() == ["only add-on codes are billed that day"]


def test_messages_through_the_engine():
    lines = make_lines([{"hcpcs": "20553", "claim_id": "CLM1"}, {"hcpcs": "20552", "claim_id": "CLM1"}])
    out = run_checks(make_context(lines, ptp=PTP), run_id="R", families=["bundling"])
    row = out.iloc[0]
    assert (row["rule_id"], row["severity"], row["related_claim_id"], row["related_line_number"]) == (
        "PTP-IND0", "deny", "CLM1", 1)
    assert row["message"].startswith("20552 is the column 2 code of an NCCI procedure-to-procedure edit with 20553")
    assert row["reference_release"] == "PTP-2025Q4"


REAL_PTP = Path("ncci-ptp") / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"


@pytest.mark.slow
def test_real_ptp_table_trigger_point_visit(shared_ref: Path):
    """The full v30.1 practitioner table (2.5M edits), read for the codes of one claim."""
    path = shared_ref / REAL_PTP
    if not path.exists():
        pytest.skip(f"{REAL_PTP} missing from ../shared/reference-data")
    codes = ["20553", "20552", "96372", "99213", "J2001", "J3301"]
    raw = pd.read_parquet(path, filters=[("column_1", "in", codes), ("column_2", "in", codes)])
    # the file dropped CMS's effective dates (ncci-ptp/SOURCES.md): take every edit as effective since 1996
    deletion = raw["deletion_date"].where(raw["deletion_date"] != "9999-12-31")
    ptp = make_ptp([{"column_1": r.column_1, "column_2": r.column_2, "deletion_date": d,
                     "modifier_indicator": str(r.modifier_indicator), "rationale": r.rationale,
                     "release": "PTP-2024Q2"} for r, d in zip(raw.itertuples(), deletion, strict=True)])
    lines = make_lines([{"hcpcs": h, "modifiers": m, "service_date": "2024-05-02", "ptp_release": "PTP-2024Q2"}
                        for h, m in (("20553", ""), ("20552", ""), ("96372", ""), ("99213", "25"), ("J2001", ""),
                                     ("J3301", ""))])
    res = flags(lines, ptp)
    got = {(int(u), r) for u, r in zip(res["line_uid"], res["rule_id"], strict=True)}
    assert got == {(1, "PTP-IND0"), (2, "PTP-IND1"), (3, "PTP-BYPASS"), (4, "PTP-IND1")}
    assert res.loc[res["line_uid"] == 1, "related_line_uid"].tolist() == [0]
