"""The `scrubber` command line (Typer + Rich). Thin: every command calls one library function."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from scrubber.errors import ReferenceNotFound, ScrubberError
from scrubber.settings import Settings
from scrubber.store import Store, open_store

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Batch claim scrubbing for Medicare professional claims (CMS-1500 / 837P).")
reference_app = typer.Typer(no_args_is_help=True, help="Load and list CMS reference releases (RVU, GPCI, NCCI, MUE).")
app.add_typer(reference_app, name="reference")
console = Console()
err = Console(stderr=True)


class State:
    settings: Settings = Settings()

    @property
    def store(self) -> Store:
        return open_store(self.settings.store)


state = State()


@app.callback()
def main(store: Annotated[str | None, typer.Option(
             "--store", help="A folder or s3://bucket/prefix (default: $SCRUBBER_STORE or ./.scrubber)")] = None,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    state.settings = Settings.from_env(store=store)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    raise typer.Exit(code=2)


def _parse_date(text: str | None) -> date:
    if not text:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (use YYYY-MM-DD)") from None


@reference_app.command("load")
def reference_load(paths: Annotated[list[Path], typer.Argument(help="Release zips, folders or single CMS files")],
                   release: Annotated[str | None, typer.Option(help="Override the release id")] = None,
                   partial: Annotated[bool, typer.Option("--partial", help="Accept a subset of a release (samples): "
                                                         "row-count bounds are not enforced")] = False) -> None:
    """Load CMS files, each detected by content. A file that fails validation is not published."""
    from scrubber.reference.loader import load_paths

    try:
        report = load_paths(state.store, paths, release=release, partial=partial)
    except ScrubberError as exc:
        _fail(exc)
        return
    table = Table(title="Reference data loaded", show_lines=False)
    for col in ("release", "rev", "table", "rows", "effective", "source"):
        table.add_column(col, overflow="fold")
    for p in report.published:
        eff = f"{p['effective_from']} .. {p.get('effective_to') or 'open'}"
        table.add_row(p["release"], str(p["revision"]), p["table"], f"{p['rows']:,}", eff, p["source"])
    if report.published:
        console.print(table)
    for rel in report.unchanged:
        console.print(f"{rel}: already loaded with identical content (nothing to do)")
    for w in report.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    for s in report.skipped:
        console.print(f"[dim]skipped {s}[/]", highlight=False)


@reference_app.command("list")
def reference_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Releases in the store with their effective periods."""
    from scrubber.reference.catalog import Catalog

    catalog = Catalog.load(state.store)
    rows = [{"kind": e.kind, "release": e.release, "revision": e.revision, "status": e.status,
             "effective_from": e.effective_from.isoformat(),
             "effective_to": e.effective_to.isoformat() if e.effective_to else None,
             "conversion_factor": e.conversion_factor,
             "tables": {t: v["rows"] for t, v in e.tables.items()}} for e in catalog.entries]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Reference releases in {state.store.url}")
    for col in ("kind", "release", "rev", "status", "in force", "CF", "tables"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], r["release"], str(r["revision"]), r["status"],
                      f"{r['effective_from']} .. {r['effective_to'] or 'open'} (excl.)", r["conversion_factor"] or "",
                      ", ".join(f"{t} {n:,}" for t, n in r["tables"].items()))
    console.print(table)


