"""The claim generator: determinism, the input contract, and clean lines that really are clean.

The clean-line checks below are an independent, deliberately plain re-statement of the rules in the
rules brief (billing-domain 4-9): if the generator ever put a PTP pair, a missing 25, an MUE overrun,
a wrong POS, a duplicate or a post-op visit on a line it calls clean, these tests name the line.
Reference data: the in-repo demo sample (always present) and the real RVU25D / NCCI tables from
../shared (skipped when absent).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scrubber import generate as G

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIRS = [REPO / "data" / "reference" / "sample-rvu25d", REPO / "data" / "reference" / "sample-ncci"]
START, END = date(2025, 10, 1), date(2025, 12, 31)

FACILITY = {"19", "21", "22", "23", "24", "26", "31", "34", "41", "42", "51", "52", "53", "56", "61", "02"}
NCCI_ASSOCIATED = {"LT", "RT", "E1", "E2", "E3", "E4", "FA", "TA", "LC", "LD", "LM", "RC", "RI", "24", "25", "57",
                   "58", "78", "79", "27", "59", "91", "XE", "XS", "XP", "XU", *[f"F{i}" for i in range(1, 10)],
                   *[f"T{i}" for i in range(1, 10)]}
FREQUENCY_CODES = {"G0402", "G0438", "G0439", "G0101", "G0104", "G0105", "G0121", "20552", "20553"}


def _em_codes() -> set[str]:
    def expand(spec: str) -> list[str]:
        if "-" in spec:
            lo, hi = spec.split("-")
            return [str(c) for c in range(int(lo), int(hi) + 1)]
        return [spec]
    return {c for rng_ in ("99202-99205", "99211-99215", "99221-99223", "99231-99236", "99238-99239",
                           "99281-99285", "99291-99292") for c in expand(rng_)}


EM = _em_codes()


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_frames() -> dict[str, pd.DataFrame]:
    if not all(d.is_dir() for d in SAMPLE_DIRS):
        pytest.skip("the demo sample release (data/reference/sample-*) is not in this checkout")
    return G.reference_frames(SAMPLE_DIRS)


@pytest.fixture(scope="module")
def sample_gen(sample_frames):
    return G.generate_claims(1500, pprrvu=sample_frames["pprrvu"], ptp=sample_frames["ptp"],
                             mue=sample_frames["mue"], seed=11, locations=G.SAMPLE_LOCATIONS)


@pytest.fixture(scope="module")
def full_frames(tmp_path_factory, shared_ref: Path) -> dict[str, pd.DataFrame]:
    """Real RVU25D PPRRVU, and PTP (2024Q2 edits in the CMS TXT layout) / MUE (2024Q3) for practice codes."""
    from scrubber.devtools.cms_layouts import write_mue_csv, write_ptp_parts

    rvu = shared_ref / "cms-rvu" / "RVU25D_2025_Oct" / "PPRRVU2025_Oct.csv"
    ptp_src = shared_ref / "ncci-ptp" / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"
    mue_src = shared_ref / "ncci-mue" / "2024Q3_northstar_qs" / "mue_practitioner_2024q3.parquet"
    for p in (rvu, ptp_src, mue_src):
        if not p.is_file():
            pytest.skip(f"{p.name} missing from ../shared/reference-data")
    out = tmp_path_factory.mktemp("ncci")
    codes = G.practice_codes()
    raw = pd.read_parquet(ptp_src)
    raw[raw["column_1"].isin(codes) & raw["column_2"].isin(codes)].to_parquet(out / "ptp.parquet", index=False)
    write_ptp_parts(out / "ptp.parquet", out / "cms", year=2025, quarter=4, version="v313r0", parts=2)
    write_mue_csv(mue_src, out / "cms", eff="10-01-2025")
    frames = G.reference_frames([rvu, out / "cms"])
    assert {"pprrvu", "ptp", "mue"} <= set(frames)
    return frames


@pytest.fixture(scope="module")
def full_gen(full_frames):
    return G.generate_claims(6000, pprrvu=full_frames["pprrvu"], ptp=full_frames["ptp"], mue=full_frames["mue"],
                             seed=3)


# --- independent checks ---------------------------------------------------------------------------

def npi_valid(npi: str) -> bool:
    """Luhn over '80840' + the 10 digits (CMS NPI standard), written out the textbook way."""
    if not re.fullmatch(r"\d{10}", npi):
        return False
    digits = [int(c) for c in "80840" + npi]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return total % 10 == 0


def modifier_lists(claims: pd.DataFrame) -> pd.Series:
    return claims["modifiers"].fillna("").map(lambda m: [x for x in m.split(",") if x])


def clean_lines(gen: G.GeneratedClaims) -> pd.DataFrame:
    """Lines of patients that carry no seeded problem at all."""
    key_claims = set(gen.answer_key["claim_id"])
    seeded_patients = set(gen.claims.loc[gen.claims["claim_id"].isin(key_claims), "patient_id"])
    return gen.claims[~gen.claims["patient_id"].isin(seeded_patients)].copy()


def clean_line_problems(lines: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> list[str]:
    """Every reason a line of ``lines`` would be flagged deny/review by the rules brief."""
    problems: list[str] = []
    rvu = frames["pprrvu"].drop_duplicates(["hcpcs", "modifier"]).set_index(["hcpcs", "modifier"])
    mods = modifier_lists(lines)
    lines = lines.assign(mods=mods, pricing=mods.map(lambda m: "26" if "26" in m else ("TC" if "TC" in m else "")))

    def bad(mask: pd.Series, why: str) -> None:
        for _, r in lines[mask].head(5).iterrows():
            problems.append(f"{why}: {r['claim_id']}/{r['line_number']} {r['hcpcs']} {r['modifiers']} "
                            f"POS {r['place_of_service']} units {r['units']}")

    base = rvu.reindex(list(zip(lines["hcpcs"], [""] * len(lines), strict=True)))
    row = rvu.reindex(list(zip(lines["hcpcs"], lines["pricing"], strict=True)))
    status = base["status_code"].to_numpy()
    is_drug = lines["hcpcs"].str.startswith("J").to_numpy()
    bad(pd.Series(~((status == "A") | ((status == "E") & is_drug)), index=lines.index), "status not A/E")
    bad(pd.Series((lines["pricing"] != "").to_numpy() & (base["pctc_indicator"].to_numpy() != "1"),
                  index=lines.index), "26/TC on a code without PC/TC split")
    facility = lines["place_of_service"].isin(FACILITY).to_numpy()
    bad(pd.Series(facility & row["facility_na"].fillna(False).to_numpy(dtype=bool), index=lines.index),
        "facility NA in a facility POS")
    bad(pd.Series(~facility & row["nonfacility_na"].fillna(False).to_numpy(dtype=bool), index=lines.index),
        "non-facility NA in a non-facility POS")
    bad(pd.Series(lines["place_of_service"].isin(["19", "21", "22", "23"]).to_numpy()
                  & (base["pctc_indicator"].to_numpy() == "5"), index=lines.index), "incident-to in a hospital")
    office = lines["hcpcs"].isin([c for c in EM if c < "99220"])
    hospital = lines["hcpcs"].isin([c for c in EM if "99221" <= c <= "99239"])
    ed = lines["hcpcs"].isin([c for c in EM if "99281" <= c <= "99285"])
    bad(office & lines["place_of_service"].isin(["21", "31"]), "office E/M in an inpatient/SNF POS")
    bad(hospital & (lines["place_of_service"] == "11"), "hospital E/M in the office")
    bad(ed & (lines["place_of_service"] != "23"), "ED E/M outside POS 23")
    bad(lines["hcpcs"].isin(FREQUENCY_CODES), "frequency-limited code")
    bad(lines["hcpcs"].isin(["J2001", "J2002", "J2003", "J2004"]), "lidocaine (bundled supply)")
    bad(lines["mods"].map(lambda m: bool({"50", "80", "81", "82", "AS", "62", "66"} & set(m))),
        "payment modifier on a clean line")
    # 25 only on E/M
    is_em = lines["hcpcs"].isin(EM)
    has25 = lines["mods"].map(lambda m: "25" in m)
    bad(has25 & ~is_em, "25 on a non-E/M code")

    # same patient + DOS + rendering NPI groups
    lines["grp"] = lines["patient_id"] + "|" + lines["service_date"] + "|" + lines["rendering_npi"]
    glob = base["global_days"].to_numpy()
    lines["minor"] = np.isin(glob, ["000", "010"])
    lines["major"] = glob == "090"
    g_minor = lines.groupby("grp")["minor"].transform("any")
    g_other = lines.assign(o=~is_em).groupby("grp")["o"].transform("any")
    g_major = lines.groupby("grp")["major"].transform("any")
    bad(is_em & g_minor & ~has25, "E/M with a 000/010 procedure and no 25")
    bad(is_em & has25 & ~g_other, "25 on an E/M with nothing else that day")
    bad(is_em & g_major, "E/M on the day of a 090 procedure")
    # duplicates
    dup_key = lines["grp"] + "|" + lines["hcpcs"] + "|" + lines["mods"].map(lambda m: ",".join(sorted(m)))
    bad(dup_key.duplicated(), "duplicate line")
    # MUE
    mue = frames["mue"].set_index("hcpcs")
    value = mue["mue_value"].reindex(lines["hcpcs"]).to_numpy()
    mai = mue["mai"].reindex(lines["hcpcs"]).to_numpy()
    day_units = lines.groupby(["grp", "hcpcs"])["units"].transform("sum").to_numpy()
    units = lines["units"].to_numpy()
    bad(pd.Series((mai == 1) & (units > value), index=lines.index), "units over a MAI-1 MUE")
    bad(pd.Series(np.isin(mai, [2, 3]) & (day_units > value), index=lines.index), "day units over a MAI-2/3 MUE")
    bad(pd.Series(np.isnan(value) & (units > 1), index=lines.index), "units > 1 on a code without an MUE")
    # PTP pairs within a group
    ptp = frames["ptp"]
    active = ptp[ptp["modifier_indicator"].astype(str).isin(["0", "1"])
                 & (ptp["effective_date"] <= pd.Timestamp(END))
                 & (ptp["deletion_date"].isna() | (ptp["deletion_date"] >= pd.Timestamp(START)))]
    left = lines[["grp", "claim_id", "line_number", "hcpcs", "mods"]]
    pairs = left.merge(left, on="grp", suffixes=("_1", "_2"))
    pairs = pairs[(pairs["claim_id_1"] != pairs["claim_id_2"]) | (pairs["line_number_1"] != pairs["line_number_2"])]
    hit = pairs.merge(active[["column_1", "column_2", "modifier_indicator"]],
                      left_on=["hcpcs_1", "hcpcs_2"], right_on=["column_1", "column_2"])
    bypass = hit.apply(lambda r: bool(set(r["mods_2"]) & NCCI_ASSOCIATED)
                       or bool(set(r["mods_1"]) & {"59", "XE", "XS", "XP", "XU"}), axis=1) if len(hit) else []
    denied = hit[(hit["modifier_indicator"].astype(str) == "0") | ~np.asarray(bypass, dtype=bool)] if len(hit) else hit
    for _, r in denied.head(5).iterrows():
        problems.append(f"PTP {r['hcpcs_1']}/{r['hcpcs_2']} ind {r['modifier_indicator']} unbypassed: "
                        f"{r['claim_id_2']}/{r['line_number_2']} {r['mods_2']}")
    # global surgery windows: no E/M by the same NPI on the day before a 090 / within 10 or 90 days after
    procs = lines[np.isin(glob, ["010", "090"])][["patient_id", "rendering_npi", "service_date", "hcpcs"]]
    visits = lines[is_em][["patient_id", "rendering_npi", "service_date", "claim_id", "line_number"]]
    both = procs.merge(visits, on=["patient_id", "rendering_npi"], suffixes=("_p", "_v"))
    if len(both):
        gap = (pd.to_datetime(both["service_date_v"]) - pd.to_datetime(both["service_date_p"])).dt.days
        days = both["hcpcs"].map(lambda c: 90 if rvu.loc[(c, ""), "global_days"] == "090" else 10)
        is_090 = days == 90
        window = ((gap >= 1) & (gap <= days)) | ((gap == -1) & is_090)
        for _, r in both[window].head(5).iterrows():
            problems.append(f"E/M in a global window: {r['claim_id']}/{r['line_number']} vs {r['hcpcs']}")
    return problems


# --- tests ----------------------------------------------------------------------------------------

def test_same_seed_same_output_other_seed_other_output(sample_frames):
    kw = dict(pprrvu=sample_frames["pprrvu"], ptp=sample_frames["ptp"], mue=sample_frames["mue"],
              locations=G.SAMPLE_LOCATIONS)
    a = G.generate_claims(400, seed=5, **kw)
    b = G.generate_claims(400, seed=5, **kw)
    c = G.generate_claims(400, seed=6, **kw)
    pd.testing.assert_frame_equal(a.claims, b.claims)
    pd.testing.assert_frame_equal(a.answer_key, b.answer_key)
    assert not a.claims.equals(c.claims)


def test_contract_columns_and_values(sample_gen):
    claims = sample_gen.claims
    assert list(claims.columns) == G.CLAIM_COLUMNS
    assert len(claims) == 1500
    assert claims["claim_id"].str.len().max() <= 20
    dates = pd.to_datetime(claims["service_date"], format="%Y-%m-%d")
    assert dates.min() >= pd.Timestamp(START) and dates.max() <= pd.Timestamp(END)
    assert claims["hcpcs"].str.fullmatch(r"[A-Z0-9]{5}").all()
    assert claims["place_of_service"].str.fullmatch(r"\d{2}").all()
    assert modifier_lists(claims).map(lambda m: len(m) <= 4 and all(re.fullmatch(r"[A-Z0-9]{2}", x) for x in m)).all()
    assert (claims["units"] > 0).all() and claims["units"].dtype == np.int64
    assert (claims["charge_amount"] > 0).all()
    assert (claims["charge_amount"].round(2) == claims["charge_amount"]).all()
    assert set(claims["payer"]) == {"medicare"}
    loc = claims["locality"].dropna()
    assert loc.str.fullmatch(r"\d{5}-\d{2}").all() and len(loc) > 0
    assert claims["service_zip"].dropna().isin([z for z, _ in G.SAMPLE_LOCATIONS]).all()
    assert claims["diagnosis_codes"].str.fullmatch(r"[A-Z][0-9A-Z]{2,6}(,[A-Z][0-9A-Z]{2,6}){0,2}").all()
    # realistic shape: several lines per claim, claims per patient, several providers per patient
    per_claim = claims.groupby("claim_id").size()
    assert 2.0 <= per_claim.mean() <= 5.0
    assert claims.groupby("patient_id")["claim_id"].nunique().mean() >= 1.5
    assert (claims.groupby("patient_id")["rendering_npi"].nunique() > 1).any()
    assert claims["place_of_service"].value_counts().index[0] == "11"
    assert {"21", "22", "23"} <= set(claims["place_of_service"])


def test_npis_have_valid_check_digits(sample_gen):
    npis = pd.concat([sample_gen.claims["rendering_npi"], sample_gen.claims["billing_npi"]]).unique()
    assert len(npis) > 5
    assert all(npi_valid(n) for n in npis)
    assert not npi_valid("1234567890") and npi_valid("1234567893")   # the CMS worked example


def test_claim_and_line_identity(sample_gen):
    claims = sample_gen.claims
    assert not claims.duplicated(["claim_id", "line_number"]).any()
    numbering = claims.groupby("claim_id")["line_number"].agg(lambda s: list(s) == list(range(1, len(s) + 1)))
    assert numbering.all()
    per_claim = claims.groupby("claim_id").agg(patients=("patient_id", "nunique"), npis=("rendering_npi", "nunique"),
                                               pos=("place_of_service", "nunique"))
    assert (per_claim == 1).all().all()
    # file order: by date of service
    first_dates = claims.groupby("claim_id", sort=True)["service_date"].min()
    assert first_dates.is_monotonic_increasing


def test_answer_key_rows_point_at_existing_lines(sample_gen):
    key = sample_gen.answer_key
    assert list(key.columns) == G.ANSWER_KEY_COLUMNS
    assert len(key) > 0
    lines = sample_gen.claims.set_index(["claim_id", "line_number"])
    assert lines.index.is_unique
    assert key.set_index(["claim_id", "line_number"]).index.isin(lines.index).all()
    for _, r in key.iterrows():
        assert (r["rule_family"], r["severity"]) == G.RULES[r["rule_id"]]
    assert not key.duplicated(["claim_id", "line_number", "rule_id"]).any()


def test_rule_metadata_matches_the_rules_catalog():
    """The key's family/severity per rule id agree with rules/catalog/*.yaml (where a rule is there)."""
    catalog_dir = REPO / "rules" / "catalog"
    entries = {}
    for path in sorted(catalog_dir.glob("*.yaml")):
        for rule in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("rules", []):
            entries[rule["id"]] = (rule["family"], rule["severity"])
    if not entries:
        pytest.skip("rules/catalog has no rule files yet")
    mismatched = {r: (G.RULES[r], entries[r]) for r in G.RULES if r in entries and entries[r] != G.RULES[r]}
    assert not mismatched


