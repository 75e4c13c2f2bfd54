"""Benchmark claim intake on a generated CSV (default 1,000,000 lines, 0.1% bad rows).

    python bench/bench_intake.py [--rows N] [--bad-fraction F] [--keep PATH]

Prints the time to generate, the wall and CPU time of one intake() (read + GX validation +
vectorised checks + normalisation), and lines per second. On a shared machine the CPU time is the
steadier figure. The first intake in a process also pays the one-off
Great Expectations import and suite build, reported separately as "warm-up".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scrubber.claims import intake
from scrubber.claims.validate import npi_check_digit_ok


def _valid_npis(count: int, rng: np.random.Generator) -> np.ndarray:
    """Random 9-digit stems completed with their NPI check digit."""
    stems = rng.integers(100_000_000, 999_999_999, size=count * 2)
    candidates = pd.Series([f"{s}{d}" for s in stems for d in range(10)], dtype="str")
    valid = candidates[npi_check_digit_ok(candidates)].to_numpy()
    return valid[:count]


def generate(path: Path, rows: int, bad_fraction: float, seed: int = 7) -> None:
    """Write a realistic claim CSV: ~4 lines per claim, a few hundred codes and NPIs, some bad rows."""
    rng = np.random.default_rng(seed)
    npis = _valid_npis(500, rng)
    codes = np.array(["99213", "99214", "99203", "20552", "20553", "96372", "J3301", "G0439", "36415",
                      "71046", "93000", "97110", "97140", "80053", "85025"])
    modifiers = np.array(["", "", "", "", "25", "59", "RT", "LT", "26", "TC", "25,59", "GP", "XU"])
    dates = pd.date_range("2025-01-01", "2025-12-31", freq="D").strftime("%Y-%m-%d").to_numpy()
    claim = np.arange(rows) // 4
    frame = pd.DataFrame({
        "claim_id": np.char.add("CLM", claim.astype(str)),
        "line_number": (np.arange(rows) % 4 + 1).astype(str),
        "patient_id": np.char.add("MBI", (claim % 50_000).astype(str)),
        "rendering_npi": npis[rng.integers(0, len(npis), rows)],
        "billing_npi": npis[rng.integers(0, 50, rows)],
        "payer": "medicare",
        "service_date": dates[rng.integers(0, len(dates), rows)],
        "hcpcs": codes[rng.integers(0, len(codes), rows)],
        "modifiers": modifiers[rng.integers(0, len(modifiers), rows)],
        "units": rng.integers(1, 4, rows).astype(str),
        "charge_amount": np.round(rng.uniform(20, 400, rows), 2).astype(str),
        "place_of_service": np.where(rng.random(rows) < 0.8, "11", "22"),
        "locality": "",
        "service_zip": np.where(rng.random(rows) < 0.5, "94110", "10001-1234"),
        "diagnosis_codes": "I10;E11.9",
    })
    bad = rng.random(rows) < bad_fraction
    kinds = rng.integers(0, 4, rows)
    frame.loc[bad & (kinds == 0), "rendering_npi"] = "1234567890"
    frame.loc[bad & (kinds == 1), "service_date"] = "2025-02-30"
    frame.loc[bad & (kinds == 2), "units"] = "-1"
    frame.loc[bad & (kinds == 3), "modifiers"] = "ZZ"
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bad-fraction", type=float, default=0.001)
    parser.add_argument("--keep", type=Path, help="write the generated CSV here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "claims.csv"
        t0 = time.perf_counter()
        generate(path, args.rows, args.bad_fraction)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {args.rows:,} lines ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s")

        warm = Path(tmp) / "warm.csv"
        generate(warm, 100, 0.0)
        t0 = time.perf_counter()
        intake([warm])
        print(f"warm-up (GX import + suite build, 100 lines): {time.perf_counter() - t0:.1f} s")

        t0, c0 = time.perf_counter(), time.process_time()
        result = intake([path])
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"intake: {elapsed:.2f} s wall, {cpu:.2f} s CPU (all threads) for {result.input_rows:,} input rows "
              f"({result.input_rows / elapsed:,.0f} lines/s); {len(result.lines):,} lines, "
              f"{len(result.quarantine):,} quarantined; reconciles={result.reconciles}")


if __name__ == "__main__":
    main()
