"""The check engine: flags in the report schema, messages, severities, related lines, helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factory import make_context, make_history, make_lines, make_mue, make_ptp, rulebook

from scrubber.checks import engine
from scrubber.checks.engine import (
    FAMILY_MODULES,
    LineModifiers,
    build_flags,
    code_ints,
    code_text,
    combination_ids,
    format_combinations,
    make_result,
    run_checks,
    same_day_keys,
)
from scrubber.rules import parse_template
from scrubber.schemas import FLAG_COLUMNS, RULE_FAMILIES
from scrubber.settings import Settings

MINE = ["units", "bundling", "code_status", "duplicate"]
PTP = make_ptp([{"column_1": "20553", "column_2": "20552", "modifier_indicator": "0"},
                {"column_1": "20553", "column_2": "96372", "modifier_indicator": "1"}])
MUE = make_mue([{"hcpcs": "20553", "mue_value": 1, "mai": 2}])


def batch() -> pd.DataFrame:
    return make_lines([
        {"hcpcs": "20553", "claim_id": "C1", "expected_allowed": 58.55, "source_row": 2},
        {"hcpcs": "20552", "claim_id": "C1", "expected_allowed": 50.78, "source_row": 3},
        {"hcpcs": "96372", "claim_id": "C1", "modifiers": "59", "expected_allowed": 13.91, "source_row": 4},
        {"hcpcs": "99070", "claim_id": "C2", "units": 3, "source_row": 5},
        {"hcpcs": "0001X", "claim_id": "C2", "status_code": None, "source_row": 6},
    ])


def test_flags_have_the_report_columns_and_line_fields():
    out = run_checks(make_context(batch(), ptp=PTP, mue=MUE), run_id="20250315-abc", families=MINE)
    assert list(out.columns) == FLAG_COLUMNS
    assert set(out["rule_family"]) <= set(RULE_FAMILIES)
    assert (out["run_id"] == "20250315-abc").all()
    ind0 = out[out["rule_id"] == "PTP-IND0"].iloc[0]
    assert (ind0["claim_id"], ind0["line_number"], ind0["hcpcs"], ind0["source_file"], ind0["source_row"]) == (
        "C1", 2, "20552", "claims.csv", 3)
    assert (ind0["related_claim_id"], ind0["related_line_number"], ind0["related_line_uid"]) == ("C1", 1, 0)
    assert ind0["severity"] == "deny" and ind0["rule_family"] == "bundling"
    assert ind0["expected_allowed"] == pytest.approx(50.78) and np.isnan(ind0["amount_at_risk"])
    assert ind0["carc"].startswith("CO-236") and ind0["fix"]
    assert ind0["amount_basis"] == "line"
    assert ind0["service_date"] == pd.Timestamp("2025-03-14")
    # every flag's line fields equal its line's
    lines = batch().set_index("line_uid")
    for col in ("claim_id", "hcpcs", "modifiers", "units", "place_of_service", "payer", "patient_id"):
        assert (out[col].to_numpy() == lines.loc[out["line_uid"], col].to_numpy()).all(), col
    # deterministic order: rule id, then intake order
    assert list(zip(out["rule_id"], out["line_uid"], strict=True)) == sorted(
        zip(out["rule_id"], out["line_uid"], strict=True))


def test_release_per_rule_and_defaults():
    out = run_checks(make_context(batch(), ptp=PTP, mue=MUE), run_id="r", families=MINE)
    release = dict(zip(out["rule_id"], out["reference_release"], strict=False))
    assert release["PTP-IND0"] == "PTP-2025Q4"
    assert release["CODE-UNKNOWN"] == "RVU25D"
    assert release["MUE-NONE"] == "MUE-2025Q4"
    basis = dict(zip(out["rule_id"], out["amount_basis"], strict=False))
    assert basis["MUE-NONE"] == "none" and basis["BUNDLED-STATUS"] == "line"


def test_messages_fill_every_placeholder():
    rb = rulebook()
    template = ("{hcpcs}|{modifiers}|{units}|{place_of_service}|{service_date}|{related_hcpcs}|{detail}")
    rb = dataclasses.replace(rb, templates={**rb.templates, "PTP-BYPASS": parse_template(template, Path("t"), 1)})
    lines = make_lines([{"hcpcs": "20553"}, {"hcpcs": "96372", "modifiers": "59,RT", "units": 2.5,
                                              "place_of_service": "22"}])
    out = run_checks(make_context(lines, ptp=PTP, rules=rb), run_id="r", families=["bundling"])
    msg = out.loc[out["rule_id"] == "PTP-BYPASS", "message"].iloc[0]
    parts = msg.split("|")
    assert parts[:6] == ["96372", "59,RT", "2.5", "22", "2025-03-14", "20553"]
    assert parts[6].startswith("modifier indicator 1, bypassed by modifier(s) 59,RT")
    # no modifiers reads "none"; whole units have no decimals
    ind0 = run_checks(make_context(make_lines([{"hcpcs": "20553"}, {"hcpcs": "20552"}]), ptp=PTP, rules=rb),
                      run_id="r", families=["bundling"])
    assert ind0["message"].iloc[0].startswith("20552 is the column 2 code")


def test_payer_overrides_change_or_drop_flags():
    lines = make_lines([{"hcpcs": "99070", "units": 2, "payer": "ACME_Advantage"},
                        {"hcpcs": "20553", "payer": "acme_advantage"},
                        {"hcpcs": "96372", "modifiers": "59", "payer": "acme_advantage"},
                        {"hcpcs": "99070", "units": 2, "patient_id": "P2"}])
    out = run_checks(make_context(lines, ptp=PTP, mue=MUE), run_id="r", families=["units", "bundling"])
    got = set(zip(out["line_uid"], out["rule_id"], out["severity"], strict=True))
    assert (0, "MUE-NONE", "info") not in got              # off for acme_advantage (case-insensitive)
    assert (3, "MUE-NONE", "info") in got                  # medicare keeps it
    assert (2, "PTP-BYPASS", "review") in got              # info -> review for acme_advantage


def test_per_hit_severity_from_a_check():
    lines = make_lines([{"hcpcs": "99213", "status_code": None, "rvu_release": None}])
    out = run_checks(make_context(lines), run_id="r", families=["code_status"])
    assert out["rule_id"].tolist() == ["CODE-UNKNOWN"]
    assert out["severity"].tolist() == ["review"]          # the catalog says deny; the check said review
    assert out["reference_release"].isna().all()           # no release covered the date


def test_related_history_line_resolved_by_run_and_uid():
    # two history lines share uid 0 (uids restart every run): the run id disambiguates
    hist = pd.concat([make_history([{"hcpcs": "99213", "claim_id": "OTHER"}], run_id="20250301-a"),
                      make_history([{"hcpcs": "20553", "claim_id": "SENT"}], run_id="20250313-b")],
                     ignore_index=True)
    lines = make_lines([{"hcpcs": "96372"}])
    out = run_checks(make_context(lines, history=hist, ptp=PTP), run_id="r", families=["bundling"])
    row = out.iloc[0]
    assert (row["rule_id"], row["related_claim_id"], row["related_line_number"]) == ("PTP-IND1", "SENT", 1)
    assert pd.isna(row["related_line_uid"])
    assert "with 20553 billed" in row["message"]


def test_empty_batch_and_no_hits_give_typed_empty_frames():
    out = run_checks(make_context(make_lines([{"hcpcs": "99213"}])), run_id="r", families=MINE)
    assert out.empty and list(out.columns) == FLAG_COLUMNS
    empty = make_lines([{"hcpcs": "99213"}]).iloc[0:0]
    out = run_checks(make_context(empty), run_id="r", families=MINE)
    assert out.empty and list(out.columns) == FLAG_COLUMNS


def test_timings_and_family_selection():
    timings: dict = {}
    run_checks(make_context(batch(), ptp=PTP, mue=MUE), run_id="r", families=["units", "duplicate"], timings=timings)
    assert set(timings) == {"units", "duplicate", "flags"}
    assert all(v >= 0 for v in timings.values())
    with pytest.raises(ValueError, match="unknown check family: spelling"):
        run_checks(make_context(batch()), run_id="r", families=["spelling"])


def test_all_families_run_by_default():
    lines = make_lines([{"hcpcs": "20553"}, {"hcpcs": "99213"}, {"hcpcs": "20552"}])
    timings: dict = {}
    out = run_checks(make_context(lines, ptp=PTP, mue=MUE), run_id="r", timings=timings)
    assert set(FAMILY_MODULES) <= set(timings)
    assert list(out.columns) == FLAG_COLUMNS
    assert {"PTP-IND0", "EM-NO25"} <= set(out["rule_id"])   # bundling and modifier25 both ran


def test_a_failing_family_names_itself():
    lines = make_lines([{"hcpcs": "20553"}]).drop(columns=["hcpcs"])
    with pytest.raises(KeyError) as info:
        run_checks(make_context(lines, mue=MUE), run_id="r", families=["units"])
    assert any("check family 'units'" in note for note in info.value.__notes__)


def test_result_contract_is_enforced():
    ctx = make_context(make_lines([{"hcpcs": "20553"}]))
    with pytest.raises(ValueError, match="belong to another family"):
        engine._validated(make_result([0], "DUP-BATCH"), "units", ctx)
    with pytest.raises(ValueError, match="not in the rule catalog"):
        engine._validated(make_result([0], "NO-SUCH-RULE"), "units", ctx)
    with pytest.raises(ValueError, match="lacks column"):
        engine._validated(pd.DataFrame({"line_uid": [0]}), "units", ctx)
    with pytest.raises(ValueError, match="not in the batch"):
        build_flags(ctx, [make_result([99], "MUE-NONE")], run_id="r")
    with pytest.raises(ValueError, match="related_line_uid refers to a line not in the batch"):
        build_flags(ctx, [make_result([0], "DUP-BATCH", related_line_uid=[5])], run_id="r")


def test_make_result_broadcasts_and_types():
    res = make_result(np.array([3, 4]), "MUE-NONE", detail=["a", "b"], related_line_uid=np.array([-1, 2]),
                      severity="review")
    assert res["related_line_uid"].tolist()[1] == 2 and pd.isna(res["related_line_uid"].iloc[0])
    assert res["rule_id"].tolist() == ["MUE-NONE", "MUE-NONE"] and res["severity"].tolist() == ["review"] * 2
    with pytest.raises(ValueError, match="unknown optional result column"):
        make_result([1], "X", colour="red")


def test_code_ints_are_exact_and_reversible():
    values = pd.Series(["20553", "J2001", "0001A", "20553", None, "ABC", "TOOLONG99"], dtype="str")
    codes = code_ints(values)
    assert codes[0] == codes[3] and len(set(codes[[0, 1, 2, 5, 6]])) == 5 and codes[4] == -1
    assert [code_text(c) for c in codes[:3]] == ["20553", "J2001", "0001A"]
    # object columns and Arrow slices take the same values
    assert (code_ints(pd.Series(["20553", "J2001"], dtype=object)) == codes[:2]).all()
    big = pd.Series(["99213", "20553", "G0438"] * 5000, dtype="str").iloc[7:]
    assert (code_ints(big)[:3] == code_ints(pd.Series(["20553", "G0438", "99213"], dtype="str"))).all()


def test_format_combinations_formats_each_distinct_key_once():
    calls = []

    def fmt(a: int, b: str) -> str:
        calls.append((a, b))
        return f"{a}-{b}"

    out = format_combinations(fmt, np.array([1, 1, 2, 1]), np.array(["x", "x", "x", "y"], dtype=object))
    assert out.tolist() == ["1-x", "1-x", "2-x", "1-y"]
    assert len(calls) == 3
    ids, first = combination_ids(np.array([5, 5, 6]))
    assert ids.tolist() == [0, 0, 1] and first.tolist() == [0, 2]


def test_same_day_keys_group_batch_and_history():
    lines = make_lines([{"hcpcs": "20553"}, {"hcpcs": "99213"}, {"hcpcs": "99213", "patient_id": "P2"},
                        {"hcpcs": "99213", "billing_npi": "1111111112", "rendering_npi": "1999999992"}])
    hist = make_history([{"hcpcs": "20610"}, {"hcpcs": "20610", "service_date": "2025-01-02"},
                         {"hcpcs": "20610", "patient_id": "P2"}])
    ctx = make_context(lines, history=hist)
    g_b, g_h = same_day_keys(ctx)
    assert g_b[0] == g_b[1] != g_b[2] and g_b[3] not in (g_b[0], g_b[2])
    assert g_h.tolist() == [g_b[0], -1, g_b[2]]
    ctx2 = make_context(lines, history=hist, settings=Settings(provider_key="billing_npi"))
    g_b2, _ = same_day_keys(ctx2)
    assert g_b2[3] != g_b2[0]      # billing NPI 1111111112 differs from the others' (= rendering NPI)


def test_line_modifiers():
    mods = LineModifiers(pd.DataFrame({"modifiers": ["25", "", "59,RT", "RT,59", None, "xs rt"]}))
    assert mods.any_of({"59"}).tolist() == [False, False, True, True, False, False]
    assert mods.any_of({"XS"}).tolist() == [False] * 5 + [True]
    assert [mods.sets[c] for c in mods.codes] == [("25",), (), ("59", "RT"), ("RT", "59"), (), ("XS", "RT")]
    from_columns = LineModifiers(pd.DataFrame({"modifier_1": ["26", ""], "modifier_2": ["TC", ""]}))
    assert from_columns.any_of({"TC"}).tolist() == [True, False]


def test_history_of_unknown_patient_or_provider_never_joins_a_group():
    # codes are mixed into one integer key; a history value absent from the batch must not alias another key
    lines = make_lines([{"patient_id": "P1", "rendering_npi": "1000000001"},
                        {"patient_id": "P1", "rendering_npi": "1000000002"},
                        {"patient_id": "P2", "rendering_npi": "1000000001"}])
    hist = make_history([{"patient_id": "P2", "rendering_npi": "1999999999"},
                         {"patient_id": "P9", "rendering_npi": "1000000002"},
                         {"patient_id": "P2", "rendering_npi": "1000000001"}])
    g_b, g_h = same_day_keys(make_context(lines, history=hist))
    assert g_h[:2].tolist() == [-1, -1]
    assert g_h[2] == g_b[2]