def test_sample_clean_lines_raise_nothing(sample_gen, sample_frames):
    lines = clean_lines(sample_gen)
    assert len(lines) > 0.8 * len(sample_gen.claims)
    assert clean_line_problems(lines, sample_frames) == []


def test_sample_seeds_every_family(sample_gen):
    assert set(sample_gen.answer_key["rule_family"]) == set(G.RULES[r][0] for r in G.RULES)


def test_seeded_lines_carry_the_seeded_patterns(sample_gen):
    """Spot-check the scenarios themselves: the key names what is really on the line."""
    lines = sample_gen.claims.set_index(["claim_id", "line_number"])
    key = sample_gen.answer_key
    for _, r in key.iterrows():
        line = lines.loc[(r["claim_id"], r["line_number"])]
        mods = [m for m in str(line["modifiers"] or "").split(",") if m]
        if r["rule_id"] == "POS-INVALID":
            assert line["place_of_service"] == "98"
        elif r["rule_id"] == "MOD-PCTC-INVALID":
            assert "26" in mods or "TC" in mods
        elif r["rule_id"] == "EM-25-NOPROC":
            assert "25" in mods and line["hcpcs"] in EM
        elif r["rule_id"] == "EM-NO25":
            assert "25" not in mods and line["hcpcs"] in EM
        elif r["rule_id"] == "MOD25-NON-EM":
            assert "25" in mods and line["hcpcs"] not in EM
        elif r["rule_id"] == "PTP-BYPASS":
            assert set(mods) & NCCI_ASSOCIATED
        elif r["rule_id"] == "FREQ-LIMIT":
            assert line["hcpcs"] in FREQUENCY_CODES
        elif r["rule_id"] == "MOD-BILAT-INVALID":
            assert "50" in mods


