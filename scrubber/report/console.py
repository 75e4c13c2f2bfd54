"""Rich renderings for the terminal: the price calculator and the run summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _money(value: object) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"${float(value):,.2f}"


def render_price(console: Console, r: dict) -> None:
    """The per-code calculator, laid out the way billing staff read a fee-schedule page."""
    head = Table(title=f"{r['hcpcs']}{('-' + r['modifier']) if r.get('modifier') else ''}  "
                       f"{r.get('description') or ''}", show_header=False, title_justify="left")
    head.add_column("field", style="bold")
    head.add_column("value")
    head.add_row("Date of service", str(r.get("date_of_service")))
    head.add_row("Release", f"{r.get('release')}  (CF {r.get('conversion_factor')})")
    head.add_row("Status", f"{r.get('status_code')}: {r.get('status_meaning') or ''}")
    head.add_row("Locality", f"{r.get('locality')} {r.get('locality_name') or ''}")
    head.add_row("Global days", str(r.get("global_days")))
    head.add_row("MUE", f"{r.get('mue_value')} (MAI {r.get('mue_adjudication_indicator')})"
                 if r.get("mue_value") is not None else "no published MUE")
    console.print(head)

    rvus = Table(title="RVUs x GPCIs", title_justify="left")
    for col in ("component", "RVU (non-facility)", "RVU (facility)", "GPCI"):
        rvus.add_column(col, justify="right" if col != "component" else "left")
    rvus.add_row("Work", str(r.get("work_rvu")), str(r.get("work_rvu")), str(r.get("gpci_work")))
    rvus.add_row("Practice expense", str(r.get("pe_rvu_nonfacility")), str(r.get("pe_rvu_facility")),
                 str(r.get("gpci_pe")))
    rvus.add_row("Malpractice", str(r.get("mp_rvu")), str(r.get("mp_rvu")), str(r.get("gpci_mp")))
    console.print(rvus)

    amounts = Table(title="Expected Medicare allowed amount", title_justify="left")
    amounts.add_column("setting")
    amounts.add_column("amount", justify="right")
    amounts.add_row("Non-facility", _money(r.get("nonfacility_amount")))
    amounts.add_row("Facility", _money(r.get("facility_amount")))
    if r.get("pos"):
        amounts.add_row(f"POS {r['pos']} ({r.get('setting')})", _money(r.get("pos_amount")))
    console.print(amounts)

    edits = r.get("ptp_edits") or []
    if edits:
        t = Table(title=f"NCCI PTP edits in force ({r.get('ptp_release')}): {len(edits)}", title_justify="left")
        for col in ("column 1", "column 2", "modifier", "effective", "deleted", "rationale"):
            t.add_column(col)
        for e in edits[:40]:
            t.add_row(e["column_1"], e["column_2"], str(e["modifier_indicator"]), str(e.get("effective_date") or ""),
                      str(e.get("deletion_date") or ""), str(e.get("rationale") or ""))
        console.print(t)
        if len(edits) > 40:
            console.print(f"... and {len(edits) - 40} more (use --json for all)")
    elif r.get("ptp_release") is None:
        console.print("[dim]No NCCI PTP table loaded for this date.[/]")


def render_summary(console: Console, s: dict) -> None:
    """Lines, flags by family and severity, dollars, and where the report is."""
    counts = s.get("counts", {})
    dollars = s.get("dollars", {})
    t = Table(title=f"Scrub run {s.get('run_id')} ({s.get('run_date')})", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    t.add_row("Input rows", f"{counts.get('input_rows', 0):,}")
    t.add_row("Scrubbed lines", f"{counts.get('scrubbed_lines', 0):,}")
    t.add_row("Quarantined rows", f"{counts.get('quarantined_rows', 0):,}")
    t.add_row("Flagged lines", f"{counts.get('flagged_lines', 0):,}")
    t.add_row("Flags", f"{counts.get('flags', 0):,}")
    t.add_row("Expected allowed", _money(dollars.get("expected_allowed_total")))
    t.add_row("Dollars at risk", _money(dollars.get("amount_at_risk_total")))
    console.print(t)
    by_family = counts.get("flags_by_family") or {}
    if by_family:
        ft = Table(title="Flags by rule family", title_justify="left")
        ft.add_column("family")
        ft.add_column("flags", justify="right")
        ft.add_column("$ at risk", justify="right")
        at_risk = dollars.get("at_risk_by_family") or {}
        present = {fam: n for fam, n in by_family.items() if n}
        for fam, n in sorted(present.items(), key=lambda kv: -float(at_risk.get(kv[0]) or 0)):
            ft.add_row(fam, f"{n:,}", _money(at_risk.get(fam)))
        console.print(ft)
        sev = counts.get("flags_by_severity") or {}
        console.print("By severity: " + ", ".join(f"{k} {sev.get(k, 0):,}" for k in ("deny", "review", "info")))
    console.print(f"Report: [bold]{s.get('report_location')}[/]")
