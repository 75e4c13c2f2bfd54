"""report.html: the morning report as one self-contained page.

Inline CSS, charts drawn as inline SVG here in Python: no script, no web font, no image, no link to
anything outside the file, so the page reads the same opened from a laptop or straight from a bucket.
Every value that comes from claim files or reference data is HTML-escaped.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from scrubber.report.summary import line_risk_cents

#: chart colours (tests look for these pixels in a screenshot)
COLOR_FLAGS = "#1f77b4"
COLOR_RISK = "#d95f02"
COLOR_CODES = "#7570b3"
TOP_FLAGS = 50
TOP_CODES = 12

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1d2733;
background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;
padding-bottom:4px}.sub{color:#5b6776;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{border:1px solid #dde3ea;border-radius:6px;
padding:10px 14px;min-width:150px}.card .v{font-size:22px;font-weight:600}.card .k{font-size:12px;color:#5b6776}
.card.risk .v{color:#b34700}.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:24px}.chart{flex:1 1 520px}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{border-bottom:1px solid #e8ecf0;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#eef3f8;position:sticky;top:0}td.n,th.n{text-align:right;
white-space:nowrap}.sev-deny{color:#b00020;font-weight:600}.sev-review{color:#8a5a00;font-weight:600}
.sev-info{color:#44546a}.msg{max-width:420px}.muted{color:#5b6776}svg text{font-size:12px;fill:#1d2733}
"""


