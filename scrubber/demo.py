"""`scrubber demo`: load the bundled sample release, scrub the bundled sample claims, show the result.

Everything comes from data/ (small samples of real CMS files in their published formats), so the
demo needs no network and no configuration.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scrubber.errors import ScrubberError
from scrubber.settings import PROJECT_DIR, Settings
from scrubber.store import LocalStore

DEMO_CODES = ("99213", "20553", "71046")


def data_dir() -> Path:
    for candidate in (PROJECT_DIR / "data", Path(__file__).resolve().parent / "data"):
        if (candidate / "reference").is_dir():
            return candidate
    raise ScrubberError("the bundled sample data (data/) is missing from this installation")


def run_demo(store_dir: Path, *, console: Console, run_date: date | None = None) -> dict:
    """Load the sample reference, price a few codes, scrub the sample claims; returns the run summary."""
    from scrubber.pipeline import run_scrub
    from scrubber.pricing import price_code
    from scrubber.reference.catalog import ReferenceSet
    from scrubber.reference.loader import load_paths
    from scrubber.report.console import render_summary
    from scrubber.rules import RuleBook

    data = data_dir()
    store = LocalStore(store_dir)
    settings = Settings.from_env(store=str(store_dir))
    ref_dirs = sorted(p for p in (data / "reference").iterdir() if p.is_dir())
    console.print(f"[bold]1. Loading the sample CMS reference release[/] into {store.url}")
    report = load_paths(store, ref_dirs, partial=True)
    loaded = sorted({p["release"] for p in report.published} | set(report.unchanged))
    console.print(f"   releases in force: {', '.join(loaded)}")

    console.print("[bold]2. Pricing a few codes[/] (national, 2025-11-15)")
    ref = ReferenceSet(store)
    rules = RuleBook.load(settings.rules_dir)
    t = Table()
    for col in ("code", "status", "non-facility", "facility", "global", "MUE", "PTP edits"):
        t.add_column(col)
    for code in DEMO_CODES:
        r = price_code(ref, code, dos=date(2025, 11, 15), pos_table=rules.pos, settings=settings)
        t.add_row(code, str(r["status_code"]), f"${r['nonfacility_amount']}", f"${r['facility_amount']}",
                  str(r["global_days"]), str(r["mue_value"]), str(len(r["ptp_edits"])))
    console.print(t)

    claims = sorted((data / "claims").glob("*.csv"))
    claims = [c for c in claims if "answer_key" not in c.name]
    console.print(f"[bold]3. Scrubbing[/] {', '.join(c.name for c in claims)}")
    result = run_scrub(store, claims, run_date=run_date or date.today(), settings=settings,
                       progress=lambda msg: console.print(f"   {msg}"))
    render_summary(console, result.summary)
    return result.summary
