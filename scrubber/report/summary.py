"""summary.json: the machine-readable account of one scrub run (architecture 3.3).

Counts reconcile (every input row is a scrubbed line or a quarantined row), and dollar figures are
summed in exact cents before being turned into dollars.

Dollars at risk are deduplicated per line: a line with three flags is not three times at risk. The
run total counts each line once, at the largest amount at risk among its flags; the per-family,
per-severity and per-payer figures count each line once *within* that group (largest risk of the
line's flags in the group). A line flagged in two families therefore appears in both family figures,
so the family figures can add up to more than the total; the total is the one to quote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from scrubber.schemas import RULE_FAMILIES, SEVERITIES

#: reference release columns the pipeline adds to lines, by release kind
RELEASE_COLUMNS = {"rvu": "rvu_release", "ptp": "ptp_release", "mue": "mue_release"}


def _cents(values: pd.Series) -> np.ndarray:
    """Dollar floats (2-decimal amounts) to exact int64 cents; NaN -> 0."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.rint(np.nan_to_num(v, nan=0.0) * 100).astype(np.int64)


def _dollars(cents: int | np.integer) -> float:
    return round(int(cents) / 100, 2)


def _groups(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Group code per row and the group labels (first-seen order; a missing value is the group "(none)")."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, [("(none)" if pd.isna(u) else str(u)) for u in uniques]


def _line_codes(flags: pd.DataFrame) -> np.ndarray:
    """One code per distinct line of the flags (line_uid, else claim + line number)."""
    if "line_uid" in flags.columns:
        return pd.factorize(flags["line_uid"])[0]
    claim = pd.factorize(flags["claim_id"])[0].astype(np.int64)
    line = pd.factorize(flags["line_number"], use_na_sentinel=False)[0].astype(np.int64)
    return pd.factorize(claim * (int(line.max()) + 1 if len(line) else 1) + line)[0]


def _max_per_key(key: np.ndarray, cents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys in first-seen order, largest cents per key), sorted and vectorised."""
    order = np.lexsort((-cents, key))                   # by key, largest cents first
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    top = order[first]
    seen = np.argsort(np.unique(key, return_index=True)[1], kind="stable")  # keys back in first-seen order
    return key[top][seen], cents[top][seen]


def line_risk_cents(flags: pd.DataFrame, by: str | None = None) -> pd.Series:
    """Cents at risk per line (or per (group, line)): the largest amount_at_risk among the flags."""
    if len(flags) == 0 or "amount_at_risk" not in flags.columns:
        return pd.Series(dtype=np.int64)
    keys = ["line_uid"] if "line_uid" in flags.columns else ["claim_id", "line_number"]
    cents = _cents(flags["amount_at_risk"])
    line = _line_codes(flags).astype(np.int64)
    group, labels = _groups(flags[by]) if by else (np.zeros(len(flags), dtype=np.int64), [])
    width = max(len(labels), 1)
    key, top = _max_per_key(line * width + group, cents)
    first_row = np.unique(line, return_index=True)[1][key // width]   # a row of each line, for its key values
    index = {k: flags[k].to_numpy()[first_row] for k in keys}
    if by:
        index[by] = np.asarray(labels, dtype=object)[key % width]
    return pd.Series(top, index=pd.MultiIndex.from_arrays(list(index.values()), names=list(index))
                     if len(index) > 1 else pd.Index(next(iter(index.values())), name=keys[0]), name="_cents")


def _risk_by(flags: pd.DataFrame, column: str, line: np.ndarray, cents: np.ndarray) -> dict[str, float]:
    """Dollars at risk per group of ``column``, each line once per group (``line``: :func:`_line_codes`,
    ``cents``: each flag's amount at risk)."""
    if len(flags) == 0 or column not in flags.columns or "amount_at_risk" not in flags.columns:
        return {}
    group, labels = _groups(flags[column])
    key, top = _max_per_key(line * len(labels) + group, cents)
    totals = pd.Series(np.bincount(key % len(labels), weights=top, minlength=len(labels)).astype(np.int64),
                       index=labels)
    return {str(k): _dollars(v) for k, v in totals.sort_values(ascending=False, kind="stable").items()}


def _count_by(flags: pd.DataFrame, column: str, order: tuple[str, ...] = ()) -> dict[str, int]:
    if len(flags) == 0 or column not in flags.columns:
        return {k: 0 for k in order}
    group, labels = _groups(flags[column])
    counts = pd.Series(np.bincount(group, minlength=len(labels)), index=labels).sort_values(
        ascending=False, kind="stable")
    out = {k: int(counts.get(k, 0)) for k in order}
    out.update({str(k): int(v) for k, v in counts.items() if k not in out})
    return out


def _releases_in(lines: pd.DataFrame) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for kind, column in RELEASE_COLUMNS.items():
        if column in lines.columns:
            out[kind] = {str(v) for v in lines[column].dropna().unique()}  # distinct first: no per-line copy
    return out


@dataclass
class LineTotals:
    """What the summary needs from the scrubbed lines, added up shard by shard (a 10M-line run never
    holds all its lines at once): line count, expected allowed cents, lines without an amount, and the
    reference releases used."""

    lines: int = 0
    expected_cents: int = 0
    unknown_lines: int = 0
    releases: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, lines: pd.DataFrame) -> LineTotals:
        totals = cls(lines=len(lines))
        if "expected_allowed_cents" in lines.columns:
            col = pd.array(lines["expected_allowed_cents"], dtype="Int64")
            totals.expected_cents = int(col.sum(skipna=True)) if len(col) else 0
            totals.unknown_lines = int(col.isna().sum())
        elif "expected_allowed" in lines.columns:
            totals.expected_cents = int(_cents(lines["expected_allowed"]).sum())
            totals.unknown_lines = int(lines["expected_allowed"].isna().sum())
        totals.releases = _releases_in(lines)
        return totals

    def add(self, other: LineTotals) -> LineTotals:
        self.lines += other.lines
        self.expected_cents += other.expected_cents
        self.unknown_lines += other.unknown_lines
        for kind, values in other.releases.items():
            self.releases.setdefault(kind, set()).update(values)
        return self


def _merge_releases(used: dict[str, set[str]], extra: dict[str, Any] | None) -> dict[str, list[str]]:
    out = {kind: sorted(values) for kind, values in used.items()}
    for kind, value in (extra or {}).items():
        values = value if isinstance(value, list | tuple | set) else [value]
        out[kind] = sorted(set(out.get(kind, [])) | {str(v) for v in values if v})
    return out


def build_summary(*, run_id: str, run_date: date | str, input_rows: int, lines: pd.DataFrame | LineTotals,
                  flags: pd.DataFrame, quarantine: pd.DataFrame,
                  releases: dict[str, Any] | None = None, timings: dict[str, float] | None = None,
                  files: list[str] | None = None, extra: dict[str, Any] | None = None) -> dict:
    """The summary.json document (architecture 3.3 contract fields, plus breakdowns for the report).

    ``input_rows`` is what intake read; it must equal scrubbed lines + quarantined rows, which
    ``reconciliation.balanced`` states (a run that loses rows says so instead of hiding it).
    ``lines``: the scrubbed lines, or their :class:`LineTotals` when they were written shard by shard.
    """
    totals = lines if isinstance(lines, LineTotals) else LineTotals.of(lines)
    scrubbed = totals.lines
    quarantined = len(quarantine)
    line = _line_codes(flags).astype(np.int64) if len(flags) else np.zeros(0, dtype=np.int64)
    cents = _cents(flags["amount_at_risk"]) if "amount_at_risk" in flags.columns else np.zeros(len(flags), np.int64)
    flagged_lines = int(line.max()) + 1 if len(flags) else 0
    expected_cents, unknown_lines = totals.expected_cents, totals.unknown_lines
    at_risk_cents = int(_max_per_key(line, cents)[1].sum()) if len(flags) else 0
    quarantine_reasons: dict[str, int] = {}
    if quarantined and "reason" in quarantine.columns:
        quarantine_reasons = {str(k): int(v) for k, v in quarantine["reason"].astype(str).value_counts()
                              .head(50).items()}
    run_date_s = run_date.isoformat() if isinstance(run_date, date | datetime) else str(run_date)
    doc = {
        "run_id": run_id,
        "run_date": run_date_s,
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "counts": {
            "input_rows": int(input_rows),
            "scrubbed_lines": scrubbed,
            "quarantined_rows": quarantined,
            "flagged_lines": flagged_lines,
            "clean_lines": scrubbed - flagged_lines,
            "flags": len(flags),
            "flags_by_family": _count_by(flags, "rule_family", RULE_FAMILIES),
            "flags_by_severity": _count_by(flags, "severity", SEVERITIES),
            "flags_by_rule": _count_by(flags, "rule_id"),
            "flags_by_payer": _count_by(flags, "payer"),
            "lines_without_amount": unknown_lines,
            "quarantine_reasons": quarantine_reasons,
        },
        "reconciliation": {
            "balanced": int(input_rows) == scrubbed + quarantined,
            "input_rows": int(input_rows),
            "scrubbed_lines": scrubbed,
            "quarantined_rows": quarantined,
            "difference": int(input_rows) - scrubbed - quarantined,
        },
        "dollars": {
            "expected_allowed_total": _dollars(expected_cents),
            "amount_at_risk_total": _dollars(at_risk_cents),
            "at_risk_by_family": _risk_by(flags, "rule_family", line, cents),
            "at_risk_by_severity": _risk_by(flags, "severity", line, cents),
            "at_risk_by_payer": _risk_by(flags, "payer", line, cents),
            "at_risk_basis": "each line counted once, at the largest amount at risk among its flags; "
                             "per-group figures count a line once within the group",
        },
        "reference_releases": _merge_releases(totals.releases, releases),
        "timings": {k: round(float(v), 3) for k, v in (timings or {}).items()},
        "files": list(files or []),
    }
    if extra:
        doc.update(extra)
    return doc