def test_full_release_clean_and_every_scenario(full_gen, full_frames):
    assert full_gen.warnings == []
    assert set(full_gen.stats["scenario_kinds"]) == set(G.SCENARIOS)
    seeded_rules = set(full_gen.answer_key["rule_id"])
    assert {rule for _m, rule in G.SCENARIOS.values()} <= seeded_rules
    lines = clean_lines(full_gen)
    assert clean_line_problems(lines, full_frames) == []
    # the practice mix is really there: E/M with procedures, drugs with administrations, 26 reads,
    # multiple surgical procedures the same day
    assert (lines["hcpcs"].str.startswith("J")).sum() > 50
    assert (lines["modifiers"].str.contains("26")).sum() > 50
    assert lines["modifiers"].str.split(",").map(lambda m: "25" in m).sum() > 50
    assert (lines["hcpcs"] == "96372").sum() > 20
    rvu = full_frames["pprrvu"].drop_duplicates(["hcpcs", "modifier"])
    mult2 = set(rvu.loc[(rvu["modifier"] == "") & (rvu["mult_proc"] == "2"), "hcpcs"])
    n_mult2 = lines[lines["hcpcs"].isin(mult2)].groupby(["claim_id", "service_date"]).size()
    assert (n_mult2 >= 2).sum() > 10


