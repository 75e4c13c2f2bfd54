"""run_scrub edge cases that span modules (the answer-key test covers the main path)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from scrubber.pipeline import RunResult, run_scrub
from scrubber.settings import Settings
from scrubber.store import LocalStore

CLAIMS = """claim_id,line_number,patient_id,rendering_npi,service_date,hcpcs,units,place_of_service,charge_amount
C1,1,P1,1234567893,2024-06-03,99213,1,11,120.00
C2,1,P2,1234567893,2025-11-14,99213,1,11,120.00
"""


def _scrub_sample(rvu25d_store: LocalStore, tmp_path: Path) -> RunResult:
    """run_scrub of CLAIMS in a fresh store holding the RVU25D reference data; the report in tmp_path/report."""
    root = tmp_path / "store"
    shutil.copytree(rvu25d_store.root / "reference", root / "reference")
    claims = tmp_path / "claims.csv"
    claims.write_text(CLAIMS)
    return run_scrub(LocalStore(root), [claims], run_date=date(2026, 1, 5), out_dir=tmp_path / "report",
                     settings=Settings.from_env(store=str(root)))


def test_a_line_no_loaded_release_covers_is_flagged_and_the_rest_scrubbed(rvu25d_store, tmp_path: Path) -> None:
    """A line dated before every loaded release has no RVU release: it must be flagged, not crash the run."""
    result = _scrub_sample(rvu25d_store, tmp_path)
    assert result.summary["counts"]["scrubbed_lines"] == 2
    lines = result.lines.set_index("claim_id")
    assert lines.loc["C1", "expected_allowed"] != lines.loc["C1", "expected_allowed"]  # NaN: nothing to price
    assert lines.loc["C2", "expected_allowed"] > 0
    old = result.flags[result.flags["claim_id"] == "C1"]
    assert len(old) and (old["severity"] != "info").any(), old[["rule_id", "severity"]].to_dict("records")


def test_an_error_writing_lines_on_the_side_thread_reaches_the_run(tmp_path: Path) -> None:
    """A shard's lines are written on a side thread; its failure must stop the run, never be lost."""
    import pandas as pd

    from scrubber.pipeline import RunOutput, RunSpec

    spec = RunSpec("20260105-sidethread", date(2026, 1, 5), [], "reports/x/")
    first = pd.DataFrame({"line_uid": [0], "service_date": pd.to_datetime(["2025-11-14"]), "units": [1.0]})
    clash = first.assign(line_uid=1, units="one")  # text where the first shard had numbers: not one column
    with pytest.raises(ValueError, match="units"), RunOutput(LocalStore(tmp_path / "store"), spec) as output:
        output.add_lines(first)
        output.add_lines(clash)
        output.lines()
    assert not list((tmp_path / "store").rglob("*.parquet"))  # nothing half-written reaches the store


def test_history_still_being_encoded_when_the_report_is_written_must_succeed_before_its_summary(
        rvu25d_store, tmp_path: Path, monkeypatch) -> None:
    """History is encoded on its own thread, after lines.parquet, while the report is written; if it
    fails, the run fails with no summary.json (the report never counts as written) and no history."""
    from scrubber.history import HistoryWriter

    def broken(self, _lines):
        raise OSError("history disk full")

    monkeypatch.setattr(HistoryWriter, "add", broken)
    with pytest.raises(OSError, match="history disk full"):
        _scrub_sample(rvu25d_store, tmp_path)
    assert not (tmp_path / "report" / "summary.json").exists()
    assert not list((tmp_path / "store").rglob("history/**/*.parquet"))


def test_an_error_in_a_family_checked_beside_pricing_reaches_the_run(rvu25d_store, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """The families that need no pricing are checked on a side thread (CheckPlan); a check that fails
    there stops the run with the family named, and leaves no report."""
    from scrubber.checks import units

    def broken(_ctx):
        raise RuntimeError("units check broke")

    monkeypatch.setattr(units, "check", broken)
    with pytest.raises(RuntimeError, match="units check broke") as failure:
        _scrub_sample(rvu25d_store, tmp_path)
    assert any("check family 'units'" in note for note in failure.value.__notes__)
    assert not (tmp_path / "report" / "summary.json").exists()


def test_the_workbook_leaves_out_info_flags_past_the_setting_and_the_flag_files_keep_them(
        rvu25d_store, tmp_path: Path) -> None:
    """settings.xlsx_info_rows reaches the workbook of a run; flags.csv still has every flag."""
    import csv

    import openpyxl

    root = tmp_path / "store"
    shutil.copytree(rvu25d_store.root / "reference", root / "reference")
    claims = tmp_path / "claims.csv"
    claims.write_text(CLAIMS + "C3,1,P3,1234567893,2025-11-14,99213,1,22,120.00\n"
                               "C4,1,P4,1234567893,2025-11-14,99214,1,22,150.00\n")
    result = run_scrub(LocalStore(root), [claims], run_date=date(2026, 1, 5), out_dir=tmp_path / "report",
                       settings=Settings.from_env(store=str(root), xlsx_info_rows=0))
    with open(tmp_path / "report" / "flags.csv", newline="") as fh:
        severities = [row["severity"] for row in csv.DictReader(fh)]
    n_info = severities.count("info")
    assert n_info >= 2 and len(severities) > n_info, severities
    sheet = openpyxl.load_workbook(tmp_path / "report" / "exceptions.xlsx")["Flags"]
    column = [c.value for c in sheet[1]].index("Severity")
    shown = [row[column] for row in sheet.iter_rows(min_row=2, values_only=True) if row[column] is not None]
    assert shown and "info" not in shown and len(shown) == len(severities) - n_info
    assert f"none of the {n_info} info flags" in sheet.cell(row=len(shown) + 2, column=1).value
    assert result.summary["counts"]["flags_by_severity"]["info"] == n_info
