"""Benchmark ``scrubber reference load`` on full-size CMS files.

    python bench/bench_reference_load.py [--keep DIR] [--in-process]

Steps:
  1. write the full real practitioner PTP table (2,545,089 edits) as the 4 CMS TXT parts and the
     full real practitioner MUE table as the CMS CSV (scrubber.devtools.cms_layouts) -- setup, not timed
     against the target;
  2. load the RVU25D release folder + the ZIP5 crosswalk (../shared/reference-data/cms-rvu);
  3. load the 4 PTP parts + the MUE CSV.
Each load runs in a fresh Python process (as the command line would), so every step reports its own
peak RSS (resource.getrusage ru_maxrss of that process) and CPU time (user + sys; on a busy machine
wall time overstates the cost). The one-off import of the library (Great Expectations ~3-5 s,
pandas, pyarrow, the parser modules) is timed separately from load_paths(). Target: steps 2 + 3 < 30 s.
With --in-process both loads run in this process one after the other (RSS is then the running peak).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "reference-data"
PTP_SOURCE = SHARED / "ncci-ptp" / "2024Q2_v301r0_northstar_qs" / "ptp_practitioner_2024q2_v301r0.parquet"
MUE_SOURCE = SHARED / "ncci-mue" / "2024Q3_northstar_qs" / "mue_practitioner_2024q3.parquet"
RVU_FOLDER = SHARED / "cms-rvu" / "RVU25D_2025_Oct"
ZIP5_FOLDER = SHARED / "cms-rvu" / "ZIP5_OCT2025"
TARGET_SECONDS = 30.0

sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(store: str, paths: list[str]) -> dict:
    """Import the library, then time one load_paths call; returns the figures."""
    started, cpu_started = time.perf_counter(), cpu_s()
    import great_expectations  # noqa: F401  (one-off per process; validation imports it lazily)

    from scrubber.reference.loader import all_parsers, load_paths
    from scrubber.store import LocalStore

    all_parsers()
    imported, cpu_before = time.perf_counter(), cpu_s()
    report = load_paths(LocalStore(store), paths)
    done = time.perf_counter()
    return {"import_s": imported - started, "import_cpu_s": cpu_before - cpu_started,
            "load_s": done - imported, "load_cpu_s": cpu_s() - cpu_before,
            "peak_rss_mb": peak_rss_mb(),
            "published": [(p["table"], p["release"], p["rows"]) for p in report.published],
            "warnings": len(report.warnings), "skipped": len(report.skipped)}


def write_inputs(inputs: str) -> dict:
    """Write the CMS-layout PTP parts and MUE CSV (runs in a child so this process stays small)."""
    from scrubber.devtools.cms_layouts import write_mue_csv, write_ptp_parts

    started = time.perf_counter()
    parts = write_ptp_parts(PTP_SOURCE, inputs, year=2025, quarter=4, version="v313r0", parts=4)
    mue_csv = write_mue_csv(MUE_SOURCE, inputs, eff="10-01-2025")
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
            "ptp": [str(p) for p in parts], "mue": str(mue_csv),
            "mb": sum(p.stat().st_size for p in [*parts, mue_csv]) / 1e6}


def _child(*args: str) -> dict:
    """Run a step in a fresh interpreter (its ru_maxrss is then its own peak, not this process's)."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"load failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="write inputs and the store here and keep them")
    parser.add_argument("--in-process", action="store_true", help="run both loads in this process")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_load(args.child[0], args.child[1:])))
        return
    if args.setup:
        print(json.dumps(write_inputs(args.setup)))
        return

    for needed in (PTP_SOURCE, MUE_SOURCE, RVU_FOLDER, ZIP5_FOLDER):
        if not needed.exists():
            raise SystemExit(f"missing {needed}: the benchmark needs ../shared/reference-data")
    with tempfile.TemporaryDirectory(prefix="bench_ref_") as tmp:
        root = args.keep or Path(tmp)
        inputs, store = root / "inputs", root / "store"
        setup = _child("--setup", str(inputs))
        print(f"setup: wrote 4 PTP parts + MUE CSV ({setup['mb']:.0f} MB) in {setup['seconds']:.1f} s "
              f"(peak RSS {setup['peak_rss_mb']:.0f} MB)")
        parts, mue_csv = setup["ptp"], setup["mue"]

        steps = [("RVU25D + ZIP5", [str(RVU_FOLDER), str(ZIP5_FOLDER)]),
                 ("PTP 4 parts + MUE", [*parts, mue_csv])]
        total_load = total_wall = total_cpu = 0.0
        for label, paths in steps:
            wall_start = time.perf_counter()
            figures = run_load(str(store), paths) if args.in_process else _child("--child", str(store), *paths)
            wall = time.perf_counter() - wall_start
            total_load += figures["load_s"]
            total_cpu += figures["load_cpu_s"]
            total_wall += wall
            rows = ", ".join(f"{t} {r} {n:,}" for t, r, n in figures["published"])
            print(f"{label:<18} load_paths {figures['load_s']:5.1f} s (cpu {figures['load_cpu_s']:5.1f} s) | "
                  f"import {figures['import_s']:4.1f} s (cpu {figures['import_cpu_s']:4.1f} s) | "
                  f"process wall {wall:5.1f} s | "
                  f"peak RSS {figures['peak_rss_mb']:5.0f} MB | {rows}")
        verdict = "OK" if total_wall < TARGET_SECONDS else "OVER"
        print(f"{'total':<18} load_paths {total_load:5.1f} s (cpu {total_cpu:5.1f} s) | "
              f"process wall {total_wall:5.1f} s (target < {TARGET_SECONDS:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
