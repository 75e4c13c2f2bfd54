"""Benchmark the claim generator (scrubber.generate) at nightly-batch scale (default 1,000,000 lines).

Real reference data, read from ../shared/reference-data beside the repository:
- RVU25D PPRRVU CSV (parsed with the project's parser);
- the full 2024Q2 practitioner PTP table (2.5M edits, northstar Parquet) mapped to canonical columns,
  with the placeholder effective dates the CMS-layout writer uses (active edits effective 2025-10-01);
- the 2024Q3 practitioner MUE table.

Usage: .venv/bin/python bench/bench_generate.py [--lines 1000000] [--seed 0] [--repeat 2] [--out DIR]
Prints the time of each generate_claims call (the second is warm), process CPU time, the shape of the
batch (claims, patients, providers, lines per claim, seeded scenarios) and, with --out, the time to
write CSV and Parquet.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "reference-data"
PPRRVU_CSV = SHARED / "cms-rvu" / "RVU25D_2025_Oct" / "PPRRVU2025_Oct.csv"
PTP_PARQUET = SHARED / "ncci-ptp" / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"
MUE_PARQUET = SHARED / "ncci-mue" / "2024Q3_northstar_qs" / "mue_practitioner_2024q3.parquet"

sys.path.insert(0, str(REPO))

from scrubber import generate as G  # noqa: E402
from scrubber.devtools.cms_layouts import ptp_placeholder_effective, read_mue_source  # noqa: E402
from scrubber.schemas import PTP_COLUMNS  # noqa: E402


def load_reference() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    for path in (PPRRVU_CSV, PTP_PARQUET, MUE_PARQUET):
        if not path.is_file():
            sys.exit(f"missing {path} (the shared reference data must sit beside the repository)")
    pprrvu = G.reference_frames([PPRRVU_CSV])["pprrvu"]
    raw = pd.read_parquet(PTP_PARQUET)
    eff = ptp_placeholder_effective(raw["prior_1996"], raw["deletion_date"], raw["modifier_indicator"],
                                    year=2025, quarter=4)
    ptp = pd.DataFrame({
        "column_1": raw["column_1"], "column_2": raw["column_2"], "prior_1996": raw["prior_1996"].fillna(""),
        "effective_date": pd.to_datetime(eff, format="%Y%m%d"),
        "deletion_date": pd.to_datetime(raw["deletion_date"].where(raw["deletion_date"] != "9999-12-31")),
        "modifier_indicator": raw["modifier_indicator"].astype(str), "rationale": raw["rationale"],
    })[PTP_COLUMNS]
    return pprrvu, ptp, read_mue_source(MUE_PARQUET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write claims.csv / claims.parquet here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    pprrvu, ptp, mue = load_reference()
    print(f"reference: PPRRVU {len(pprrvu):,} rows, PTP {len(ptp):,} edits, MUE {len(mue):,} codes "
          f"({time.perf_counter() - t0:.1f} s to load)")
    gen = None
    for run in range(1, args.repeat + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        gen = G.generate_claims(args.lines, pprrvu=pprrvu, ptp=ptp, mue=mue, seed=args.seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"run {run}: generate_claims({args.lines:,}) {wall:.2f} s wall, {cpu:.2f} s CPU "
              f"({args.lines / wall:,.0f} lines/s)")
    assert gen is not None
    s = gen.stats
    print(f"batch: {s['claims']:,} claims ({s['lines'] / s['claims']:.2f} lines each), {s['patients']:,} patients "
          f"({s['claims'] / s['patients']:.2f} claims each), {s['providers']:,} rendering NPIs")
    print(f"seeded: {s['seeded_scenarios']:,} scenarios, {s['answer_key_rows']:,} answer-key rows, "
          f"families {', '.join(s['families_seeded'])}")
    print("place of service:", gen.claims["place_of_service"].value_counts(normalize=True).round(3).to_dict())
    if gen.warnings:
        print("warnings:", *gen.warnings, sep="\n  ")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for fmt in ("csv", "parquet"):
            t = time.perf_counter()
            path = G.write_claims(gen, args.out / f"claims.{fmt}", fmt=fmt)
            print(f"wrote {path} in {time.perf_counter() - t:.2f} s ({path.stat().st_size / 1e6:.1f} MB)")
        G.write_answer_key(gen, args.out / "answer_key.csv")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
