"""Benchmark: pricing 1,000,000 claim lines, and writing the exception report for 100,000 flags.

Targets (issue): pricing adds < 1 s to a 1M-line run; the report for 100,000 flags takes < 5 s.

    python bench/bench_report.py [--store DIR] [--lines 1000000] [--flags 100000] [--repeat 3]

``--store`` is a scrubber store with RVU25D and the ZIP5 crosswalk loaded; without it the real CMS
files from ../shared/reference-data are loaded into a temporary store first (not timed). The claim
mix is synthetic but shaped like a professional-claims night: about half E/M visits, procedures
(some on the same patient and day, so multiple-procedure ranking runs), imaging with 26/TC, therapy
units, drugs and labs Medicare does not price from RVUs, localities given, derived from a ZIP, or
absent. Figures are wall-clock seconds and process CPU seconds (the CPU figure is the honest one on a
shared machine). Pricing is timed warm (reference tables already converted, as in a run that has
loaded them) and cold (first call of the process, including that conversion).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scrubber.checks.place_of_service import load_pos_table  # noqa: E402
from scrubber.pricing import amount_at_risk, annotate_and_price  # noqa: E402
from scrubber.reference.catalog import ReferenceSet  # noqa: E402
from scrubber.report import build_summary, write_report  # noqa: E402
from scrubber.settings import Settings  # noqa: E402
from scrubber.store import LocalStore  # noqa: E402

SHARED = REPO.parent / "shared" / "reference-data" / "cms-rvu"

EM = ["99202", "99203", "99204", "99212", "99213", "99214", "99215", "99232", "99233"]
PROCEDURES = ["20553", "20552", "20610", "11102", "17000", "11042", "27447", "45378", "45380", "45385",
              "96372", "36591"]
IMAGING = ["71046", "70450", "70460", "73560", "93000", "93306", "70496", "92250"]
THERAPY = ["97110", "97140", "97530"]
OTHER = ["36415", "J1000", "J1030", "99070", "G0121", "0001F", "99381"]


def synthetic_lines(n: int, ref: ReferenceSet, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pp = ref.table("pprrvu", "RVU25D")
    any_code = pp["hcpcs"].astype(object).to_numpy()
    groups = [(EM, 0.45), (PROCEDURES, 0.18), (IMAGING, 0.12), (THERAPY, 0.08), (OTHER, 0.07)]
    kind = rng.choice(len(groups) + 1, size=n, p=[w for _, w in groups] + [0.10])
    hcpcs = np.empty(n, dtype=object)
    for k, (codes, _) in enumerate(groups):
        sel = kind == k
        hcpcs[sel] = np.array(codes, dtype=object)[rng.integers(0, len(codes), sel.sum())]
    sel = kind == len(groups)
    hcpcs[sel] = any_code[rng.integers(0, len(any_code), sel.sum())]
    mods = np.full(n, "", dtype=object)
    em = kind == 0
    mods[em & (rng.random(n) < 0.2)] = "25"
    img = kind == 2
    mods[img] = np.array(["", "26", "TC", "26"], dtype=object)[rng.integers(0, 4, img.sum())]
    proc = kind == 1
    mods[proc] = np.array(["", "", "59", "50", "LT", "RT", "80", "62"], dtype=object)[rng.integers(0, 8, proc.sum())]
    units = np.ones(n)
    units[kind == 3] = rng.integers(1, 5, (kind == 3).sum())
    units[rng.random(n) < 0.02] = 2.0
    n_visits = max(1, n // 3)                       # about three lines per patient-day
    visit = rng.integers(0, n_visits, n)
    patients = visit // 2                           # a patient comes about twice
    localities = ref.table("gpci", "RVU25D")["locality_id"].astype(object).to_numpy()
    loc_choice = rng.random(n)
    locality = np.where(loc_choice < 0.5, localities[rng.integers(0, len(localities), n)], None)
    zip_pool = np.array(["10001", "94103", "60601", "53703", "73301", "02108"], dtype=object)
    service_zip = np.where((loc_choice >= 0.5) & (loc_choice < 0.8), zip_pool[rng.integers(0, 6, n)], None)
    pos = np.array(["11", "11", "11", "11", "22", "21", "12", "02", "10", "23"], dtype=object)[rng.integers(0, 10, n)]
    frame = pd.DataFrame({
        "line_uid": np.arange(n, dtype=np.int64),
        "source_file": "bench.csv",
        "source_row": np.arange(2, n + 2),
        "claim_id": pd.array((visit).astype(str), dtype="str"),
        "line_number": (np.arange(n) % 6 + 1),
        "patient_id": pd.array(np.char.add("MBI", patients.astype(str)), dtype="str"),
        "rendering_npi": pd.array(np.array(["1234567893", "1111111112", "1245319599"])[visit % 3], dtype="str"),
        "billing_npi": pd.array(np.full(n, "1234567893"), dtype="str"),
        "payer": pd.array(np.where(rng.random(n) < 0.9, "medicare", "acme"), dtype="str"),
        "service_date": pd.Timestamp("2025-10-01") + pd.to_timedelta(visit % 60, unit="D"),
        "hcpcs": pd.array(hcpcs.astype(str), dtype="str"),
        "modifiers": pd.array(mods.astype(str), dtype="str"),
        "units": units,
        "charge_amount": np.round(rng.random(n) * 400, 2),
        "place_of_service": pd.array(pos.astype(str), dtype="str"),
        "locality": pd.array(locality, dtype="str"),
        "service_zip": pd.array(service_zip, dtype="str"),
    })
    return frame


def synthetic_flags(priced: pd.DataFrame, n: int, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    take = priced.iloc[np.sort(rng.choice(len(priced), size=n, replace=False))]
    rules = [("MUE-LINE", "units", "deny", "line"), ("PTP-IND1", "bundling", "deny", "line"),
             ("PTP-BYPASS", "bundling", "info", "none"), ("EM-NO25", "modifier25", "deny", "line"),
             ("POS-FACILITY-RATE", "place_of_service", "info", "pos_difference"),
             ("CODE-NOT-PAYABLE", "code_status", "deny", "line"), ("DUP-BATCH", "duplicate", "deny", "line"),
             ("FREQ-LIMIT", "frequency", "deny", "line"), ("POS-NF-NA", "place_of_service", "review", "line")]
    pick = rng.integers(0, len(rules), n)
    rule = [rules[i] for i in pick]
    flags = pd.DataFrame({
        "run_id": "bench",
        "claim_id": take["claim_id"].to_numpy(), "line_number": take["line_number"].to_numpy(),
        "patient_id": take["patient_id"].to_numpy(), "rendering_npi": take["rendering_npi"].to_numpy(),
        "service_date": take["service_date"].to_numpy(), "hcpcs": take["hcpcs"].to_numpy(),
        "modifiers": take["modifiers"].to_numpy(), "units": take["units"].to_numpy(),
        "place_of_service": take["place_of_service"].to_numpy(),
        "rule_family": [r[1] for r in rule], "rule_id": [r[0] for r in rule], "severity": [r[2] for r in rule],
        "message": [f"{r[0]}: {h} on this line breaks the rule (see rules/catalog)" for r, h in
                    zip(rule, take["hcpcs"].astype(str), strict=True)],
        "related_claim_id": None, "related_line_number": pd.array([pd.NA] * n, dtype="Int64"),
        "expected_allowed": take["expected_allowed"].to_numpy(),
        "reference_release": take["rvu_release"].astype(object).to_numpy(),
        "fix": "Correct the line and resubmit", "carc": "CO-97", "payer": take["payer"].to_numpy(),
        "line_uid": take["line_uid"].to_numpy(), "related_line_uid": pd.array([pd.NA] * n, dtype="Int64"),
        "source_file": "bench.csv", "source_row": take["source_row"].to_numpy(),
        "amount_basis": [r[3] for r in rule],
    })
    return flags


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="store with RVU25D + ZIP5 loaded")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--flags", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    if args.store:
        store = LocalStore(args.store)
    else:
        from scrubber.reference.loader import load_paths

        tmp = tempfile.mkdtemp(prefix="bench-ref-")
        store = LocalStore(tmp)
        print(f"loading RVU25D + ZIP5 into {tmp} (not timed) ...", flush=True)
        load_paths(store, [SHARED / "RVU25D_2025_Oct", SHARED / "ZIP5_OCT2025"])
    ref = ReferenceSet(store)
    settings = Settings()
    pos_table = load_pos_table(settings.rules_dir / "pos.yaml")
    lines = synthetic_lines(args.lines, ref)
    print(f"{len(lines):,} lines, {lines['patient_id'].nunique():,} patients")

    wall, cpu, priced = timed(lambda: annotate_and_price(lines, ref, pos_table, settings))
    print(f"pricing, cold (first call: converts the release once)  wall {wall:6.2f} s  cpu {cpu:6.2f} s")
    walls, cpus = [], []
    for _ in range(args.repeat):
        w, c, priced = timed(lambda: annotate_and_price(lines, ref, pos_table, settings))
        walls.append(w)
        cpus.append(c)
    print(f"pricing, warm (median of {args.repeat})                      wall {statistics.median(walls):6.2f} s"
          f"  cpu {statistics.median(cpus):6.2f} s   target < 1 s")
    ea = priced["expected_allowed"]
    print(f"  priced {ea.notna().sum():,} lines, ${ea.sum():,.2f} expected; "
          f"{(priced['mppr_rank'] > 1).sum():,} reduced by multiple-procedure rules")

    flags = synthetic_flags(priced, args.flags)
    w, c, risk = timed(lambda: amount_at_risk(flags, priced))
    flags["amount_at_risk"] = risk
    print(f"amount_at_risk for {len(flags):,} flags                     wall {w:6.2f} s  cpu {c:6.2f} s")

    out = LocalStore(tempfile.mkdtemp(prefix="bench-report-"))
    quarantine = pd.DataFrame({"source_file": ["bench.csv"] * 10, "source_row": range(10),
                               "reason": ["service_date is not a date"] * 10})
    w1, c1, summary = timed(lambda: build_summary(run_id="bench", run_date="2025-11-07",
                                                   input_rows=len(priced) + 10, lines=priced, flags=flags,
                                                   quarantine=quarantine))
    w2, c2, keys = timed(lambda: write_report(out, "reports/2025-11-07/bench/", flags=flags, lines=priced,
                                              quarantine=quarantine, summary=summary))
    print(f"report for {len(flags):,} flags + {len(priced):,} lines: summary wall {w1:.2f} s, "
          f"files wall {w2:.2f} s (cpu {c1 + c2:.2f} s), total wall {w1 + w2:.2f} s   target < 5 s")
    for key in keys:
        size = out.local_path(key).stat().st_size
        print(f"  {key.rsplit('/', 1)[-1]:16s} {size / 1e6:8.1f} MB")
    # the same without lines.parquet (what the 100k flags themselves cost)
    w3, c3, _ = timed(lambda: write_report(out, "reports/x/", flags=flags, lines=priced.iloc[:0],
                                           quarantine=quarantine, summary=summary))
    print(f"report files without the 1M-line lines.parquet: wall {w3:.2f} s  cpu {c3:.2f} s")


if __name__ == "__main__":
    main()