def test_families_filter_and_no_problems(sample_frames):
    kw = dict(pprrvu=sample_frames["pprrvu"], ptp=sample_frames["ptp"], mue=sample_frames["mue"],
              locations=G.SAMPLE_LOCATIONS)
    only_units = G.generate_claims(600, families=["units"], seed=2, **kw)
    assert set(only_units.answer_key["rule_family"]) == {"units"}
    none = G.generate_claims(600, problem_rate=0, seed=2, **kw)
    assert len(none.claims) == 600 and none.answer_key.empty
    assert clean_line_problems(none.claims, sample_frames) == []
    with pytest.raises(ValueError, match="unknown rule families"):
        G.generate_claims(10, families=["nope"], **kw)


def test_without_ptp_or_mue_the_pair_scenarios_are_skipped_with_a_warning(sample_frames):
    gen = G.generate_claims(300, pprrvu=sample_frames["pprrvu"], seed=1, locations=G.SAMPLE_LOCATIONS)
    assert any("PTP" in w for w in gen.warnings) and any("MUE" in w for w in gen.warnings)
    assert not {"PTP-IND0", "PTP-IND1", "PTP-BYPASS", "MUE-LINE", "MUE-DOS"} & set(gen.answer_key["rule_id"])
    assert len(gen.claims) == 300


