"""Benchmark the units, bundling, code_status and duplicate check families on 1M synthetic lines.

Real reference data (read from ../shared/reference-data beside the repository):
- codes and indicators: RVU25D PPRRVU CSV (parsed with scrubber.reference.rvu)
- PTP: the full 2024Q2 practitioner table (v30.1, 2.5M edits; northstar parquet, mapped to canonical
  columns; the file has no effective dates, so every edit is taken as effective since 1996-01-01, and
  indicator-9 edits as effective on their deletion date)
- MUE: the 2024Q3 practitioner table (northstar parquet)

Claim lines (deterministic seeds), on Q2 2024 dates, plus 200k history lines of an earlier run on
the same patients (a quarter of them moved onto the patient, day and provider of a batch line):
- ``--data realistic`` (default): scrubber.generate (practice-like encounters, ~5% seeded problems);
- ``--data stress``: the vectorised generator below, ~100k patients / ~250k claims with codes drawn
  at random (skewed) over status-A codes that take part in PTP edits plus office visits, random
  modifiers and units: many same-day PTP pairs and ~50% flagged lines, a worst case for flag building.

Usage: .venv/bin/python bench/bench_checks.py [--data realistic|stress] [--lines 1000000] [--repeat 2]
Prints wall time per family (the second run is warm: Python and pandas code paths are loaded), the
flag-building time, process CPU time (a fairer figure on a shared machine), flag counts and peak RSS.
Load average is printed too: on a busy machine wall times stretch with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "reference-data"
PPRRVU_CSV = SHARED / "cms-rvu" / "RVU25D_2025_Oct" / "PPRRVU2025_Oct.csv"
PTP_PARQUET = SHARED / "ncci-ptp" / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"
MUE_PARQUET = SHARED / "ncci-mue" / "2024Q3_northstar_qs" / "mue_practitioner_2024q3.parquet"
FAMILIES = ("units", "bundling", "code_status", "duplicate")

sys.path.insert(0, str(REPO))

from scrubber.checks.context import CheckContext  # noqa: E402
from scrubber.checks.engine import run_checks  # noqa: E402
from scrubber.rules import RuleBook  # noqa: E402
from scrubber.schemas import LINE_COLUMNS  # noqa: E402
from scrubber.settings import Settings  # noqa: E402


def load_pprrvu() -> pd.DataFrame:
    from scrubber.reference.rvu import parse_pprrvu_csv

    table = parse_pprrvu_csv(PPRRVU_CSV.name, PPRRVU_CSV.read_bytes())
    frame = table.frame
    frame["release"] = "RVU25D"
    return frame


def load_ptp() -> pd.DataFrame:
    raw = pd.read_parquet(PTP_PARQUET)
    deletion = pd.to_datetime(raw["deletion_date"].where(raw["deletion_date"] != "9999-12-31"), errors="coerce")
    indicator = raw["modifier_indicator"].astype(str)
    effective = pd.Series(pd.Timestamp("1996-01-01"), index=raw.index)
    effective = effective.where(indicator != "9", deletion.fillna(pd.Timestamp("1996-01-01")))
    return pd.DataFrame({
        "column_1": raw["column_1"].astype("str"), "column_2": raw["column_2"].astype("str"),
        "prior_1996": raw["prior_1996"].fillna("").astype("str"),
        "effective_date": effective.astype("datetime64[ns]"), "deletion_date": deletion.astype("datetime64[ns]"),
        "modifier_indicator": indicator.astype("str"), "rationale": raw["rationale"].astype("str"),
        "release": "PTP-2024Q2",
    })


def load_mue() -> pd.DataFrame:
    raw = pd.read_parquet(MUE_PARQUET)
    return pd.DataFrame({"hcpcs": raw["hcpcs_code"].astype("str"), "mue_value": raw["mue_units"].astype("int64"),
                         "mai": raw["mue_mai"].astype("int64"), "rationale": raw["mue_rationale"].astype("str"),
                         "release": "MUE-2024Q3"})


def synth_lines(n_lines: int, pprrvu: pd.DataFrame, ptp: pd.DataFrame, rng: np.random.Generator,
                *, n_patients: int, n_npis: int = 5000, uid0: int = 0, prefix: str = "C") -> pd.DataFrame:
    """Vectorised synthetic canonical lines (claims of 1-8 lines, ~4 on average)."""
    glob = pprrvu[pprrvu["modifier"] == ""]
    status_a = glob.loc[glob["status_code"] == "A", "hcpcs"].to_numpy(dtype=object)
    in_ptp = set(ptp["column_1"].unique()) | set(ptp["column_2"].unique())
    procs = np.array(sorted(c for c in status_a if c in in_ptp and not c.startswith("99")), dtype=object)
    others = glob.loc[glob["status_code"] != "A", "hcpcs"].to_numpy(dtype=object)
    visits = np.array([*(f"9920{i}" for i in range(2, 6)), *(f"9921{i}" for i in range(1, 6))], dtype=object)
    # skewed choice among procedures: the first few hundred carry most volume (like real practices)
    weights = 1.0 / np.arange(1, len(procs) + 1) ** 0.9
    rng.shuffle(procs)
    n_claims = n_lines // 4
    sizes = rng.integers(1, 8, n_claims)
    sizes = np.maximum(1, np.round(sizes * n_lines / sizes.sum()).astype(int))
    while sizes.sum() > n_lines:
        sizes[rng.integers(0, n_claims)] = max(1, sizes[rng.integers(0, n_claims)] - 1)
    n = int(sizes.sum())
    claim = np.repeat(np.arange(n_claims), sizes)
    line_no = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    patient = rng.integers(0, n_patients, n_claims)[claim]
    npi = rng.integers(0, n_npis, n_claims)[claim]
    day = rng.integers(0, 91, n_claims)[claim]
    kind = rng.random(n)
    codes = np.where(kind < 0.35, visits[rng.integers(0, len(visits), n)],
                     np.where(kind < 0.97, procs[rng.choice(len(procs), n, p=weights / weights.sum())],
                              others[rng.integers(0, len(others), n)]))
    mod_pool = np.array(["", "25", "59", "XS", "RT", "LT", "26", "TC", "50", "76", "91", "80", "GA"], dtype=object)
    mod_p = np.array([0.80, 0.05, 0.03, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.01])
    mods = mod_pool[rng.choice(len(mod_pool), n, p=mod_p / mod_p.sum())]
    units = np.where(rng.random(n) < 0.1, rng.integers(2, 5, n), 1).astype(float)
    dates = (np.datetime64("2024-04-01") + day.astype("timedelta64[D]")).astype("datetime64[ns]")
    npi_txt = np.char.add("1", np.char.zfill(npi.astype(str), 9)).astype(object)
    frame = pd.DataFrame({
        "line_uid": np.arange(uid0, uid0 + n, dtype=np.int64), "source_file": "bench.csv",
        "source_row": np.arange(2, n + 2, dtype=np.int64),
        "claim_id": pd.Series(np.char.add(prefix, claim.astype(str)), dtype="str"),
        "line_number": line_no.astype(np.int64),
        "patient_id": pd.Series(np.char.add("MBI", np.char.zfill(patient.astype(str), 8)), dtype="str"),
        "rendering_npi": pd.Series(npi_txt, dtype="str"), "billing_npi": pd.Series(npi_txt, dtype="str"),
        "payer": "medicare", "service_date": dates, "hcpcs": pd.Series(codes, dtype="str"),
        "modifiers": pd.Series(mods, dtype="str"), "modifier_1": pd.Series(mods, dtype="str"), "modifier_2": "",
        "modifier_3": "", "modifier_4": "", "units": units, "charge_amount": np.nan, "place_of_service": "11",
        "locality": "", "service_zip": "", "diagnosis_codes": "",
    })[LINE_COLUMNS]
    return frame


def generated_lines(n_lines: int, pprrvu: pd.DataFrame, ptp: pd.DataFrame, mue: pd.DataFrame, *, seed: int,
                    problem_rate: float, uid0: int = 0) -> pd.DataFrame:
    """scrubber.generate claims in the input contract, turned into canonical lines (what intake yields)."""
    from scrubber.generate import generate_claims

    gen = generate_claims(n_lines, pprrvu=pprrvu, ptp=ptp, mue=mue, seed=seed, start=date(2024, 4, 1),
                          end=date(2024, 6, 30), problem_rate=problem_rate)
    c = gen.claims
    mods = c["modifiers"].fillna("").astype(str).str.replace(r"[;\s]+", ",", regex=True).str.upper()
    parts = mods.str.split(",")
    out = pd.DataFrame({
        "line_uid": np.arange(uid0, uid0 + len(c), dtype=np.int64), "source_file": "generated.csv",
        "source_row": np.arange(2, len(c) + 2, dtype=np.int64), "claim_id": c["claim_id"].astype("str"),
        "line_number": c["line_number"].astype(np.int64), "patient_id": c["patient_id"].astype("str"),
        "rendering_npi": c["rendering_npi"].astype("str"),
        "billing_npi": c["billing_npi"].fillna(c["rendering_npi"]).astype("str"),
        "payer": c["payer"].fillna("medicare").astype("str"),
        "service_date": pd.to_datetime(c["service_date"]).astype("datetime64[ns]"),
        "hcpcs": c["hcpcs"].astype("str"), "modifiers": mods.astype("str"),
        **{f"modifier_{i + 1}": parts.str[i].fillna("").astype("str") for i in range(4)},
        "units": c["units"].astype(float), "charge_amount": c["charge_amount"].astype(float),
        "place_of_service": c["place_of_service"].astype("str"), "locality": c["locality"].fillna("").astype("str"),
        "service_zip": c["service_zip"].fillna("").astype("str"),
        "diagnosis_codes": c["diagnosis_codes"].fillna("").astype("str"),
    })
    return out[LINE_COLUMNS]


def annotate(lines: pd.DataFrame, pprrvu: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's annotations: releases and the PPRRVU global row of the code."""
    glob = pprrvu[pprrvu["modifier"] == ""].drop_duplicates("hcpcs")
    cols = ["status_code", "global_days", "pctc_indicator", "nonfacility_na", "facility_na", "mult_proc",
            "bilat_surg", "asst_surg", "co_surg", "team_surg", "endo_base"]
    out = lines.merge(glob[["hcpcs", *cols]], on="hcpcs", how="left")
    out["rvu_release"] = "RVU25D"
    out["ptp_release"] = "PTP-2024Q2"
    out["mue_release"] = "MUE-2024Q3"
    out["expected_allowed"] = np.nan
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("realistic", "stress"), default="realistic")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--history", type=int, default=200_000)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    for path in (PPRRVU_CSV, PTP_PARQUET, MUE_PARQUET):
        if not path.exists():
            sys.exit(f"missing reference file: {path}")

    t0 = time.perf_counter()
    pprrvu, ptp, mue = load_pprrvu(), load_ptp(), load_mue()
    rng = np.random.default_rng(20240401)
    if args.data == "stress":
        lines = annotate(synth_lines(args.lines, pprrvu, ptp, rng, n_patients=args.patients), pprrvu)
        hist = synth_lines(args.history, pprrvu, ptp, rng, n_patients=args.patients, prefix="H")
    else:
        lines = annotate(generated_lines(args.lines, pprrvu, ptp, mue, seed=1, problem_rate=0.05), pprrvu)
        hist = generated_lines(args.history, pprrvu, ptp, mue, seed=2, problem_rate=0.0)
    # a quarter of the history shares patient, day and provider with a batch line
    same = rng.random(len(hist)) < 0.25
    donor = rng.integers(0, len(lines), len(hist))
    for col in ("patient_id", "rendering_npi", "billing_npi", "service_date"):
        hist.loc[same, col] = lines[col].to_numpy()[donor[same]]
    hist = annotate(hist, pprrvu)
    hist["run_id"] = "20240331-bench"
    rules = RuleBook.load(REPO / "rules")
    print(f"setup ({args.data} data): {time.perf_counter() - t0:.1f} s; {len(lines):,} lines, "
          f"{lines['claim_id'].nunique():,} claims, "
          f"{lines['patient_id'].nunique():,} patients, {len(hist):,} history lines, PTP {len(ptp):,} rows, "
          f"MUE {len(mue):,} rows")

    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for rep in range(args.repeat):
        ctx = CheckContext(lines=lines, history=hist, pprrvu=pprrvu, ptp=ptp, mue=mue, rules=rules,
                           settings=Settings())
        timings: dict[str, float] = {}
        t, cpu = time.perf_counter(), time.process_time()
        flags = run_checks(ctx, run_id="bench", families=FAMILIES, timings=timings)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        fam = "  ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        print(f"run {rep + 1}: wall {wall:.2f} s, process CPU {cpu:.2f} s  [{fam}]  flags {len(flags):,}")
    counts = flags.groupby(["rule_id", "severity"]).size().rename("flags").reset_index()
    print(counts.to_string(index=False))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
