"""Expected allowed amounts against CMS arithmetic on the real RVU25D / RVU26C files.

Expected figures are written out from billing-domain.md (sections 1.6, 2.3, 3) or recomputed here with
Decimal straight from the CSV text, independently of scrubber.money / scrubber.pricing.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scrubber.pricing import amount_at_risk, annotate_and_price, load_conversion_factors, price_code
from scrubber.reference.catalog import ReferenceSet
from scrubber.settings import Settings
from scrubber.store import LocalStore

CF25 = Decimal("32.3465")
DOS25 = "2025-11-03"


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def ref25(rvu25d_store: LocalStore) -> ReferenceSet:
    return ReferenceSet(rvu25d_store)


@pytest.fixture(scope="module")
def store26(tmp_path_factory: pytest.TempPathFactory, shared_ref: Path) -> LocalStore:
    """RVU26C (July 2026, non-QP) with the 2026 Q3 NCCI PTP and MUE excerpts."""
    from scrubber.reference.loader import load_paths

    rvu = shared_ref / "cms-rvu" / "RVU26C_2026_Jul"
    ptp = shared_ref / "ncci-ptp" / "v322r0_excerpt_reuven-ops_Biller"
    mue = shared_ref / "ncci-mue" / "2026Q3_excerpt_reuven-ops_Biller"
    if not (rvu.is_dir() and ptp.is_dir() and mue.is_dir()):
        pytest.skip("RVU26C / 2026 Q3 NCCI excerpts missing from ../shared/reference-data")
    store = LocalStore(tmp_path_factory.mktemp("rvu26"))
    load_paths(store, [rvu, ptp, mue])
    return store


def make_lines(rows: list[dict]) -> pd.DataFrame:
    """Canonical claim lines; each row may override the defaults (distinct patients by default)."""
    out = []
    for i, r in enumerate(rows):
        base = {"line_uid": i, "claim_id": f"C{i}", "line_number": 1, "patient_id": f"P{i}",
                "rendering_npi": "1234567893", "billing_npi": "1234567893", "payer": "medicare",
                "service_date": DOS25, "hcpcs": "20553", "modifiers": "", "units": 1.0,
                "place_of_service": "11", "locality": None, "service_zip": None, "charge_amount": np.nan}
        base.update(r)
        out.append(base)
    frame = pd.DataFrame(out)
    frame["service_date"] = pd.to_datetime(frame["service_date"])
    for c in ("claim_id", "patient_id", "rendering_npi", "billing_npi", "payer", "hcpcs", "modifiers",
              "place_of_service", "locality", "service_zip"):
        frame[c] = frame[c].astype("str")
    return frame


def price(ref: ReferenceSet, rows: list[dict], settings: Settings | None = None) -> pd.DataFrame:
    return annotate_and_price(make_lines(rows), ref, None, settings or Settings())


# ------------------------------------------------------------------------------------------------
# Every code, both settings, nationally


def _oracle_rows(csv_path: Path) -> list[dict]:
    """Data rows of the PPRRVU CSV read with the csv module (header row found by its first cell)."""
    rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="ascii"))))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "HCPCS") + 1
    out = []
    for r in rows[start:]:
        if len(r) < 25 or len(r[0]) != 5:
            continue
        work, pe_nf, pe_f, mp, cf = (Decimal(r[i]) for i in (5, 6, 8, 10, 24))
        out.append({"hcpcs": r[0], "mod": r[1], "status": r[3], "cf": cf,
                    "nf": cents((work + pe_nf + mp) * cf), "f": cents((work + pe_f + mp) * cf)})
    return out


def test_every_code_and_setting_nationally_equals_cms_arithmetic(ref25: ReferenceSet, rvu25d_dir: Path) -> None:
    oracle = _oracle_rows(rvu25d_dir / "PPRRVU2025_Oct.csv")
    assert len(oracle) == 19090
    rows = []
    for o in oracle:
        for pos in ("11", "21"):
            rows.append({"hcpcs": o["hcpcs"], "modifiers": o["mod"], "place_of_service": pos})
    priced = price(ref25, rows)
    assert len(priced) == 2 * len(oracle)
    expected, allowed_nf, allowed_f, kinds = [], [], [], []
    for o in oracle:
        for setting in ("nf", "f"):
            if o["status"] in ("A", "T"):
                expected.append(float(o[setting]))
                kinds.append("priced")
            elif o["status"] in ("B", "P", "I", "N", "X", "M"):
                expected.append(0.0)
                kinds.append("not paid")
            else:
                expected.append(math.nan)
                kinds.append("unknown")
            fee = o["status"] in ("A", "T", "R")
            allowed_nf.append(float(o["nf"]) if fee else math.nan)
            allowed_f.append(float(o["f"]) if fee else math.nan)
    assert o["cf"] == CF25
    got = priced["expected_allowed"].to_numpy()
    exp = np.array(expected)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
    mismatch = np.flatnonzero(~np.isnan(exp) & (got != exp))
    assert len(mismatch) == 0, priced.iloc[mismatch[:5]][["hcpcs", "modifiers", "place_of_service",
                                                           "expected_allowed"]]
    # exact integer cents agree with the dollars
    cents_col = priced["expected_allowed_cents"]
    assert cents_col.dtype == "Int64"
    known = ~np.isnan(exp)
    assert (cents_col[known].astype("int64").to_numpy() == np.rint(exp[known] * 100).astype(np.int64)).all()
    np.testing.assert_array_equal(priced["allowed_nonfacility"].to_numpy(), np.array(allowed_nf))
    np.testing.assert_array_equal(priced["allowed_facility"].to_numpy(), np.array(allowed_f))
    assert (priced["locality_used"] == "national").all()
    assert (priced["rvu_release"] == "RVU25D").all()
    assert kinds.count("priced") > 18000 and kinds.count("unknown") > 5000
    # statuses Medicare does not price say why
    notes = priced.loc[np.array(kinds) == "unknown", "pricing_note"].astype(str)
    assert notes.str.startswith("status ").all()


# ------------------------------------------------------------------------------------------------
# Localities


def test_san_francisco_locality_for_20553(ref25: ReferenceSet) -> None:
    # GPCI2025.csv: 01112,CA,05,SAN FRANCISCO-OAKLAND-BERKELEY (...),1.088,1.419,0.445
    gw, gpe, gmp = Decimal("1.088"), Decimal("1.419"), Decimal("0.445")
    nf = cents((Decimal("0.75") * gw + Decimal("0.98") * gpe + Decimal("0.08") * gmp) * CF25)
    f = cents((Decimal("0.75") * gw + Decimal("0.41") * gpe + Decimal("0.08") * gmp) * CF25)
    assert (nf, f) == (Decimal("72.53"), Decimal("46.37"))
    out = price(ref25, [{"locality": "01112-05", "place_of_service": "11"},
                        {"locality": "01112-05", "place_of_service": "22"}])
    assert out["expected_allowed"].tolist() == [72.53, 46.37]
    assert out["locality_used"].tolist() == ["01112-05", "01112-05"]
    assert out["locality_source"].tolist() == ["line", "line"]
    assert out["setting"].tolist() == ["nonfacility", "facility"]
    assert out[["gpci_work", "gpci_pe", "gpci_mp"]].iloc[0].tolist() == [1.088, 1.419, 0.445]


def test_zip_picks_the_locality_through_zip5(ref25: ReferenceSet) -> None:
    # ZIP5_OCT2025.txt: "NY100011320201 ..." -> carrier 13202, locality 01 (MANHATTAN 1.065 / 1.166 / 1.656)
    out = price(ref25, [{"service_zip": "10001"}, {"service_zip": "10001", "place_of_service": "21"}])
    nf = cents((Decimal("0.75") * Decimal("1.065") + Decimal("0.98") * Decimal("1.166")
                + Decimal("0.08") * Decimal("1.656")) * CF25)
    f = cents((Decimal("0.75") * Decimal("1.065") + Decimal("0.41") * Decimal("1.166")
               + Decimal("0.08") * Decimal("1.656")) * CF25)
    assert out["locality_used"].tolist() == ["13202-01", "13202-01"]
    assert out["locality_source"].tolist() == ["zip", "zip"]
    assert out["expected_allowed"].tolist() == [float(nf), float(f)] == [67.08, 45.59]


def test_unknown_locality_and_zip_fall_back_with_a_note(ref25: ReferenceSet) -> None:
    out = price(ref25, [{"locality": "99999-99"}, {"locality": "99999-99", "service_zip": "10001"},
                        {"service_zip": "00000"}])
    assert out["locality_used"].tolist() == ["national", "13202-01", "national"]
    assert out["expected_allowed"].tolist()[0] == 58.55
    assert "locality 99999-99 not in the GPCI file" in out["pricing_note"].iloc[0]
    assert "by the service ZIP" in out["pricing_note"].iloc[1]
    assert "ZIP not in the ZIP5 crosswalk" in out["pricing_note"].iloc[2]


def test_opps_cap_takes_the_file_price_for_the_locality(ref25: ReferenceSet) -> None:
    # OPPSCAP_Oct.csv: 70496 global in 01112/05 -> 343.62 (MPFS formula 364.27); nationally no cap
    out = price(ref25, [{"hcpcs": "70496", "locality": "01112-05"}, {"hcpcs": "70496"}])
    assert out["expected_allowed"].iloc[0] == 343.62
    assert bool(out["opps_capped"].iloc[0]) and not bool(out["opps_capped"].iloc[1])
    assert out["expected_allowed"].iloc[1] == float(cents(Decimal("8.42") * CF25))
    assert "OPPS imaging cap" in out["adjustments"].iloc[0]


# ------------------------------------------------------------------------------------------------
# Payment modifiers (billing-domain 3), real codes, figures written out


@pytest.mark.parametrize(("hcpcs", "modifiers", "pos", "expected", "adjustment"), [
    ("20610", "50", "11", 95.10, "bilateral 150%"),              # 3.2: $63.40 x 150%
    ("27447", "80", "21", 201.22, "assistant at surgery 16%"),    # 3.3: $1,257.63 x 16%
    ("27447", "AS", "21", 171.04, "13.6%"),                       # 3.3: 85% of 16%
    ("27447", "62", "21", 786.02, "co-surgery 62.5%"),            # 3.4
    ("71046", "26", "11", 10.03, "26 row"),                       # 1.6: 0.31 RVU
    ("71046", "TC", "11", 22.64, "TC row"),                       # 1.6: 0.70 RVU
    ("45378", "53", "11", 164.00, "53 row"),                      # 5.07 x 32.3465 = 163.996755
    ("G0105", "53", "11", 163.67, "53 row"),                      # 5.06 x 32.3465 = 163.67329
    ("27447", "54", "21", 867.77, "split care 69%"),              # 1257.63192 x 0.69 = 867.766
    ("27447", "55", "21", 264.10, "split care 21%"),              # 1257.63192 x 0.21 = 264.1027
    ("27447", "56", "21", 125.76, "split care 10%"),              # 1257.63192 x 0.10 = 125.7632
    ("70030", "50", "11", 64.05, "200%"),                         # bilateral 3: 0.99 x CF x 2 = 64.04607
    ("11010", "50", "11", 429.56, "bilateral indicator 2: 100%"),  # 13.28 x CF = 429.56152
    ("20553", "52", "11", 58.55, ""),                             # 52: full amount, review note
])
def test_payment_modifier(ref25: ReferenceSet, hcpcs: str, modifiers: str, pos: str, expected: float,
                          adjustment: str) -> None:
    out = price(ref25, [{"hcpcs": hcpcs, "modifiers": modifiers, "place_of_service": pos}])
    assert out["expected_allowed"].iloc[0] == expected
    assert adjustment in out["adjustments"].iloc[0]
    if modifiers == "52":
        assert "52 reduced services" in out["pricing_note"].iloc[0]
    if modifiers in ("26", "TC", "53"):
        assert out["pricing_modifier"].iloc[0] == modifiers


def test_team_surgery_is_by_report(ref25: ReferenceSet) -> None:
    out = price(ref25, [{"hcpcs": "27447", "modifiers": "66", "place_of_service": "21"}])
    assert math.isnan(out["expected_allowed"].iloc[0])
    assert out["expected_allowed_cents"].isna().iloc[0]
    assert "66 team surgery" in out["pricing_note"].iloc[0]


def test_npp_is_paid_85_percent(ref25: ReferenceSet) -> None:
    settings = Settings(npp_npis=frozenset({"1111111112"}))
    out = price(ref25, [{"hcpcs": "99213", "rendering_npi": "1111111112"}, {"hcpcs": "99213"}], settings)
    # 2.75 x 32.3465 = 88.952875; x 0.85 = 75.60994375
    assert out["expected_allowed"].tolist() == [75.61, 88.95]
    assert "NPP 85%" in out["adjustments"].iloc[0]


def test_units_multiply_the_unrounded_amount(ref25: ReferenceSet) -> None:
    out = price(ref25, [{"hcpcs": "20553", "units": 2.0}])
    assert out["expected_allowed"].iloc[0] == float(cents(Decimal("1.81") * CF25 * 2)) == 117.09
    assert "x 2 units" in out["adjustments"].iloc[0]


# ------------------------------------------------------------------------------------------------
# Multiple procedures (billing-domain 3.1)


def same_day(rows: list[dict]) -> list[dict]:
    return [{"patient_id": "P1", "claim_id": "C1", "line_number": i + 1, **r} for i, r in enumerate(rows)]


def test_standard_mppr_pays_the_second_procedure_at_50_percent(ref25: ReferenceSet) -> None:
    out = price(ref25, same_day([{"hcpcs": "20553"}, {"hcpcs": "11102"}]))
    # 11102 $95.75 ranks first; 20553 at 50% of the unrounded 58.547165 = 29.2735825 -> $29.27
    assert out["expected_allowed"].tolist() == [29.27, 95.75]
    assert out["mppr_rank"].tolist() == [2, 1]
    assert out["adjustments"].iloc[0] == "MPPR 50% (rank 2)"
    assert out["unreduced_allowed"].tolist() == [58.55, 95.75]
    # another provider the same day is not ranked with them
    other = price(ref25, same_day([{"hcpcs": "20553", "rendering_npi": "1111111112"}, {"hcpcs": "11102"}]))
    assert other["expected_allowed"].tolist() == [58.55, 95.75]


def test_sixth_procedure_is_by_report(ref25: ReferenceSet) -> None:
    codes = ["27447", "11102", "20553", "20552", "20610", "11042"]
    out = price(ref25, same_day([{"hcpcs": c, "place_of_service": "21"} for c in codes]))
    ranks = out.set_index("hcpcs")["mppr_rank"]
    assert sorted(ranks.tolist()) == [1, 2, 3, 4, 5, 6]
    sixth = out[out["mppr_rank"] == 6]
    assert "by report" in sixth["pricing_note"].iloc[0]


def test_endoscopy_family_pays_minus_the_base(ref25: ReferenceSet) -> None:
    out = price(ref25, same_day([{"hcpcs": "45385", "place_of_service": "22"},
                                 {"hcpcs": "45380", "place_of_service": "22"}]))
    # 3.1: 242.92 + (192.79 - 177.26) = $258.45; the family ranks as one procedure
    assert out["expected_allowed"].tolist() == [242.92, 15.53]
    assert round(out["expected_allowed"].sum(), 2) == 258.45
    assert "minus base 45378" in out["adjustments"].iloc[1]
    with_base = price(ref25, same_day([{"hcpcs": "45385", "place_of_service": "22"},
                                       {"hcpcs": "45380", "place_of_service": "22"},
                                       {"hcpcs": "45378", "place_of_service": "22"}]))
    assert with_base["expected_allowed"].tolist() == [242.92, 15.53, 0.0]
    # the family against another surgery: the family is one procedure ranked by its total
    mixed = price(ref25, same_day([{"hcpcs": "45385", "place_of_service": "22"},
                                   {"hcpcs": "45380", "place_of_service": "22"},
                                   {"hcpcs": "27447", "place_of_service": "22"}]))
    # family total 258.45 < 27447 $1,257.63: both endoscopies at 50%
    # 45385: 242.922215 / 2 = 121.4611 -> 121.46; 45380: (192.78514 - 177.25882) / 2 = 7.76316 -> 7.76
    assert mixed["expected_allowed"].tolist() == [121.46, 7.76, 1257.63]


def test_imaging_mppr_reduces_tc_50_and_pc_5_percent(ref25: ReferenceSet) -> None:
    out = price(ref25, same_day([{"hcpcs": "70450"}, {"hcpcs": "70460"}]))
    # 70460 global 4.52 RVU ranks first (full). 70450: PC = its 26 row 1.20 RVU, TC = 3.25 - 1.20
    pc = Decimal("1.20") * CF25
    tc = Decimal("3.25") * CF25 - pc
    second = cents(pc * Decimal("0.95") + tc * Decimal("0.5"))
    assert out["expected_allowed"].tolist() == [float(second), float(cents(Decimal("4.52") * CF25))]
    assert second == Decimal("70.03")
    assert "imaging MPPR" in out["adjustments"].iloc[0]


def test_therapy_reduces_pe_after_the_first_unit(ref25: ReferenceSet) -> None:
    out = price(ref25, [{"hcpcs": "97110", "units": 3.0}])
    # 97110: W 0.45, PE 0.43, MP 0.01. Work+MP for 3 units in full, PE 1 unit full + 2 units at 50%
    amount = (Decimal("0.46") * 3 + Decimal("0.43") * (1 + Decimal("0.5") * 2)) * CF25
    assert out["expected_allowed"].iloc[0] == float(cents(amount)) == 72.46


def test_cardiovascular_mppr_reduces_tc_25_percent(ref25: ReferenceSet) -> None:
    out = price(ref25, same_day([{"hcpcs": "75600", "modifiers": "TC"}, {"hcpcs": "75605", "modifiers": "TC"}]))
    rows = out.set_index("hcpcs")
    # TC rows (from the file): 75600-TC and 75605-TC; the lower one is reduced to 75%
    first, second = rows["allowed_nonfacility"].max(), rows["allowed_nonfacility"].min()
    assert rows["expected_allowed"].max() == first
    low = rows.loc[rows["allowed_nonfacility"].idxmin()]
    assert abs(low["expected_allowed"] - second * 0.75) <= 0.01
    assert "cardiovascular MPPR" in low["adjustments"]


# ------------------------------------------------------------------------------------------------
# Statuses, missing codes and dates


def test_statuses_and_missing_codes(ref25: ReferenceSet) -> None:
    out = price(ref25, [{"hcpcs": "J1030"}, {"hcpcs": "99070"}, {"hcpcs": "J1000"}, {"hcpcs": "0001F"},
                        {"hcpcs": "20553", "service_date": "2024-06-03"}])
    ea = out["expected_allowed"].tolist()
    assert math.isnan(ea[0]) and "code not in the RVU release" in out["pricing_note"].iloc[0]
    assert out["status_code"].isna().iloc[0] and out["rvu_release"].iloc[0] == "RVU25D"
    assert ea[1] == 0.0 and out["pricing_note"].iloc[1].startswith("status B")
    assert math.isnan(ea[2]) and "ASP" in out["pricing_note"].iloc[2]
    assert ea[3] == 0.0 and out["pricing_note"].iloc[3].startswith("status I")
    assert math.isnan(ea[4]) and "no RVU release" in out["pricing_note"].iloc[4]
    assert out["rvu_release"].isna().iloc[4]
    # annotation columns behave like text for the checks
    assert out["status_code"].fillna("").tolist() == ["", "B", "E", "I", ""]
    assert out["global_days"].iloc[1] == "XXX"
    assert out["nonfacility_na"].isna().iloc[0] and out["nonfacility_na"].iloc[1] == False  # noqa: E712


# ------------------------------------------------------------------------------------------------
# 2026: QP conversion factor, PTP / MUE in the calculator


def test_qp_conversion_factor_2026(store26: LocalStore) -> None:
    ref = ReferenceSet(store26)
    qp = load_conversion_factors(Settings().rules_dir).qp_cf(2026)
    assert qp == Decimal("33.5675")
    settings = Settings(qp_npis=frozenset({"1234567893"}))
    out = annotate_and_price(make_lines([{"service_date": "2026-07-15"},
                                         {"service_date": "2026-07-15", "rendering_npi": "1111111112",
                                          "billing_npi": "1111111112"}]), ref, None, settings)
    # 20553 2026: NF total 1.79 (billing-domain 2.3): QP 60.085825 -> 60.09; non-QP 59.78761 -> 59.79
    assert out["expected_allowed"].tolist() == [60.09, 59.79]
    assert out["conversion_factor"].tolist() == [33.5675, 33.4009]
    assert "QP conversion factor" in out["adjustments"].iloc[0]


def test_conversion_factor_rules_are_validated(tmp_path: Path) -> None:
    from scrubber.errors import RulesError

    factors = load_conversion_factors(Settings().rules_dir)
    assert factors.single_cf_through == 2025
    assert factors.anesthesia[2025]["nonqp"] == Decimal("20.3178") and factors.anesthesia[2026]["qp"] is None
    (tmp_path / "conversion_factors.yaml").write_text("mpfs_qp:\n  2027:\n    value: 34.1\n")
    with pytest.raises(RulesError, match=r"conversion_factors.yaml: mpfs_qp.2027.value: write the factor as a quoted"):
        load_conversion_factors(tmp_path)


def test_price_code_calculator(ref25: ReferenceSet) -> None:
    r = price_code(ref25, "20553", dos=date(2025, 11, 3), pos="11", locality="01112-05")
    assert str(r["nonfacility_amount"]) == "72.53" and str(r["facility_amount"]) == "46.37"
    assert str(r["pos_amount"]) == "72.53" and r["setting"] == "nonfacility"
    assert r["release"] == "RVU25D" and r["status_code"] == "A" and r["global_days"] == "000"
    assert str(r["work_rvu"]) == "0.75" and str(r["pe_rvu_nonfacility"]) == "0.98"
    assert str(r["gpci_pe"]) == "1.419" and str(r["conversion_factor"]) == "32.3465"
    assert r["locality_name"].startswith("SAN FRANCISCO")
    assert r["ptp_edits"] == [] and r["ptp_release"] is None and r["mue_value"] is None
    national = price_code(ref25, "20553", dos=date(2025, 11, 3))
    assert (str(national["nonfacility_amount"]), str(national["facility_amount"])) == ("58.55", "40.11")
    assert national["pos_amount"] is None and national["locality"] == "national"
    pc = price_code(ref25, "71046", dos=date(2025, 11, 3), modifier="26", pos="21")
    assert str(pc["pos_amount"]) == "10.03" and pc["pricing_modifier"] == "26"
    bilat = price_code(ref25, "20610", dos=date(2025, 11, 3), modifier="50", pos="11")
    assert str(bilat["pos_amount"]) == "95.10" and str(bilat["nonfacility_amount"]) == "63.40"
    zipped = price_code(ref25, "20553", dos=date(2025, 11, 3), zip5="10001", pos="11")
    assert zipped["locality"] == "13202-01" and str(zipped["pos_amount"]) == "67.08"


def test_price_code_lists_mue_and_active_ptp_edits(store26: LocalStore, shared_ref: Path) -> None:
    ref = ReferenceSet(store26)
    dos = date(2026, 7, 15)
    r = price_code(ref, "0001U", dos=dos)
    assert r["status_code"] is None and "not in the RVU release" in r["status_meaning"]
    assert r["mue_value"] == 1 and r["mue_adjudication_indicator"] == 2 and r["mue_release"]
    # oracle: the excerpt's rows with column 1 = 0001U in force on the date (deletion date inclusive)
    text = (shared_ref / "ncci-ptp" / "v322r0_excerpt_reuven-ops_Biller" / "ccipra-v322r0-f1.excerpt.txt").read_text()
    active = []
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) >= 7 and f[0] == "0001U" and f[3].isdigit():
            eff = date(int(f[3][:4]), int(f[3][4:6]), int(f[3][6:]))
            dele = None if f[4] == "*" else date(int(f[4][:4]), int(f[4][4:6]), int(f[4][6:]))
            if eff <= dos and (dele is None or dos <= dele):
                active.append(f[1])
    assert active and sorted(e["column_2"] for e in r["ptp_edits"]) == sorted(active)
    assert {e["role"] for e in r["ptp_edits"]} == {"column_1"} and r["ptp_release"]
    col2 = price_code(ref, active[0], dos=dos)
    assert any(e["column_1"] == "0001U" and e["role"] == "column_2" for e in col2["ptp_edits"])
    t = price_code(ref, "36591", dos=dos, pos="11")
    assert t["status_code"] == "T" and str(t["pos_amount"]) == str(cents(Decimal("0.91") * Decimal("33.4009")))


# ------------------------------------------------------------------------------------------------
# Amount at risk


def test_amount_at_risk_by_basis(ref25: ReferenceSet) -> None:
    lines = price(ref25, [
        {"hcpcs": "20553"},                                                # 0: $58.55
        {"hcpcs": "20553", "place_of_service": "22", "units": 2.0},        # 1: facility, 2 units
        {"hcpcs": "11102", "patient_id": "PM"},                            # 2: rank 1
        {"hcpcs": "20553", "patient_id": "PM"},                            # 3: rank 2, $29.27
        {"hcpcs": "20553", "patient_id": "PC", "charge_amount": 30.0},     # 4
        {"hcpcs": "11102", "patient_id": "PC"},                            # 5
        {"hcpcs": "J1000"},                                                # 6: unknown amount
    ])
    flags = pd.DataFrame({
        "line_uid": [0, 0, 1, 3, 4, 6, 0, 99, 1],
        "severity": ["deny", "info", "review", "review", "review", "deny", "deny", "deny", "info"],
        "amount_basis": ["line", "line", "pos_difference", "mppr", "mppr", "line", "none", "line", "pos_difference"],
    })
    risk = amount_at_risk(flags, lines)
    # pos difference: (58.55 - 40.11) x 2 units = 36.88; mppr: 58.55 - 29.27 = 29.28;
    # charge already 30.00 -> min(30.00, 58.55) - 29.27 = 0.73; unknown amount and unknown line -> 0;
    # info flags are never money at risk, whatever their basis
    assert risk.tolist() == [58.55, 0.0, 36.88, 29.28, 0.73, 0.0, 0.0, 0.0, 0.0]
    assert risk.index.equals(flags.index)
