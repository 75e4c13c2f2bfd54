"""Bundling: NCCI procedure-to-procedure edits (billing-domain 4) and bundled codes (1.5, 9.3).

PTP (PTP-IND0 / PTP-IND1 / PTP-BYPASS). For every ordered pair of lines of the same patient, date of
service and provider (``settings.provider_key``), current batch and lines sent earlier that day
(history), look the pair up in the practitioner PTP table of the release in force on the date
(the column 2 line's ``ptp_release``). An edit applies when its indicator is not 9, it is effective on
the date and not deleted before it (deletion date inclusive unless ``settings.ptp_deletion_inclusive``
is false; billing-domain 4.2). Only column 2 lines of the current batch are flagged (a history line was
already adjudicated); the related line is the column 1 line.

- indicator 0: PTP-IND0 whatever the modifiers.
- indicator 1: bypassed (PTP-BYPASS, info: audit risk) when the column 2 line carries an
  NCCI-associated modifier, or 59/X{EPSU} is on the column 1 line and the date is on or after
  2019-07-01 (CR 11168), or the two lines carry different anatomic modifiers of one family
  (LT/RT, F1/F2, ...); otherwise PTP-IND1. When the bypass rests only on an anatomic modifier on the
  column 2 line the detail warns that some MACs also want a different one on the column 1 line
  (billing-domain 4.3, [UNVERIFIED]).
One flag per (line, rule): when a line is column 2 to several lines, the related line is a batch line
before a history line, then the earliest in intake order.

Performance (1M lines against the 2.5M-row table in well under a second of this family's time): HCPCS
are integers read straight from Arrow buffers (``engine.code_ints``); the PTP table is narrowed to
edits whose two codes occur in the batch/history; pairs are generated only among lines whose code can
be a column 1 (left) or a batch column 2 (right), by a counting sort on the same-day group; a packed
bitmap over (release, column 1, column 2) keeps only pairs that match an edit, and only those are
expanded to edit rows (hash lookups, CSR offsets) for the date test. No per-pair Python; details are
formatted once per distinct combination.

Other rules:
- BUNDLED-STATUS: status B or P (never separately paid).
- BUNDLED-SUPPLY: a supply/drug that rules/bundled.yaml lists as included in a procedure billed the
  same day by the same provider (batch or history); not repeated on a line that PTP-IND0/IND1 already
  denies (e.g. J2001 is also the column 2 code of real edits with 20552/20553/20610).
- STATUS-T-BUNDLED: a status T line when another line of the same patient/day/provider has status A,
  R or C (another fee-schedule-payable service; two T codes alone do not bundle each other).
- ADDON-NO-PRIMARY: an add-on code (PPRRVU global days ZZZ) with no other service of the same patient,
  date and provider (batch or sent earlier that day) that is not itself an add-on. NCCI pays an add-on
  only with its primary service by the same practitioner (billing-domain 4.4, CARC B15). Which primaries
  are acceptable for which add-on is NCCI's add-on code edit file, not loaded here: any other service
  counts (and a code without RVUs too), so this flags only the add-on that has nothing to go with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from scrubber.checks.code_status import STATUS_MEANING
from scrubber.checks.context import CheckContext
from scrubber.checks.engine import (
    NAT_DAY,
    LineModifiers,
    arrow_strings,
    batch_code_ints,
    cached,
    code_ints,
    code_text,
    concat_results,
    day_numbers,
    empty_result,
    factorized,
    format_combinations,
    history_rows,
    line_modifiers,
    lookup_sorted,
    make_result,
    member,
    release_codes,
    same_day_keys,
    take_rows,
    text_in,
    text_values,
    to_day,
)

FAMILY = "bundling"
#: since this date Part B accepts 59/X{EPSU} on either line of the pair (CR 11168, billing-domain 3.6/4.3)
EITHER_LINE_FROM = "2019-07-01"
BUNDLED_STATUSES: tuple[str, ...] = ("B", "P")
#: PPRRVU global days of an add-on code (billing-domain 1.7: always inside the primary's global period)
ADD_ON_GLOBAL = "ZZZ"
#: statuses that are "another payable fee-schedule service" for a status T line
PAYABLE_FOR_T: tuple[str, ...] = ("A", "R", "C")
#: anatomic modifier families: two lines are distinguished by different members of one family
ANATOMIC_FAMILIES: dict[str, frozenset[str]] = {
    "side": frozenset({"LT", "RT"}),
    "eyelid": frozenset({"E1", "E2", "E3", "E4"}),
    "finger": frozenset({"FA", *(f"F{i}" for i in range(1, 10))}),
    "toe": frozenset({"TA", *(f"T{i}" for i in range(1, 10))}),
    "coronary": frozenset({"LC", "LD", "LM", "RC", "RI"}),
}
PTP_RULES: tuple[str, ...] = ("PTP-IND0", "PTP-IND1", "PTP-BYPASS")


class _Elements:
    """Batch lines plus the history lines that share a batch same-day group, as flat arrays.

    Element i < n_batch is batch line i; element n_batch + j is history row ``h_rows[j]``.
    """

    def __init__(self, ctx: CheckContext) -> None:
        lines = ctx.lines
        self.n_batch = len(lines)
        g_b, g_h = same_day_keys(ctx)
        hist = ctx.history
        self.h_rows = np.flatnonzero(g_h >= 0) if hist is not None and len(g_h) else np.zeros(0, np.int64)
        self.hist = history_rows(ctx, self.h_rows) if len(self.h_rows) else None
        self.group = np.concatenate([g_b, g_h[self.h_rows]])
        codes_h = code_ints(self.hist["hcpcs"]) if self.hist is not None else np.zeros(0, np.int64)
        self.codes = np.concatenate([batch_code_ints(ctx), codes_h])
        days_h = day_numbers(self.hist["service_date"]) if self.hist is not None else np.zeros(0, np.int64)
        days_b = cached(ctx, "days:service_date", lambda: day_numbers(lines["service_date"]))
        self.days = np.concatenate([days_b, days_h])
        self.is_batch = np.arange(len(self.group)) < self.n_batch
        uid_h = (pd.to_numeric(self.hist["line_uid"], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
                 if self.hist is not None and "line_uid" in self.hist else np.full(len(self.h_rows), -1, np.int64))
        self.uid = np.concatenate([lines["line_uid"].to_numpy(dtype=np.int64), uid_h])
        self.run_h = (self.hist["run_id"].astype("str").to_numpy(dtype=object)
                      if self.hist is not None and "run_id" in self.hist else np.full(len(self.h_rows), None, object))
        mods_b = line_modifiers(ctx)
        mods_h = LineModifiers(self.hist) if self.hist is not None else None
        self.mod_sets: list[tuple[str, ...]] = list(mods_b.sets) + (list(mods_h.sets) if mods_h is not None else [])
        self.mod_code = np.concatenate([mods_b.codes, mods_h.codes + len(mods_b.sets)]) if mods_h is not None \
            else mods_b.codes
        self._code_table: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.group)

    def code_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct packed codes, index into them per element): code tests run on the few distinct codes."""
        if self._code_table is None:
            ids, values = pd.factorize(self.codes)
            self._code_table = np.asarray(values, dtype=np.int64), ids.astype(np.int64)
        return self._code_table

    def code_in(self, pool: np.ndarray) -> np.ndarray:
        """member(self.codes, pool), decided once per distinct code."""
        values, ids = self.code_table()
        return member(values, np.asarray(pool))[ids]

    def in_groups(self, idx: np.ndarray) -> np.ndarray:
        """Elements in the same-day group of any element of ``idx`` (groups are dense ids; -1: none)."""
        hot = np.zeros(int(self.group.max(initial=-1)) + 2, dtype=bool)
        hot[self.group[idx]] = True
        hot[-1] = False
        return hot[self.group]

    def mods_any(self, mods: set[str]) -> np.ndarray:
        table = np.array([bool(mods.intersection(s)) for s in self.mod_sets], dtype=bool)
        return table[self.mod_code]

    def mods_first(self, family: set[str]) -> np.ndarray:
        """1 + index (in sorted family) of the element's first modifier of the family; 0 when none."""
        pos = {m: i + 1 for i, m in enumerate(sorted(family))}
        table = np.array([next((pos[m] for m in s if m in pos), 0) for s in self.mod_sets], dtype=np.int64)
        return table[self.mod_code]

    def mods_text(self, code: int) -> str:
        return ",".join(self.mod_sets[code]) or "none"

    def run_of(self, idx: np.ndarray) -> np.ndarray:
        """Run id of history elements (None for batch elements)."""
        out = np.full(len(idx), None, dtype=object)
        h = idx >= self.n_batch
        out[h] = self.run_h[idx[h] - self.n_batch]
        return out

    def related(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """make_result keyword arguments pointing at elements ``idx`` (batch or history)."""
        from_hist = idx >= self.n_batch
        return {"related_line_uid": self.uid[idx], "related_source": np.where(from_hist, "history", "batch"),
                "related_run_id": self.run_of(idx)}


def _elements(ctx: CheckContext) -> _Elements:
    return cached(ctx, f"bundling_elements:{ctx.settings.provider_key}", lambda: _Elements(ctx))


def _text_mask(values: pd.Series, wanted: str) -> np.ndarray:
    """values == wanted, computed in Arrow (the PTP table has millions of rows)."""
    return pc.fill_null(pc.equal(arrow_strings(values), wanted), False).to_numpy(zero_copy_only=False)


def _restricted_ptp(ctx: CheckContext, present: np.ndarray, rel_uniq: list[str]) -> dict[str, np.ndarray] | None:
    """PTP rows of the batch's releases whose two codes both occur in the batch/history, indicator != 9."""
    ptp = ctx.ptp
    if ptp is None or ptp.empty or not rel_uniq:
        return None
    rel = np.full(len(ptp), -1, dtype=np.int64)
    if "release" in ptp:
        for i, r in enumerate(rel_uniq):
            rel[_text_mask(ptp["release"], r)] = i
    else:
        rel[:] = 0
    indicator = ptp["modifier_indicator"]
    k1 = lookup_sorted(present, code_ints(ptp["column_1"]))
    k2 = lookup_sorted(present, code_ints(ptp["column_2"]))
    rows = np.flatnonzero((rel >= 0) & (k1 >= 0) & (k2 >= 0) & ~_text_mask(indicator, "9"))
    if not len(rows):
        return None
    return {"row": rows, "rel": rel[rows], "k1": k1[rows], "k2": k2[rows], "ind0": _text_mask(indicator, "0")[rows],
            "eff": day_numbers(ptp["effective_date"])[rows], "del": day_numbers(ptp["deletion_date"])[rows]}


def _compact_space(values: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Map the distinct values (in 0..size-1) onto 0..n-1; -1 for values that do not occur."""
    seen = np.zeros(size, dtype=bool)
    seen[values] = True
    out = np.full(size, -1, dtype=np.int64)
    out[seen] = np.arange(int(seen.sum()))
    return out, int(seen.sum())


def _bitmap(keys: np.ndarray, size: int) -> np.ndarray:
    """Packed bit set of non-negative int keys < size (one random byte read per membership test)."""
    bits = np.zeros(size // 8 + 1, dtype=np.uint8)
    u = np.sort(keys)   # duplicates are harmless: OR is idempotent
    byte = u >> 3
    bit = np.left_shift(1, (u & 7)).astype(np.uint8)
    starts = np.flatnonzero(np.concatenate([[True], byte[1:] != byte[:-1]]))
    bits[byte[starts]] = np.bitwise_or.reduceat(bit, starts)
    return bits


def _in_bitmap(bits: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return ((bits[keys >> 3] >> (keys & 7).astype(np.uint8)) & 1).astype(bool)


#: above this many bits (128 MiB) edit membership falls back to a hash lookup
_BITMAP_MAX_BITS = 1 << 30


def _ptp(ctx: CheckContext) -> pd.DataFrame:
    rel_b, rel_uniq = release_codes(ctx, "ptp_release")
    if not rel_uniq or ctx.ptp is None or ctx.ptp.empty:
        return empty_result()
    el = _elements(ctx)
    values, ids = el.code_table()
    present = np.sort(values[values >= 0])
    table = _restricted_ptp(ctx, present, rel_uniq)
    if table is None:
        return empty_result()
    k = lookup_sorted(present, values)[ids]
    # compact code spaces of the codes that can be column 1 (left) / column 2 (right)
    kl, n1 = _compact_space(table["k1"], len(present))
    kr, n2 = _compact_space(table["k2"], len(present))
    k1, k2 = kl[table["k1"]], kr[table["k2"]]
    el_kl = np.where(k >= 0, kl[np.maximum(k, 0)], -1)
    el_kr = np.where(k >= 0, kr[np.maximum(k, 0)], -1)
    rel_el = np.full(len(el), -1, dtype=np.int64)
    rel_el[:el.n_batch] = rel_b
    valid = el.group >= 0
    left = np.flatnonzero(valid & (el_kl >= 0))
    right = np.flatnonzero(valid & el.is_batch & (el_kr >= 0) & (rel_el >= 0))
    if not len(left) or not len(right):
        return empty_result()

    # every (left, right) of one same-day group: counting sort of lefts by group, then expand
    n_groups = int(el.group.max()) + 1
    left = left[np.argsort(el.group[left], kind="stable")]
    per_group = np.bincount(el.group[left], minlength=n_groups)
    group_start = np.cumsum(per_group) - per_group
    cnt = per_group[el.group[right]]
    right = right[cnt > 0]
    lo, cnt = group_start[el.group[right]], cnt[cnt > 0]
    total = int(cnt.sum())
    if total == 0:
        return empty_result()
    p_right = np.repeat(right, cnt)
    p_left = left[np.repeat(lo - (np.cumsum(cnt) - cnt), cnt) + np.arange(total)]
    distinct = p_left != p_right
    p_left, p_right = p_left[distinct], p_right[distinct]

    # membership of (release, column 1, column 2) among the edits, then the matching edit rows
    pair_key = (rel_el[p_right] * n1 + el_kl[p_left]) * n2 + el_kr[p_right]
    edit_key = (table["rel"] * n1 + k1) * n2 + k2
    size = len(rel_uniq) * n1 * n2
    if size <= _BITMAP_MAX_BITS:
        hit = _in_bitmap(_bitmap(edit_key, size), pair_key)
    else:  # pragma: no cover - only with tens of thousands of distinct codes on both sides
        hit = pd.Index(np.unique(edit_key)).get_indexer(pair_key) >= 0
    if not hit.any():
        return empty_result()
    p_left, p_right, pair_key = p_left[hit], p_right[hit], pair_key[hit]
    # edit rows of the keys that occur, grouped by key (CSR), then expanded per pair
    e_rows = np.flatnonzero(member(edit_key, pair_key))
    e_rows = e_rows[np.argsort(edit_key[e_rows], kind="stable")]
    e_sorted = edit_key[e_rows]
    first = np.flatnonzero(np.concatenate([[True], e_sorted[1:] != e_sorted[:-1]]))
    counts = np.diff(np.append(first, len(e_sorted)))
    u = lookup_sorted(e_sorted[first], pair_key)
    e_lo, m_cnt = first[u], counts[u]
    n_m = int(m_cnt.sum())
    pair_idx = np.repeat(np.arange(len(p_left)), m_cnt)
    e_row = e_rows[np.repeat(e_lo - (np.cumsum(m_cnt) - m_cnt), m_cnt) + np.arange(n_m)]

    # does the edit apply on the date of service? (billing-domain 4.2)
    dos = el.days[p_right][pair_idx]
    eff, dele = table["eff"][e_row], table["del"][e_row]
    in_force_end = (dos <= dele) if ctx.settings.ptp_deletion_inclusive else (dos < dele)
    applies = (eff != NAT_DAY) & (eff <= dos) & ((dele == NAT_DAY) | in_force_end)
    if not applies.any():
        return empty_result()
    pair_idx, e_row = pair_idx[applies], e_row[applies]
    # one edit per pair: an indicator-0 row wins over an indicator-1 row
    ind0 = table["ind0"][e_row]
    order = np.lexsort((~ind0, pair_idx))
    pair_sorted = pair_idx[order]
    chosen = order[np.concatenate([[True], pair_sorted[1:] != pair_sorted[:-1]])]
    pidx = pair_idx[chosen]
    return _ptp_results(ctx, el, p_left[pidx], p_right[pidx], ind0[chosen], table["row"][e_row[chosen]])


#: why an indicator-1 edit was bypassed (codes used in the detail text)
_BY_NONE, _BY_RIGHT, _BY_LEFT_X, _BY_ANATOMIC = 0, 1, 2, 3


def _ptp_results(ctx: CheckContext, el: _Elements, pl: np.ndarray, pr: np.ndarray, is0: np.ndarray,
                 ptp_rows: np.ndarray) -> pd.DataFrame:
    """Classify applying edits into IND0 / IND1 / BYPASS and keep one flag per (line, rule)."""
    rb = ctx.rules
    assoc_set = rb.modifier_set("ncci_associated")
    x_set = rb.modifier_set("x_modifiers")
    anatomic = rb.modifier_set("anatomic") if "anatomic" in rb.modifiers else set().union(*ANATOMIC_FAMILIES.values())
    anat_diff = np.zeros(len(pl), bool)
    same_family = np.zeros(len(pl), bool)
    for members in ANATOMIC_FAMILIES.values():
        fam = set(members & anatomic)
        if fam:
            a = el.mods_first(fam)
            al, ar = a[pl], a[pr]
            anat_diff |= (al > 0) & (ar > 0) & (al != ar)
            same_family |= (al > 0) & (ar > 0)
    right_anat_only = (el.mods_any(anatomic) & ~el.mods_any(assoc_set - anatomic))[pr]
    x_left = el.mods_any(x_set)[pl]
    either_ok = el.days[pr] >= to_day(EITHER_LINE_FROM)
    by_right = el.mods_any(assoc_set)[pr]
    by_left_x = x_left & either_ok
    bypass = ~is0 & (by_right | by_left_x | anat_diff)
    rule_code = np.where(is0, 0, np.where(bypass, 2, 1))

    # one flag per (column 2 line, rule): batch partner first, then intake order
    from_hist = pl >= el.n_batch
    order = np.lexsort((pl, from_hist, rule_code, pr))
    key_pr, key_rule = pr[order], rule_code[order]
    sel = order[np.concatenate([[True], (key_pr[1:] != key_pr[:-1]) | (key_rule[1:] != key_rule[:-1])])]
    pl, pr, rule_code, from_hist, ptp_rows = pl[sel], pr[sel], rule_code[sel], from_hist[sel], ptp_rows[sel]
    why = np.where(rule_code != 2, _BY_NONE, np.where(by_right[sel], _BY_RIGHT,
                                                      np.where(by_left_x[sel], _BY_LEFT_X, _BY_ANATOMIC)))
    warn_anat = (why == _BY_RIGHT) & right_anat_only[sel] & ~same_family[sel]
    x_too_early = (rule_code == 1) & x_left[sel] & ~either_ok[sel]
    # rationale: read the few distinct edit rows only (the table has millions of rows in many chunks)
    rows_u, rows_inv = np.unique(ptp_rows, return_inverse=True)
    rationale = (pd.Series(take_rows(ctx.ptp["rationale"], rows_u), dtype=object).fillna("").astype(str)
                 if "rationale" in ctx.ptp else pd.Series([""] * len(rows_u), dtype=object))
    rat_codes_u, rat_uniq = pd.factorize(rationale)
    rat_codes = rat_codes_u[rows_inv.reshape(-1)]
    rat_text = [str(r) for r in np.asarray(rat_uniq, dtype=object)]

    def describe(rule: int, why_code: int, warn: int, early: int, mods_r: int, mods_l: int, code_l: int,
                 rat: int, hist: int) -> str:
        col1 = code_text(code_l)
        text = f"modifier indicator {0 if rule == 0 else 1}"
        if why_code == _BY_RIGHT:
            text += f", bypassed by modifier(s) {el.mods_text(mods_r)} on this line"
        elif why_code == _BY_LEFT_X:
            text += (f", bypassed by {el.mods_text(mods_l)} on the {col1} line (59/X{{EPSU}} may sit on either "
                     f"line from {EITHER_LINE_FROM})")
        elif why_code == _BY_ANATOMIC:
            text += ", bypassed by different anatomic modifiers on the two lines"
        if warn:
            text += f"; some MACs also require a different anatomic modifier on the {col1} line"
        if early:
            text += f"; 59/X{{EPSU}} on the column 1 line counts only from {EITHER_LINE_FROM}"
        if rat >= 0 and rat_text[rat]:
            text += f"; edit rationale: {rat_text[rat]}"
        if hist:
            text += f"; the {col1} line was sent in an earlier batch"
        return text

    # keys a detail does not print are blanked so that equal texts share one combination
    mods_r = np.where(why == _BY_RIGHT, el.mod_code[pr], -1)
    mods_l = np.where(why == _BY_LEFT_X, el.mod_code[pl], -1)
    code_l = np.where((why == _BY_LEFT_X) | warn_anat | from_hist, el.codes[pl], -1)
    detail = format_combinations(describe, rule_code, why, warn_anat, x_too_early, mods_r, mods_l, code_l,
                                 rat_codes, from_hist)
    return make_result(el.uid[pr], np.array(PTP_RULES, dtype=object)[rule_code], detail=detail, **el.related(pl))


def _history_text(lines: pd.DataFrame | None, column: str) -> np.ndarray:
    """Stripped text of a column of history lines ("" where absent)."""
    if lines is None:
        return np.zeros(0, dtype=object)
    if column not in lines:
        return np.full(len(lines), "", dtype=object)
    s = lines[column]
    out = s.astype("str").str.strip().to_numpy(dtype=object)
    out[s.isna().to_numpy()] = ""
    return out


def _bundled_status(ctx: CheckContext) -> pd.DataFrame:
    lines = ctx.lines
    m = text_in(ctx, "status_code", BUNDLED_STATUSES)
    if not m.any():
        return empty_result()
    detail = format_combinations(lambda st: STATUS_MEANING.get(st, st), text_values(ctx, "status_code")[m])
    return make_result(lines["line_uid"].to_numpy()[m], "BUNDLED-STATUS", detail=detail)


def _same_group_partner(el: _Elements, targets: np.ndarray, partners: np.ndarray,
                        pairs: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each target element, a partner element of its same-day group (batch first, intake order).

    With ``pairs`` (columns item, procedure as packed codes) the partner's code must be listed for the
    target's code. Returns (target, partner) element indices of the matches.
    """
    t = pd.DataFrame({"t": targets, "g": el.group[targets]})
    p = pd.DataFrame({"p": partners, "g": el.group[partners], "hist": partners >= el.n_batch})
    if pairs is not None:
        t["item"] = el.codes[targets]
        p["procedure"] = el.codes[partners]
        m = t.merge(pairs, on="item").merge(p, on=["g", "procedure"])
    else:
        m = t.merge(p, on="g")
    m = m[m["t"] != m["p"]]
    if m.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = m.sort_values(["t", "hist", "p"]).drop_duplicates("t")
    return m["t"].to_numpy(dtype=np.int64), m["p"].to_numpy(dtype=np.int64)


def _bundled_supply(ctx: CheckContext, el: _Elements) -> pd.DataFrame:
    bundled = ctx.rules.bundled
    if bundled is None or bundled.empty:
        return empty_result()
    pairs = pd.DataFrame({"item": code_ints(bundled["item"]), "procedure": code_ints(bundled["procedure"])})
    targets = np.flatnonzero(el.is_batch & el.code_in(pairs["item"].to_numpy()) & (el.group >= 0))
    if not len(targets):
        return empty_result()
    partners = np.flatnonzero(el.code_in(pairs["procedure"].to_numpy()) & (el.group >= 0) & el.in_groups(targets))
    if not len(partners):
        return empty_result()
    t, p = _same_group_partner(el, targets, partners, pairs)
    if not len(t):
        return empty_result()
    info = (bundled.assign(item=pairs["item"].to_numpy(), procedure=pairs["procedure"].to_numpy())
            .drop_duplicates(["item", "procedure"]).set_index(["item", "procedure"]))
    row = info.index.get_indexer(pd.MultiIndex.from_arrays([el.codes[t], el.codes[p]]))
    names = info["group"].astype(str).str.replace("_", " ").to_numpy(dtype=object)
    sources = info["source"].astype(str).to_numpy(dtype=object)

    def describe(r: int, hist: int) -> str:
        text = f"{names[r]} ({sources[r]})"
        return text + ("; the procedure was sent in an earlier batch" if hist else "")

    detail = format_combinations(describe, row, p >= el.n_batch)
    return make_result(el.uid[t], "BUNDLED-SUPPLY", detail=detail, **el.related(p))


def _status_t(ctx: CheckContext, el: _Elements) -> pd.DataFrame:
    is_t = text_in(ctx, "status_code", {"T"})
    if not is_t.any():
        return empty_result()
    # batch statuses are tested once per distinct value; history ones (a few rows) directly
    status_h = _history_text(el.hist, "status_code")
    targets = np.flatnonzero(np.concatenate([is_t, np.zeros(len(status_h), bool)]) & (el.group >= 0))
    if not len(targets):
        return empty_result()
    payable = np.concatenate([text_in(ctx, "status_code", PAYABLE_FOR_T), np.isin(status_h, list(PAYABLE_FOR_T))])
    partners = np.flatnonzero(payable & (el.group >= 0) & el.in_groups(targets))
    if not len(partners):
        return empty_result()
    t, p = _same_group_partner(el, targets, partners)
    if not len(t):
        return empty_result()
    codes, uniq = factorized(ctx, "status_code")
    texts_b = np.array([str(u).strip() for u in uniq] + [""], dtype=object)
    status_p = np.empty(len(p), dtype=object)
    from_batch = p < el.n_batch
    status_p[from_batch] = texts_b[codes[p[from_batch]]]
    status_p[~from_batch] = status_h[p[~from_batch] - el.n_batch]
    status_codes, status_uniq = pd.factorize(pd.Series(status_p, dtype=object))

    def describe(st: int, hist: int) -> str:
        return f"the other service has status {status_uniq[st]}" + (" and was sent in an earlier batch" if hist else "")

    detail = format_combinations(describe, status_codes, p >= el.n_batch)
    return make_result(el.uid[t], "STATUS-T-BUNDLED", detail=detail, **el.related(p))


def _add_on_without_primary(ctx: CheckContext, el: _Elements) -> pd.DataFrame:
    is_add_on = text_in(ctx, "global_days", {ADD_ON_GLOBAL})
    if not is_add_on.any():
        return empty_result()
    add_on = np.concatenate([is_add_on, _history_text(el.hist, "global_days") == ADD_ON_GLOBAL])
    # a same-day group has a primary when one of its services is not an add-on (group -1: no group)
    has_primary = np.zeros(int(el.group.max(initial=-1)) + 2, dtype=bool)
    has_primary[el.group[~add_on & (el.group >= 0)]] = True
    targets = np.flatnonzero(el.is_batch & add_on & (el.group >= 0))
    alone = targets[~has_primary[el.group[targets]]]
    if not len(alone):
        return empty_result()
    grouped_add_ons = el.group[add_on & (el.group >= 0)]   # batch and earlier that day
    n_add_ons = np.bincount(grouped_add_ons, minlength=len(has_primary))[el.group[alone]]
    detail = np.where(n_add_ons > 1, "only add-on codes are billed that day", "no other service is billed that day")
    return make_result(el.uid[alone], "ADDON-NO-PRIMARY", detail=detail)


def check(ctx: CheckContext) -> pd.DataFrame:
    """PTP-IND0, PTP-IND1, PTP-BYPASS, BUNDLED-STATUS, BUNDLED-SUPPLY, STATUS-T-BUNDLED and
    ADDON-NO-PRIMARY flags."""
    if ctx.lines.empty:
        return empty_result()
    el = _elements(ctx)
    ptp = _ptp(ctx)
    supply = _bundled_supply(ctx, el)
    if len(supply) and len(ptp):
        # a supply line already denied by an NCCI edit needs no second flag (and no second amount at risk)
        denied = ptp.loc[ptp["rule_id"].isin(["PTP-IND0", "PTP-IND1"]), "line_uid"].to_numpy()
        supply = supply[~member(supply["line_uid"].to_numpy(), denied)]
    return concat_results([ptp, _bundled_status(ctx), supply, _status_t(ctx, el), _add_on_without_primary(ctx, el)])
