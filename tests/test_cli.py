"""The public command line, as outside acceptance tests drive it (architecture 3.1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def scrubber(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("scrubber")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def store_2025_2026(tmp_path_factory: pytest.TempPathFactory, shared_ref: Path) -> Path:
    store = tmp_path_factory.mktemp("cli_store")
    rvu = shared_ref / "cms-rvu"
    p = scrubber("--store", str(store), "reference", "load", str(rvu / "RVU25D_2025_Oct"), str(rvu / "ZIP5_OCT2025"))
    assert p.returncode == 0, p.stderr
    assert "RVU25D" in p.stdout
    p = scrubber("--store", str(store), "reference", "load", str(rvu / "RVU26C_2026_Jul"))
    assert p.returncode == 0, p.stderr
    return store


def price(store: Path, *args: str) -> dict:
    p = scrubber("--store", str(store), "price", *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_price_20553_national_2025(store_2025_2026: Path) -> None:
    got = price(store_2025_2026, "20553", "--date", "2025-11-15")
    assert got["release"] == "RVU25D"
    assert str(got["nonfacility_amount"]) == "58.55" and str(got["facility_amount"]) == "40.11"
    assert got["status_code"] == "A" and got["global_days"] == "000"
    assert str(got["conversion_factor"]) == "32.3465"
    for field in ("hcpcs", "modifier", "date_of_service", "locality", "work_rvu", "pe_rvu_nonfacility",
                  "pe_rvu_facility", "mp_rvu", "gpci_work", "gpci_pe", "gpci_mp", "mue_value",
                  "mue_adjudication_indicator", "ptp_edits"):
        assert field in got


def test_price_20553_san_francisco(store_2025_2026: Path) -> None:
    got = price(store_2025_2026, "20553", "--date", "2025-11-15", "--locality", "01112-05")
    # GPCI2025 01112-05 San Francisco: work 1.088, PE 1.419, MP 0.445
    # NF (0.75*1.088 + 0.98*1.419 + 0.08*0.445) * 32.3465 = 72.52797 -> 72.53 ; F with PE 0.41 -> 46.37
    assert got["locality"] == "01112-05"
    assert [str(got[k]) for k in ("gpci_work", "gpci_pe", "gpci_mp")] == ["1.088", "1.419", "0.445"]
    assert str(got["nonfacility_amount"]) == "72.53" and str(got["facility_amount"]) == "46.37"


def test_price_by_zip_uses_the_zip5_locality(store_2025_2026: Path) -> None:
    got = price(store_2025_2026, "20553", "--date", "2025-11-15", "--zip", "10001")
    assert got["locality"] == "13202-01"  # ZIP5_OCT2025: NY 10001 -> carrier 13202, locality 01 (Manhattan)


def test_price_2026(store_2025_2026: Path) -> None:
    got = price(store_2025_2026, "20553", "--date", "2026-08-03")
    assert got["release"] == "RVU26C"
    assert str(got["nonfacility_amount"]) == "59.79" and str(got["facility_amount"]) == "40.75"


def test_price_uncovered_date_is_a_clear_error(store_2025_2026: Path) -> None:
    p = scrubber("--store", str(store_2025_2026), "price", "20553", "--date", "2024-05-01", "--json")
    assert p.returncode != 0
    assert "no rvu release covers date of service 2024-05-01" in p.stderr


def test_reference_list(store_2025_2026: Path) -> None:
    p = scrubber("--store", str(store_2025_2026), "reference", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert {"RVU25D", "RVU26C"} <= {r["release"] for r in rows}


def test_reference_load_unreadable_file_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "PPRRVU2025_Oct.csv"
    bad.write_bytes(b"\x00\x01\x02 binary")
    p = scrubber("--store", str(tmp_path / "s"), "reference", "load", str(bad))
    assert p.returncode != 0 and "PPRRVU2025_Oct.csv" in p.stderr


def test_generate_draws_from_the_releases_in_force(tmp_path: Path) -> None:
    store = tmp_path / "s"
    p = scrubber("--store", str(store), "reference", "load", "--partial", str(REPO / "data" / "reference"))
    assert p.returncode == 0, p.stderr
    out = tmp_path / "claims.csv"
    p = scrubber("--store", str(store), "generate", str(out), "--lines", "400", "--seed", "2")
    assert p.returncode == 0, p.stderr
    import pandas as pd

    claims = pd.read_csv(out, dtype=str)
    key = pd.read_csv(tmp_path / "claims_answer_key.csv", dtype=str)
    assert len(claims) == 400 and len(key) > 0
    dates = pd.to_datetime(claims["service_date"])
    # RVU25D, PTP-2025Q4 and MUE-2025Q4 are all in force from 2025-10-01 to 2025-12-31
    assert dates.min() >= pd.Timestamp("2025-10-01") and dates.max() <= pd.Timestamp("2025-12-31")
    assert set(key["rule_family"]) >= {"bundling", "units", "modifier25"}