def _e(value: Any) -> str:
    """Escaped text of any value ('' for missing)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        return html.escape(value.date().isoformat())
    return html.escape(str(value), quote=True)


def _money(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if np.isnan(v) else f"${v:,.2f}"


def _int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return ""


def bar_chart(items: list[tuple[str, float]], *, color: str, title: str, money: bool = False,
              width: int = 560) -> str:
    """Horizontal bar chart as inline SVG (labels escaped; empty data -> a short note)."""
    if not items:
        return f'<div class="chart"><h3>{_e(title)}</h3><p class="muted">Nothing to show.</p></div>'
    label_w, value_w, bar_h, gap = 150, 90, 20, 8
    plot_w = width - label_w - value_w
    top = max(v for _, v in items) or 1.0
    height = len(items) * (bar_h + gap) + gap
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}">']
    for i, (label, value) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(2.0, plot_w * float(value) / top) if value > 0 else 0.0
        text = _money(value) if money else _int(value)
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h - 6}" text-anchor="end">{_e(label)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h - 6}">{_e(text)}</text>')
    parts.append("</svg>")
    return f'<div class="chart"><h3>{_e(title)}</h3>{"".join(parts)}</div>'


def _top_codes(flags: pd.DataFrame) -> list[tuple[str, float]]:
    if len(flags) == 0 or "hcpcs" not in flags.columns or "amount_at_risk" not in flags.columns:
        return []
    per_line = line_risk_cents(flags)
    if per_line.empty:
        return []
    keys = list(per_line.index.names)
    # the code of each line's first flag; only the key and code columns are deduplicated (not every column)
    codes = flags[[*keys, "hcpcs"]].drop_duplicates(keys).set_index(keys)["hcpcs"].astype(object)
    by_code = pd.Series(per_line.to_numpy(), index=codes.reindex(per_line.index).to_numpy()).groupby(level=0).sum()
    by_code = by_code[by_code > 0].sort_values(ascending=False).head(TOP_CODES)
    return [(str(k), round(int(v) / 100, 2)) for k, v in by_code.items()]


def _cards(summary: dict) -> str:
    c, d, rec = summary.get("counts", {}), summary.get("dollars", {}), summary.get("reconciliation", {})
    balanced = rec.get("balanced")
    rec_text = ('<span class="ok">reconciles</span>' if balanced else
                f'<span class="bad">does not reconcile ({_e(rec.get("difference"))} rows)</span>')
    cards = [
        ("risk", _money(d.get("amount_at_risk_total", 0)), "dollars at risk (each line once)"),
        ("", _int(c.get("flags", 0)), f"flags on {_int(c.get('flagged_lines', 0))} lines"),
        ("", _int(c.get("scrubbed_lines", 0)), "lines scrubbed"),
        ("", _int(c.get("quarantined_rows", 0)), "rows quarantined"),
        ("", _money(d.get("expected_allowed_total", 0)), "expected allowed, all lines"),
    ]
    body = "".join(f'<div class="card {cls}"><div class="v">{v}</div><div class="k">{_e(k)}</div></div>'
                   for cls, v, k in cards)
    return (f'<div class="cards">{body}</div><p class="sub">Input rows {_int(rec.get("input_rows", 0))} = '
            f'scrubbed {_int(rec.get("scrubbed_lines", 0))} + quarantined {_int(rec.get("quarantined_rows", 0))}: '
            f"{rec_text}.</p>")


def _breakdown(summary: dict, count_key: str, risk_key: str, title: str) -> str:
    counts = summary.get("counts", {}).get(count_key, {}) or {}
    risks = summary.get("dollars", {}).get(risk_key, {}) or {}
    keys = list(dict.fromkeys([*risks.keys(), *counts.keys()]))
    if not keys:
        return ""
    rows = "".join(f'<tr><td>{_e(k)}</td><td class="n">{_int(counts.get(k, 0))}</td>'
                   f'<td class="n">{_money(risks.get(k, 0))}</td></tr>' for k in keys)
    return (f'<table style="width:auto;min-width:360px"><tr><th>{_e(title)}</th><th class="n">Flags</th>'
            f'<th class="n">$ at risk</th></tr>{rows}</table>')


def _top_flags(flags: pd.DataFrame) -> str:
    if len(flags) == 0:
        return '<p class="muted">No flags: every scrubbed line passed.</p>'
    from scrubber.report.xlsx import flag_order

    top = flags.iloc[flag_order(flags)[:TOP_FLAGS]]      # the first rows of the report order, not a sorted copy
    rows = []
    for r in top.to_dict("records"):
        sev = str(r.get("severity", ""))
        claim = f"{_e(r.get('claim_id'))} / {_e(r.get('line_number'))}"
        code = _e(r.get("hcpcs")) + (f"-{_e(r.get('modifiers'))}" if r.get("modifiers") else "")
        rows.append(
            f'<tr><td class="n">{_money(r.get("amount_at_risk"))}</td><td class="sev-{_e(sev)}">{_e(sev)}</td>'
            f'<td>{_e(r.get("rule_id"))}<div class="muted">{_e(r.get("rule_family"))}</div></td><td>{claim}</td>'
            f'<td>{_e(r.get("patient_id"))}</td><td>{_e(r.get("service_date"))}</td><td>{code}</td>'
            f'<td class="msg">{_e(r.get("message"))}</td><td class="msg">{_e(r.get("fix"))}</td></tr>')
    more = (f'<p class="muted">Showing the top {TOP_FLAGS} of {len(flags):,} flags by dollars at risk; '
            "every deny and review flag is in exceptions.xlsx, and every flag in flags.csv.</p>"
            if len(flags) > TOP_FLAGS else "")
    return ('<table><tr><th class="n">$ at risk</th><th>Severity</th><th>Rule</th><th>Claim / line</th>'
            "<th>Patient</th><th>DOS</th><th>Code</th><th>What is wrong</th><th>How to fix</th></tr>"
            f'{"".join(rows)}</table>{more}')


def _quarantine(quarantine: pd.DataFrame) -> str:
    if quarantine is None or len(quarantine) == 0:
        return '<p class="muted">No input rows were rejected.</p>'
    parts = []
    if "reason" in quarantine.columns:
        counts = quarantine["reason"].astype(str).value_counts().head(20)
        parts.append('<table style="width:auto;min-width:360px"><tr><th>Reason</th><th class="n">Rows</th></tr>'
                     + "".join(f'<tr><td>{_e(k)}</td><td class="n">{_int(v)}</td></tr>' for k, v in counts.items())
                     + "</table>")
    cols = [c for c in ("file", "source_file", "row", "source_row", "field", "reason") if c in quarantine.columns]
    if cols:
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
                       for row in quarantine[cols].head(20).itertuples(index=False))
        parts.append(f'<h3>First rows</h3><table><tr>{head}</tr>{body}</table>')
    if len(quarantine) > 20:
        parts.append(f'<p class="muted">{len(quarantine):,} rows in quarantine.csv.</p>')
    return "".join(parts)


def build_html(flags: pd.DataFrame, summary: dict, quarantine: pd.DataFrame | None = None) -> str:
    """The report page as a string."""
    counts = summary.get("counts", {}).get("flags_by_family", {}) or {}
    risks = summary.get("dollars", {}).get("at_risk_by_family", {}) or {}
    fam_counts = sorted(((k, float(v)) for k, v in counts.items() if v), key=lambda kv: -kv[1])
    fam_risk = sorted(((k, float(v)) for k, v in risks.items() if v), key=lambda kv: -kv[1])
    releases = summary.get("reference_releases", {}) or {}
    rel_rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(', '.join(v) if isinstance(v, list) else v)}</td></tr>"
                       for k, v in releases.items())
    timings = summary.get("timings", {}) or {}
    timing_text = ", ".join(f"{_e(k)} {float(v):.1f} s" for k, v in timings.items())
    files = ", ".join(_e(f) for f in summary.get("files", []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Claim scrub exceptions {_e(summary.get("run_date"))}</title><style>{_CSS}</style></head>
<body>
<h1>Claim scrub exceptions</h1>
<div class="sub">Run {_e(summary.get("run_id"))} &middot; {_e(summary.get("run_date"))}</div>
{_cards(summary)}
<h2>Where the money is</h2>
<div class="charts">
{bar_chart(fam_risk, color=COLOR_RISK, title="Dollars at risk by rule family", money=True)}
{bar_chart(fam_counts, color=COLOR_FLAGS, title="Flags by rule family")}
</div>
<div class="charts">
{bar_chart(_top_codes(flags), color=COLOR_CODES, title="Codes with the most dollars at risk", money=True)}
<div class="chart"><h3>By severity</h3>{_breakdown(summary, "flags_by_severity", "at_risk_by_severity", "Severity")}
<h3>By payer</h3>{_breakdown(summary, "flags_by_payer", "at_risk_by_payer", "Payer")}</div>
</div>
<h2>Top flags</h2>
{_top_flags(flags)}
<h2>Quarantine</h2>
{_quarantine(quarantine if quarantine is not None else pd.DataFrame())}
<h2>Reference data and run</h2>
<table style="width:auto;min-width:360px"><tr><th>Kind</th><th>Releases</th></tr>{rel_rows}</table>
<p class="muted">{_e(summary.get("dollars", {}).get("at_risk_basis", ""))}</p>
<p class="muted">{f"Timings: {timing_text}." if timing_text else ""} {f"Files: {files}." if files else ""}</p>
</body></html>
"""
