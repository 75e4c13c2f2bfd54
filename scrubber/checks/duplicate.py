"""Duplicate lines, billing-domain 9.4.

Key: patient + date of service + HCPCS + the full modifier *set* (order ignored) + rendering NPI.
- DUP-BATCH: the second and later lines of a key within this batch (related = the first line in
  intake order).
- DUP-HISTORY: a key already sent in an earlier run (related = that history line; ``ctx.history``
  never holds lines of the current run). A line sent two nights running is the typical case.

A repeated key is legitimate when the modifier set carries a repeat or distinct-service modifier
(rules/modifiers.yaml groups ``repeat`` = 76/77/91 and ``x_modifiers`` = 59/XE/XS/XP/XU): those lines
are never flagged. Different anatomic modifiers (RT vs LT, F1 vs F2) give different modifier sets,
so they never share a key in the first place. Units and charge are not part of the key (a copy with
different units is still a duplicate service); the detail says whether the copy is exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scrubber.checks.context import CheckContext
from scrubber.checks.engine import (
    LineModifiers,
    batch_code_ints,
    code_ints,
    compact_codes,
    concat_results,
    empty_result,
    history_rows,
    line_modifiers,
    make_result,
    same_day_keys,
    take_rows,
)

FAMILY = "duplicate"
#: reads claim columns and history only, nothing pricing adds: a run checks it beside the pricing
READS_PRICING = False
#: duplicates are judged per rendering NPI (billing-domain 9.4), whatever settings.provider_key says
PROVIDER = "rendering_npi"
#: modifier groups (rules/modifiers.yaml) whose presence makes a repeated line legitimate
EXEMPT_GROUPS: tuple[str, ...] = ("repeat", "x_modifiers")


def _modset_ids(mods: LineModifiers, registry: dict[str, int]) -> np.ndarray:
    """Id of each line's sorted modifier set, shared between batch and history through ``registry``."""
    table = np.array([registry.setdefault(",".join(sorted(set(s))), len(registry)) for s in mods.sets],
                     dtype=np.int64)
    return table[mods.codes]


def _keys(g: np.ndarray, k: np.ndarray, m: np.ndarray, n_codes: int, n_sets: int) -> np.ndarray:
    if float(g.max(initial=0) + 1) * n_codes * n_sets < 2**62:
        return (g * n_codes + k) * n_sets + m
    return pd.factorize(pd.MultiIndex.from_arrays([g, k, m]))[0].astype(np.int64)  # pragma: no cover


def _claim_line(frame: pd.DataFrame, rows: np.ndarray) -> pd.Series:
    claim = pd.Series(take_rows(frame["claim_id"], rows), dtype=object).astype(str)
    line = pd.Series(take_rows(frame["line_number"], rows), dtype=object).astype(str)
    return "claim " + claim + " line " + line


def check(ctx: CheckContext) -> pd.DataFrame:
    """DUP-BATCH and DUP-HISTORY flags."""
    lines = ctx.lines
    if lines.empty:
        return empty_result()
    rb = ctx.rules
    exempt_mods = rb.modifier_set(*EXEMPT_GROUPS)
    g_b, g_h = same_day_keys(ctx, PROVIDER)
    mods_b = line_modifiers(ctx)
    exempt = mods_b.any_of(exempt_mods)
    registry: dict[str, int] = {}
    m_b = _modset_ids(mods_b, registry)
    codes_b = batch_code_ints(ctx)

    hist = ctx.history
    h_rows = np.flatnonzero(g_h >= 0) if hist is not None and len(g_h) else np.zeros(0, np.int64)
    h_sub = history_rows(ctx, h_rows) if len(h_rows) else None
    if h_sub is not None:
        codes_h = code_ints(h_sub["hcpcs"])
        m_h = _modset_ids(LineModifiers(h_sub), registry)
    else:
        codes_h = m_h = np.zeros(0, np.int64)
    _, (k_b, k_h) = compact_codes(codes_b, codes_h)
    n_codes = int(max(k_b.max(initial=-1), k_h.max(initial=-1))) + 2
    k_b, k_h = k_b + 1, k_h + 1   # -1 (no code) -> 0
    key_b = _keys(g_b, k_b, m_b, n_codes, len(registry))
    key_h = _keys(g_h[h_rows], k_h, m_h, n_codes, len(registry)) if len(h_rows) else np.zeros(0, np.int64)

    parts = []
    cand = np.flatnonzero(~exempt)
    uid = lines["line_uid"].to_numpy()

    # within the batch: first line (intake order) of each key stays, later ones are flagged
    order = cand[np.argsort(key_b[cand], kind="stable")]   # stable: intake order within a key
    ks = key_b[order]
    first = np.concatenate([[True], ks[1:] != ks[:-1]]) if len(ks) else np.zeros(0, bool)
    first_pos = np.maximum.accumulate(np.where(first, np.arange(len(ks)), 0)) if len(ks) else ks
    dup = ~first
    if dup.any():
        rows, rel_rows = order[dup], order[first_pos[dup]]
        same_units = (pd.to_numeric(lines["units"], errors="coerce").to_numpy()[rows]
                      == pd.to_numeric(lines["units"], errors="coerce").to_numpy()[rel_rows])
        if "charge_amount" in lines:
            ch = pd.to_numeric(lines["charge_amount"], errors="coerce").to_numpy(dtype=float)
            same_charge = (ch[rows] == ch[rel_rows]) | (np.isnan(ch[rows]) & np.isnan(ch[rel_rows]))
        else:
            same_charge = np.ones(len(rows), bool)
        exact = np.where(same_units & same_charge, ", an exact copy",
                         np.where(same_units, ", different charge", ", different units"))
        detail = "same service as " + _claim_line(lines, rel_rows) + pd.Series(exact, dtype=str)
        parts.append(make_result(uid[rows], "DUP-BATCH", related_line_uid=uid[rel_rows],
                                 detail=detail.to_numpy(dtype=object)))

    # against earlier runs
    if h_sub is not None and len(cand):
        run = (h_sub["run_id"].astype("str").to_numpy(dtype=object) if "run_id" in h_sub
               else np.full(len(h_rows), "", dtype=object))
        h_uid = pd.to_numeric(h_sub["line_uid"], errors="coerce").to_numpy() if "line_uid" in h_sub else None
        # earliest run first, so the reference is the first time the service was sent
        h_order = np.lexsort((np.arange(len(h_rows)), run.astype(str), key_h))
        hk = key_h[h_order]
        h_first = h_order[np.concatenate([[True], hk[1:] != hk[:-1]])]
        hit = pd.Index(key_h[h_first]).get_indexer(key_b[cand])
        found = hit >= 0
        if found.any():
            rows = cand[found]
            hrow = h_first[hit[found]]
            detail = ("sent in run " + pd.Series(run[hrow], dtype=str) + " as "
                      + _claim_line(h_sub, hrow))
            parts.append(make_result(uid[rows], "DUP-HISTORY",
                                     related_line_uid=h_uid[hrow] if h_uid is not None else None,
                                     related_source="history", related_run_id=run[hrow],
                                     detail=detail.to_numpy(dtype=object)))
    return concat_results(parts)