def test_write_csv_and_parquet_round_trip(sample_gen, tmp_path):
    csv_path = G.write_claims(sample_gen, tmp_path / "claims.csv")
    back = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(back.columns) == G.CLAIM_COLUMNS and len(back) == len(sample_gen.claims)
    assert back["charge_amount"].str.fullmatch(r"\d+\.\d{2}").all()
    assert (back["hcpcs"] == sample_gen.claims["hcpcs"]).all()
    pq_path = G.write_claims(sample_gen, tmp_path / "claims.parquet", fmt="parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(pq_path), sample_gen.claims, check_dtype=False)
    key_path = G.write_answer_key(sample_gen, tmp_path / "key.csv")
    assert len(pd.read_csv(key_path)) == len(sample_gen.answer_key)
    with pytest.raises(ValueError):
        G.write_claims(sample_gen, tmp_path / "x.json", fmt="json")


@pytest.mark.parametrize("which", ["generated", "bundled_sample"])
def test_generated_file_passes_intake_unchanged(which, sample_gen, tmp_path):
    """Every generated line (seeded problems included) is a well-formed claim line: nothing quarantined,
    and intake reads back exactly what was written, field by field."""
    intake_mod = pytest.importorskip("scrubber.claims.intake", reason="claim intake not available yet")
    if which == "generated":
        path = G.write_claims(sample_gen, tmp_path / "claims.csv")
    else:
        path = REPO / "data" / "claims" / "sample_claims.csv"
        if not path.is_file():
            pytest.skip("data/claims/sample_claims.csv not built yet")
    written = pd.read_csv(path, dtype=str, keep_default_na=False)
    result = intake_mod.intake([path])
    assert len(result.quarantine) == 0, result.quarantine.head().to_dict("records")
    assert len(result.lines) == len(written)
    lines = result.lines.sort_values("source_row").reset_index(drop=True)
    assert (lines["source_row"] == range(2, len(lines) + 2)).all()           # file row 2 = first line
    for col in ("claim_id", "hcpcs", "place_of_service", "rendering_npi", "modifiers"):
        got = lines[col].astype(object).where(lines[col].notna(), "").astype(str)
        bad = got != written[col]
        assert not bad.any(), f"{col} differs from the file on rows " + str(
            list(zip(lines.loc[bad, "source_row"].head(5), written.loc[bad, col].head(5), got[bad].head(5),
                     strict=True)))
    assert (lines["units"].to_numpy() == written["units"].astype(float).to_numpy()).all()


def test_bundled_sample_files_are_the_generator_output(sample_frames):
    """data/claims/sample_*.csv are exactly what the documented call produces (reproducible demo data)."""
    claims_csv = REPO / "data" / "claims" / "sample_claims.csv"
    key_csv = REPO / "data" / "claims" / "sample_answer_key.csv"
    if not claims_csv.is_file():
        pytest.skip("data/claims/sample_claims.csv not built yet")
    gen = G.generate_claims(**G.SAMPLE_CLAIMS_ARGS, pprrvu=sample_frames["pprrvu"], ptp=sample_frames["ptp"],
                            mue=sample_frames["mue"])
    on_disk = pd.read_csv(claims_csv, dtype=str, keep_default_na=False)
    fresh = gen.claims.astype(object).where(gen.claims.notna(), "").astype(str)
    fresh["charge_amount"] = gen.claims["charge_amount"].map(lambda x: f"{x:.2f}")
    pd.testing.assert_frame_equal(on_disk, fresh.reset_index(drop=True), check_dtype=False)
    assert len(pd.read_csv(key_csv)) == len(gen.answer_key)
    assert 200 <= len(on_disk) <= 400