@app.command()
def price(hcpcs: Annotated[str, typer.Argument(help="CPT/HCPCS code, e.g. 20553")],
          date_: Annotated[str | None, typer.Option("--date", help="Date of service (default today)")] = None,
          pos: Annotated[str | None, typer.Option(help="Place of service, 2 digits")] = None,
          modifier: Annotated[str, typer.Option(help="Modifier, e.g. 26, TC, 50")] = "",
          locality: Annotated[str | None, typer.Option(help="MAC-LOC, e.g. 01112-05")] = None,
          zip_: Annotated[str | None, typer.Option("--zip", help="ZIP5 of the place of service")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False) -> None:
    """The per-code calculator: RVUs, GPCIs, conversion factor, amounts, status, global days, MUE, PTP edits."""
    from scrubber.pricing import price_code
    from scrubber.reference.catalog import ReferenceSet
    from scrubber.rules import RuleBook

    try:
        rules = RuleBook.load(state.settings.rules_dir)
        result = price_code(ReferenceSet(state.store), hcpcs.strip().upper(), dos=_parse_date(date_),
                            modifier=modifier.strip().upper(), pos=pos, locality=locality, zip5=zip_,
                            pos_table=rules.pos, settings=state.settings)
    except ScrubberError as exc:
        _fail(exc)
        return
    if as_json:
        print(json.dumps(result, default=_json_default, indent=2))
        return
    from scrubber.report.console import render_price

    render_price(console, result)


def _json_default(value: object) -> object:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@app.command()
def scrub(files: Annotated[list[Path] | None, typer.Argument(help="Claim files (CSV, Parquet, X12 837P); none = "
                                                                 "everything under the store's incoming/")] = None,
          out: Annotated[Path | None, typer.Option("--out", help="Write the report here instead of the store's "
                                                                 "reports/<run_date>/<run_id>/")] = None,
          run_date: Annotated[str | None, typer.Option("--run-date", help="Run date (default today)")] = None) -> None:
    """Scrub claim files and write the exception report. Exit 0 when the run completed, whatever it flagged."""
    from scrubber.report.console import render_summary

    try:
        summary = _scrub(files or [], out, _parse_date(run_date))
    except ScrubberError as exc:
        _fail(exc)
        return
    render_summary(console, summary)


def _scrub(files: list[Path], out: Path | None, run_date: date) -> dict:
    import os
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from scrubber.intake_queue import claim_incoming, finish_claimed
    from scrubber.orchestration import quarantined_files
    from scrubber.pipeline import run_scrub

    store = state.store
    claimed: list[str] = []
    sources: list = list(files)
    if not files:
        claimed = claim_incoming(store, run_date, claimer=f"cli-{os.getpid()}-{int(time.time())}")
        if not claimed:
            raise ScrubberError(f"no claim files given and nothing in {store.url}/incoming/")
        sources = claimed
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("starting", total=None)
        result = run_scrub(store, sources, run_date=run_date, out_dir=out, settings=state.settings,
                           progress=lambda msg: progress.update(task, description=msg))
    if claimed:  # inputs from incoming/: archive them, or quarantine files rejected whole
        rejected = quarantined_files(result.summary.get("files") or [], claimed)
        finish_claimed(store, claimed, run_date=run_date.isoformat(), run_id=result.spec.run_id, quarantined=rejected)
    return result.summary


@app.command()
def generate(out: Annotated[Path, typer.Argument(help="Claim file to write (.csv or .parquet)")],
             lines: Annotated[int, typer.Option(help="Number of claim lines")] = 1000,
             seed: Annotated[int, typer.Option(help="Random seed")] = 0,
             date_: Annotated[str | None, typer.Option("--date", help="A date in the release to draw from")] = None,
             answer_key: Annotated[Path | None, typer.Option(help="Where to write the answer key CSV")] = None) -> None:
    """Write a realistic claim file drawn from the loaded release, with seeded problems and an answer key."""
    from scrubber.generate import generate_claims, write_answer_key, write_claims
    from scrubber.reference.catalog import ReferenceSet

    ref = ReferenceSet(state.store)
    try:
        latest = ref.releases("rvu")
        if not date_ and not latest:
            raise ScrubberError("no RVU release loaded: run `scrubber reference load` first")
        rvu = ref.release_for("rvu", _parse_date(date_)) if date_ else latest[-1]
        start = rvu.effective_from
        # the releases in force on the first date; dates stop where the first of them ends
        in_force = {"rvu": rvu}
        for kind in ("ptp", "mue"):
            with contextlib.suppress(ReferenceNotFound):
                in_force[kind] = ref.release_for(kind, start)
        end = min(e.effective_to for e in in_force.values() if e.effective_to) - timedelta(days=1)
        tables = {kind: ref.table("pprrvu" if kind == "rvu" else kind, e.release) for kind, e in in_force.items()}
        gen = generate_claims(lines, pprrvu=tables["rvu"], ptp=tables.get("ptp"), mue=tables.get("mue"),
                              seed=seed, start=start, end=end)
    except ScrubberError as exc:
        _fail(exc)
        return
    fmt = "parquet" if out.suffix.lower() == ".parquet" else "csv"
    write_claims(gen, out, fmt=fmt)
    key_path = answer_key or out.with_name(out.stem + "_answer_key.csv")
    write_answer_key(gen, key_path)
    console.print(f"wrote {len(gen.claims):,} lines to {out} and {len(gen.answer_key):,} seeded problems to {key_path}")


@app.command()
def demo(store: Annotated[Path, typer.Option(help="Local store folder for the demo")] = Path(".scrubber-demo")) -> None:
    """Zero-configuration end-to-end run on the bundled sample data; prints where the report is."""
    from scrubber.demo import run_demo

    try:
        run_demo(store, console=console)
    except ScrubberError as exc:
        _fail(exc)


if __name__ == "__main__":  # pragma: no cover
    app()
