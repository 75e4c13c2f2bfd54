"""Medically unlikely edits (MUE), billing-domain 5.

- MAI 1 (claim-line edit): a line's units above the MUE value -> MUE-LINE (the whole line denies).
- MAI 2/3 (date-of-service edits): units of the code summed per patient + DOS + provider across all
  lines and claims, this batch *and* lines sent in earlier batches (history) -> MUE-DOS on every
  current-batch line of the code that day when the sum is above the value (all units of the code on
  the claim deny; history lines count but are never flagged: they were already adjudicated).
- A code without a published MUE in the release in force -> MUE-NONE (info) when units > 1 (some
  MUE values are confidential; "no published MUE" is not "passes").

History lines that are earlier copies of a batch line (same claim id and line number) are not
counted again: the resend is reported by DUP-HISTORY, and counting it twice would double the units.
The provider of "same provider" is ``settings.provider_key`` (rendering NPI by default).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.engine import (
    batch_code_ints,
    code_ints,
    compact_codes,
    concat_results,
    empty_result,
    format_combinations,
    make_result,
    member,
    reference_rows,
    same_day_keys,
    sorted_group_ids,
    take_rows,
    text_values,
)

FAMILY = "units"
#: reads claim columns, the MUE table and each line's mue_release, nothing pricing adds: a run checks
#: it beside the pricing
READS_PRICING = False
MAI_TEXT: dict[int, str] = {1: "MAI 1: line edit", 2: "MAI 2: date-of-service edit, policy (absolute)",
                            3: "MAI 3: date-of-service edit, clinical (appealable)"}


def _units(frame: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(frame["units"], errors="coerce").fillna(0.0).to_numpy(dtype=float)


def _num(v: float) -> str:
    """Units as text: whole numbers without '.0'."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def check(ctx: CheckContext) -> pd.DataFrame:
    """MUE-LINE, MUE-DOS and MUE-NONE flags."""
    lines = ctx.lines
    if lines.empty:
        return empty_result()
    mue = ctx.mue if ctx.mue is not None else pd.DataFrame()
    uid = lines["line_uid"].to_numpy()
    units = _units(lines)
    rows = reference_rows(ctx, "mue_release", mue) if len(mue) else np.full(len(lines), -1, dtype=np.int64)
    found = rows >= 0
    value = np.full(len(lines), np.nan)
    mai = np.zeros(len(lines), dtype=np.int64)
    if found.any():
        value[found] = pd.to_numeric(mue["mue_value"], errors="coerce").to_numpy(dtype=float)[rows[found]]
        mai[found] = pd.to_numeric(mue["mai"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)[rows[found]]
    parts = []

    # MAI 1: each line on its own
    over1 = found & (mai == 1) & (units > value)
    if over1.any():
        detail = format_combinations(lambda v: f"MUE {_num(v)} per line; {MAI_TEXT[1]}", value[over1])
        parts.append(make_result(uid[over1], "MUE-LINE", detail=detail))

    # MAI 2/3: per patient + day + provider + code, batch plus history
    dos = found & np.isin(mai, [2, 3])
    if dos.any():
        parts.append(_date_of_service(ctx, dos, units, value, mai))

    # no published value (only worth saying when more than one unit is billed)
    none = ~found & (units > 1)
    if none.any():
        release = text_values(ctx, "mue_release")[none]
        detail = format_combinations(lambda r: f"not in MUE release {r}" if r
                                     else "no loaded MUE release covers this date of service", release)
        parts.append(make_result(uid[none], "MUE-NONE", detail=detail))
    return concat_results(parts)


def _date_of_service(ctx: CheckContext, dos: np.ndarray, units: np.ndarray, value: np.ndarray,
                     mai: np.ndarray) -> pd.DataFrame:
    lines = ctx.lines
    g_b, g_h = same_day_keys(ctx)
    codes_b = batch_code_ints(ctx)
    sel_b = np.flatnonzero(dos)
    hist = ctx.history
    h_sel = np.zeros(0, dtype=np.int64)
    codes_h = np.zeros(0, dtype=np.int64)
    in_group = np.flatnonzero(g_h >= 0) if hist is not None and len(g_h) else np.zeros(0, np.int64)
    if len(in_group):
        codes_h = code_ints(hist["hcpcs"].iloc[in_group])
    # dense (group, code) ids over the selected batch lines and the same-day history lines
    _, (kb, kh) = compact_codes(codes_b[sel_b], codes_h)
    n_codes = int(max(kb.max(initial=-1), kh.max(initial=-1))) + 2
    key_b = g_b[sel_b] * n_codes + (kb + 1)
    key_h = g_h[in_group] * n_codes + (kh + 1)
    keep_h = member(key_h, key_b)
    h_sel, key_h = in_group[keep_h], key_h[keep_h]
    if len(h_sel):
        keep = _not_resent(lines, hist, sel_b, key_b, h_sel, key_h)
        h_sel, key_h = h_sel[keep], key_h[keep]
    dense, n_keys = sorted_group_ids(np.concatenate([key_b, key_h]))
    d_b, d_h = dense[:len(sel_b)], dense[len(sel_b):]
    total_b = np.bincount(d_b, weights=units[sel_b], minlength=n_keys)
    units_h = pd.to_numeric(hist["units"], errors="coerce").fillna(0.0).to_numpy(dtype=float)[h_sel] \
        if len(h_sel) else np.zeros(0)
    total_h = np.bincount(d_h, weights=units_h, minlength=n_keys)
    total = total_b + total_h
    over = total[d_b] > value[sel_b]
    if not over.any():
        return empty_result()
    idx = sel_b[over]

    def describe(tot: float, tb: float, th: float, v: float, m: int) -> str:
        earlier = f", {_num(th)} sent earlier" if th > 0 else ""
        return f"{_num(tot)} units that day: {_num(tb)} in this batch{earlier}; MUE {_num(v)} per day; {MAI_TEXT[m]}"

    detail = format_combinations(describe, total[d_b[over]], total_b[d_b[over]], total_h[d_b[over]], value[idx],
                                 mai[idx])
    return make_result(lines["line_uid"].to_numpy()[idx], "MUE-DOS", detail=detail)


def _not_resent(lines: pd.DataFrame, hist: pd.DataFrame, sel_b: np.ndarray, key_b: np.ndarray, h_sel: np.ndarray,
                key_h: np.ndarray) -> np.ndarray:
    """Mask of history lines to count: not an earlier copy of a batch line of the same (day, code) group
    (same claim id and line number), and each history line once even if sent in several earlier runs."""
    if "claim_id" not in hist or "line_number" not in hist:
        return np.ones(len(h_sel), dtype=bool)
    b_rows = np.flatnonzero(member(key_b, key_h))   # batch lines whose (day, code) group has history
    h = pd.DataFrame({"key": key_h, "claim_id": take_rows(hist["claim_id"], h_sel).astype(str),
                      "line_number": pd.to_numeric(hist["line_number"], errors="coerce").to_numpy()[h_sel]})
    b = pd.DataFrame({"key": key_b[b_rows],
                      "claim_id": take_rows(lines["claim_id"], sel_b[b_rows]).astype(str),
                      "line_number": pd.to_numeric(lines["line_number"], errors="coerce").to_numpy()[sel_b[b_rows]]})
    resent = h.merge(b.drop_duplicates().assign(_b=True), on=["key", "claim_id", "line_number"], how="left")["_b"]
    repeat = h.duplicated(["key", "claim_id", "line_number"]).to_numpy()
    return ~(resent.notna().to_numpy() | repeat)
